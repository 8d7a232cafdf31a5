"""Built-in XGBoost's data contract (reference §8.2): content types and channel data as ``xgboost.DMatrix``.

CSV: no header, label in column 0 (instance weight in column 1 with ``csv_weights=1``), delimiter sniffed.
LIBSVM (also the default when a channel has no ContentType): ``<label>[:<weight>] [qid:<q>] <index>:<value> ...``.
Parquet: numeric columns, label first. RecordIO-protobuf is rejected with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import tabular
from .job import Channel, UserError

CSV = "csv"
LIBSVM = "libsvm"
PARQUET = "parquet"
RECORDIO_PROTOBUF = "recordio-protobuf"
CONTENT_TYPES = {
    "csv": CSV,
    "text/csv": CSV,
    "libsvm": LIBSVM,
    "text/libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "parquet": PARQUET,
    "application/x-parquet": PARQUET,
    "recordio-protobuf": RECORDIO_PROTOBUF,
    "application/x-recordio-protobuf": RECORDIO_PROTOBUF,
}
CSV_EXPECTATION = "built-in XGBoost expects CSV without a header, label in the first column"


def parse_content_type(value: str | None, *, channel: str | None = None, allow_recordio: bool = False) -> str:
    """The data format a ContentType names (``csv``, ``libsvm`` or ``parquet``); None means ``libsvm``.

    Matching is case-insensitive and ignores parameters, except that CSV accepts only ``label_size=1``.
    Raises :class:`UserError` for an unknown type and, unless ``allow_recordio``, for RecordIO-protobuf (whose
    data cannot be read here).
    """
    where = f"channel '{channel}': " if channel else ""
    if value is None:
        return LIBSVM
    main, *params = [part.strip() for part in value.lower().split(";")]
    kind = CONTENT_TYPES.get(main)
    if kind is None:
        raise UserError(
            f"{where}{value!r} is not an accepted ContentType: {', '.join(CONTENT_TYPES)} "
            "(csv: label in column 0, no header; no ContentType means libsvm)"
        )
    if kind == CSV:
        for param in params:
            key, _, val = param.partition("=")
            if key.strip() == "label_size" and val.strip() != "1":
                raise UserError(f"{where}{value!r} is not an accepted csv ContentType: label_size must be 1")
    if kind == RECORDIO_PROTOBUF and not allow_recordio:
        raise UserError(
            f"{where}ContentType {value!r}: RecordIO-protobuf data is not available in trainforge's built-in "
            "XGBoost; use text/csv, libsvm or parquet"
        )
    return kind


@dataclass
class Dataset:
    """One channel's data: features (dense ndarray or scipy CSR), labels, optional weights and query ids."""

    features: Any
    labels: np.ndarray
    weights: np.ndarray | None = None
    qids: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        return int(self.labels.shape[0])

    @property
    def num_features(self) -> int:
        """Number of feature columns."""
        return int(self.features.shape[1])


def load_channel(channel: Channel, kind: str, *, csv_weights: int = 0) -> Dataset | None:
    """The channel's data in format ``kind``, or None when it holds no rows."""
    if kind == CSV:
        matrix = tabular.read_csv(channel, expectation=CSV_EXPECTATION)
        if matrix.shape[0] == 0:
            return None
        first = 1 + (1 if csv_weights == 1 else 0)
        if matrix.shape[1] < first:
            raise UserError(
                f"channel '{channel.name}': CSV rows have {matrix.shape[1]} column(s); built-in XGBoost needs the "
                "label in column 0" + (" and the instance weight in column 1 (csv_weights=1)" if csv_weights else "")
            )
        weights = matrix[:, 1] if csv_weights == 1 else None
        return Dataset(features=matrix[:, first:], labels=matrix[:, 0], weights=weights)
    if kind == LIBSVM:
        rows = tabular.read_libsvm(channel)
        if rows.num_rows == 0:
            return None
        return Dataset(features=rows.features, labels=rows.labels, weights=rows.weights, qids=rows.qids)
    if kind == PARQUET:
        matrix = tabular.read_parquet(channel)
        if matrix.shape[0] == 0:
            return None
        if matrix.shape[1] < 1:
            raise UserError(f"channel '{channel.name}': Parquet data has no columns; the label is column 0")
        return Dataset(features=matrix[:, 1:], labels=matrix[:, 0])
    if kind == RECORDIO_PROTOBUF:
        parse_content_type(RECORDIO_PROTOBUF, channel=channel.name)
    raise UserError(f"channel '{channel.name}': unsupported data format {kind!r}")


def align_features(*datasets: Dataset | None) -> None:
    """Give every sparse (LIBSVM) dataset the same number of columns: the widest one's."""
    present = [d for d in datasets if d is not None]
    width = max((d.num_features for d in present), default=0)
    for data in present:
        if data.num_features != width and hasattr(data.features, "tocsr"):
            data.features = data.features.tocsr()
            data.features.resize((data.num_rows, width))


def to_dmatrix(data: Dataset) -> Any:
    """An ``xgboost.DMatrix`` of the dataset (NaN is a missing value)."""
    import xgboost as xgb

    kwargs: dict[str, Any] = {"label": data.labels}
    if data.weights is not None:
        kwargs["weight"] = data.weights
    if data.qids is not None:
        kwargs["qid"] = data.qids
    try:
        return xgb.DMatrix(data.features, missing=np.nan, **kwargs)
    except Exception as exc:
        raise UserError(f"cannot build the XGBoost data matrix: {_first_line(str(exc))}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
