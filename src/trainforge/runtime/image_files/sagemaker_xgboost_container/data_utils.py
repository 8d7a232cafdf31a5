"""``sagemaker_xgboost_container.data_utils`` as script-mode scripts use it: :func:`get_dmatrix`,
:func:`get_content_type` and the content type constants.

Data rules are built-in XGBoost's (``docs/algorithms.md``): CSV without a header and the label in column 0,
LIBSVM, or Parquet with the label first; every file under a directory whose name does not start with ``.`` or
``_`` is read. Bad data raises ``UserError`` with the file and line at fault.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from trainforge_algorithms import xgboost_data
from trainforge_algorithms.job import Channel, UserError
from trainforge_algorithms.tabular import data_files

from .constants import xgb_content_types

CSV = xgboost_data.CSV
LIBSVM = xgboost_data.LIBSVM
PARQUET = xgboost_data.PARQUET
RECORDIO_PROTOBUF = xgboost_data.RECORDIO_PROTOBUF
TEXT_CSV = "text/csv"

VALID_CONTENT_TYPES = [
    CSV,
    LIBSVM,
    PARQUET,
    RECORDIO_PROTOBUF,
    TEXT_CSV,
    xgb_content_types.LIBSVM,
    xgb_content_types.X_LIBSVM,
    xgb_content_types.X_PARQUET,
    xgb_content_types.X_RECORDIO_PROTOBUF,
]
VALID_PIPED_CONTENT_TYPES = [
    CSV,
    PARQUET,
    RECORDIO_PROTOBUF,
    TEXT_CSV,
    xgb_content_types.X_PARQUET,
    xgb_content_types.X_RECORDIO_PROTOBUF,
]

__all__ = [
    "CSV",
    "LIBSVM",
    "PARQUET",
    "RECORDIO_PROTOBUF",
    "VALID_CONTENT_TYPES",
    "VALID_PIPED_CONTENT_TYPES",
    "UserError",
    "get_content_type",
    "get_dmatrix",
    "get_size",
]


def get_content_type(content_type_cfg_val: str | None) -> str:
    """The short content type (``csv``, ``libsvm``, ``parquet`` or ``recordio-protobuf``) of a channel's
    ContentType; None means ``libsvm``. Raises ``UserError`` for a type XGBoost does not accept."""
    return xgboost_data.parse_content_type(content_type_cfg_val, allow_recordio=True)


def _channel(path: str | os.PathLike[str]) -> Channel:
    p = Path(path)
    return Channel(name=p.name or str(p), path=p, content_type=None, input_mode="File")


def _combine(parts: list[xgboost_data.Dataset]) -> xgboost_data.Dataset:
    if len(parts) == 1:
        return parts[0]
    xgboost_data.align_features(*parts)
    if any(hasattr(p.features, "tocsr") for p in parts):
        from scipy import sparse

        features: Any = sparse.vstack([sparse.csr_matrix(p.features) for p in parts]).tocsr()
    else:
        features = np.vstack([p.features for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    weights = None
    if any(p.weights is not None for p in parts):
        weights = np.concatenate([p.weights if p.weights is not None else np.ones(p.num_rows) for p in parts])
    return xgboost_data.Dataset(features=features, labels=labels, weights=weights)


def get_dmatrix(
    data_path: str | os.PathLike[str] | list[str] | None,
    content_type: str | None,
    csv_weights: int = 0,
    is_pipe: bool = False,
) -> Any:
    """An ``xgboost.DMatrix`` of the data at ``data_path`` (a file, a directory, or a list of them).

    Returns None when the path does not exist or holds no rows (as SageMaker's helper does for a missing
    channel). ``content_type`` is a short name or a ContentType (``"libsvm"``, ``"csv"``, ``"text/csv"``...);
    ``csv_weights=1`` reads instance weights from CSV column 1. Pipe mode is not available here.
    """
    if is_pipe:
        raise UserError("get_dmatrix: Pipe mode is not available in trainforge; use File or FastFile input mode")
    if data_path is None:
        return None
    kind = xgboost_data.parse_content_type(content_type)
    paths = data_path if isinstance(data_path, list) else [data_path]
    parts = []
    for path in paths:
        if not os.path.exists(path):
            continue
        loaded = xgboost_data.load_channel(_channel(path), kind, csv_weights=csv_weights)
        if loaded is not None:
            parts.append(loaded)
    if not parts:
        return None
    return xgboost_data.to_dmatrix(_combine(parts))


def get_size(data_path: str | os.PathLike[str], is_pipe: bool = False) -> int:
    """Total size in bytes of the data files at ``data_path`` (0 when it does not exist)."""
    if not os.path.exists(data_path):
        return 0
    return sum(path.stat().st_size for path in data_files(_channel(data_path)))
