"""Reading a channel's data files: CSV (no header), LIBSVM and Parquet, with errors that name file and line.

A channel's data files are every regular file under its directory (recursively, in sorted order) whose name does
not start with ``.`` or ``_``. CSV delimiters are sniffed from each file's first line (``,``, tab, ``;``, ``|`` or
space); a first line that is not numeric is reported as a header row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .job import Channel, UserError

DELIMITERS = ",\t;| "
SNIPPET = 60


def data_files(channel: Channel) -> list[Path]:
    """Every data file of ``channel``: regular files under its directory (recursively, sorted by relative path),
    skipping names that start with ``.`` or ``_`` (files and directories)."""
    root = channel.path
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "_")) for part in rel.parts):
            continue
        if path.is_file():
            found.append(path)
    return found


def _where(channel: Channel, path: Path) -> str:
    try:
        rel = path.relative_to(channel.path)
    except ValueError:
        rel = Path(path.name)
    return f"channel '{channel.name}': file {rel}"


def _snippet(text: str) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "..."


def _first_line(path: Path) -> tuple[int, str] | None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                return number, line
    return None


def sniff_delimiter(line: str) -> str:
    """The delimiter of a CSV line: what :class:`csv.Sniffer` finds among ``,``, tab, ``;``, ``|`` and space,
    else ``,`` (a single column)."""
    try:
        return csv.Sniffer().sniff(line.strip(), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _fields(line: str, delimiter: str) -> list[str]:
    if delimiter == " ":
        return line.split()
    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])


def _is_number(text: str) -> bool:
    text = text.strip()
    if not text:
        return True  # an empty field is a missing value
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bad_cell(path: Path, delimiter: str) -> tuple[int, int, str] | None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            for column, value in enumerate(_fields(line, delimiter), 1):
                if not _is_number(value):
                    return number, column, value
    return None


def read_csv_file(channel: Channel, path: Path, *, expectation: str) -> np.ndarray:
    """One CSV file as a float64 matrix (rows x columns); empty fields become NaN.

    ``expectation`` completes the header-row message, e.g. ``"built-in XGBoost expects CSV without a header,
    label in the first column"``. Raises :class:`UserError` naming the file, line and value at fault.
    """
    import pandas as pd

    first = _first_line(path)
    if first is None:
        return np.zeros((0, 0))
    number, line = first
    delimiter = sniff_delimiter(line)
    header = [v for v in _fields(line, delimiter) if not _is_number(v)]
    if header:
        raise UserError(
            f"{_where(channel, path)} line {number} is not numeric: it looks like a header row "
            f"({_snippet(line)!r}); {expectation}"
        )
    sep: Any = r"\s+" if delimiter == " " else delimiter
    try:
        frame = pd.read_csv(path, sep=sep, header=None, dtype=np.float64, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return np.zeros((0, 0))
    except pd.errors.ParserError as exc:
        raise UserError(f"{_where(channel, path)} is not valid CSV: {str(exc).strip()}") from None
    except ValueError:
        bad = _bad_cell(path, delimiter)
        if bad is None:
            raise UserError(f"{_where(channel, path)} has a value that is not a number; {expectation}") from None
        row, column, value = bad
        raise UserError(
            f"{_where(channel, path)} line {row} column {column} is not numeric: {_snippet(value)!r}; {expectation}"
        ) from None
    return frame.to_numpy(dtype=np.float64)


def read_csv(channel: Channel, *, expectation: str) -> np.ndarray:
    """Every data file of ``channel`` as one float64 matrix; every file must have the same number of columns."""
    parts: list[np.ndarray] = []
    columns: tuple[Path, int] | None = None
    for path in data_files(channel):
        matrix = read_csv_file(channel, path, expectation=expectation)
        if matrix.shape[0] == 0:
            continue
        if columns is not None and matrix.shape[1] != columns[1]:
            raise UserError(
                f"{_where(channel, path)} has {matrix.shape[1]} columns but file "
                f"{columns[0].name} has {columns[1]}; every file of a channel must have the same columns"
            )
        columns = (path, matrix.shape[1])
        parts.append(matrix)
    if not parts:
        return np.zeros((0, 0))
    return parts[0] if len(parts) == 1 else np.vstack(parts)


@dataclass
class SparseRows:
    """LIBSVM data: labels, optional instance weights and query ids, and a CSR matrix of features."""

    labels: np.ndarray
    weights: np.ndarray | None
    qids: np.ndarray | None
    features: Any  # scipy.sparse.csr_matrix

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        return int(self.labels.shape[0])


def _libsvm_error(channel: Channel, path: Path, number: int, line: str, why: str) -> UserError:
    return UserError(
        f"{_where(channel, path)} line {number} is not LIBSVM ({why}): {_snippet(line)!r}; LIBSVM lines are "
        "'<label>[:<weight>] <index>:<value> ...'. Without a ContentType the channel is read as LIBSVM: for CSV "
        "data set content_type='text/csv' on the channel"
    )


LibsvmRow = tuple[float, float | None, int | None, list[int], list[float]]


def _libsvm_lines(channel: Channel, path: Path) -> Iterator[LibsvmRow]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            label_text, _, weight_text = tokens[0].partition(":")
            try:
                label = float(label_text)
                weight = float(weight_text) if weight_text else None
            except ValueError:
                raise _libsvm_error(channel, path, number, raw, "the label is not a number") from None
            qid: int | None = None
            indices: list[int] = []
            values: list[float] = []
            for token in tokens[1:]:
                key, sep, value = token.partition(":")
                if not sep:
                    raise _libsvm_error(channel, path, number, raw, f"{token!r} is not <index>:<value>")
                try:
                    if key == "qid":
                        qid = int(value)
                        continue
                    index = int(key)
                    number_value = float(value)
                except ValueError:
                    raise _libsvm_error(channel, path, number, raw, f"{token!r} is not <index>:<value>") from None
                if index < 0:
                    raise _libsvm_error(channel, path, number, raw, f"feature index {index} is negative")
                indices.append(index)
                values.append(number_value)
            yield label, weight, qid, indices, values


def read_libsvm(channel: Channel) -> SparseRows:
    """Every data file of ``channel`` parsed as LIBSVM (feature indices used as given: index i is column i)."""
    from scipy import sparse

    labels: list[float] = []
    weights: list[float] = []
    qids: list[int] = []
    has_weight = has_qid = False
    indptr = [0]
    indices: list[int] = []
    values: list[float] = []
    for path in data_files(channel):
        for label, weight, qid, row_indices, row_values in _libsvm_lines(channel, path):
            labels.append(label)
            has_weight = has_weight or weight is not None
            weights.append(1.0 if weight is None else weight)
            has_qid = has_qid or qid is not None
            qids.append(0 if qid is None else qid)
            indices.extend(row_indices)
            values.extend(row_values)
            indptr.append(len(indices))
    width = (max(indices) + 1) if indices else 0
    features = sparse.csr_matrix(
        (np.asarray(values, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(len(labels), width),
    )
    return SparseRows(
        labels=np.asarray(labels, dtype=np.float64),
        weights=np.asarray(weights, dtype=np.float64) if has_weight else None,
        qids=np.asarray(qids, dtype=np.int64) if has_qid else None,
        features=features,
    )


def read_parquet(channel: Channel) -> np.ndarray:
    """Every data file of ``channel`` read as Parquet into one float64 matrix; every column must be numeric."""
    import pyarrow.parquet as pq
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    parts: list[np.ndarray] = []
    for path in data_files(channel):
        try:
            frame = pq.read_table(path).to_pandas()
        except Exception as exc:
            raise UserError(f"{_where(channel, path)} is not a readable Parquet file: {exc}") from None
        bad = [str(c) for c, t in frame.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
        if bad:
            raise UserError(
                f"{_where(channel, path)}: column(s) {', '.join(bad[:5])} are not numeric; built-in XGBoost reads "
                "numeric Parquet columns, label first"
            )
        if len(frame):
            parts.append(frame.to_numpy(dtype=np.float64))
    if not parts:
        return np.zeros((0, 0))
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
        raise UserError(f"channel '{channel.name}': Parquet files have different column counts {sorted(widths)}")
    return parts[0] if len(parts) == 1 else np.vstack(parts)


CSV_CONTENT_TYPES = ("text/csv", "csv")


def require_csv(channel: Channel, *, algorithm: str) -> None:
    """Raise :class:`UserError` unless the channel's ContentType is CSV (``text/csv``, ``csv``, with at most
    ``label_size=1``) or unset (read as CSV)."""
    if channel.content_type is None:
        return
    main, *params = [part.strip() for part in channel.content_type.lower().split(";")]
    if main in CSV_CONTENT_TYPES and all(p.replace(" ", "") in ("label_size=1", "") for p in params):
        return
    if "recordio" in main:
        raise UserError(
            f"channel '{channel.name}': ContentType {channel.content_type!r}: RecordIO-protobuf data is not "
            f"available in trainforge's built-in {algorithm}; write the data as CSV and use content_type='text/csv'"
        )
    raise UserError(
        f"channel '{channel.name}': ContentType {channel.content_type!r} is not accepted by built-in {algorithm}: "
        "use text/csv"
    )
