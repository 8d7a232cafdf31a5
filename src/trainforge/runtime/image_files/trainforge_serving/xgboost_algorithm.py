"""The built-in XGBoost algorithm's ``serve`` (reference §8.5): the model trained by ``trainforge_algorithms.xgboost``
(``/opt/ml/model/xgboost-model``) answering ``POST /invocations``.

Requests: ``text/csv`` (features only, no label; the delimiter sniffed from the first line, empty fields missing)
and ``text/libsvm`` (``[label] <index>:<value> ...``; a leading label is ignored). A request without
``Content-Type`` is CSV. Answers: ``text/csv`` (the default; ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` changes it),
one prediction per line (a row of class probabilities comma-separated on its line); ``application/json``
``{"predictions": [{"score": ...}, ...]}``; ``application/jsonlines`` one ``{"score": ...}`` per line.

``SAGEMAKER_INFERENCE_OUTPUT`` (comma list of ``predicted_label``, ``labels``, ``probability``, ``probabilities``,
``raw_score``, ``raw_scores``) selects what each prediction holds for classification objectives
(``binary:logistic``, ``multi:softprob``, ``multi:softmax``): JSON and JSON Lines answer objects with those keys,
CSV one line per record with the values in that order (lists as JSON text in quotes).
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

import numpy as np

from . import codecs
from .errors import InferenceError, UnsupportedContentType
from .frameworks import xgboost_model_fn
from .handlers import Defaults

LIBSVM = "text/libsvm"
LIBSVM_TYPES = frozenset({LIBSVM, "text/x-libsvm", "libsvm"})
CSV_TYPES = frozenset({codecs.CSV, "csv"})
JSONLINES = "application/jsonlines"
ACCEPTS = [codecs.CSV, codecs.JSON, JSONLINES]
REQUEST_TYPES = [codecs.CSV, LIBSVM]
SELECTABLE = ("predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores")
CLASSIFICATION = ("binary:logistic", "multi:softprob", "multi:softmax")


def _delimiter(first_line: str) -> str:
    try:
        found = csv.Sniffer().sniff(first_line[:512]).delimiter
    except csv.Error:
        return ","
    return "," if found.isalnum() or found in (".", "-", "+") else found


def csv_rows(text: str) -> np.ndarray:
    """Features-only CSV as a 2-D float array (empty fields are NaN: missing)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise InferenceError(400, "Empty CSV request: send one line of features per record")
    delimiter = _delimiter(lines[0])
    rows: list[list[float]] = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append([float(v) if v.strip() else math.nan for v in line.split(delimiter)])
        except ValueError as exc:
            raise InferenceError(400, f"CSV line {number} is not numeric ({exc}): send features only") from None
    width = max(len(r) for r in rows)
    if any(len(r) != width for r in rows):
        raise InferenceError(400, f"CSV lines have different numbers of features (expected {width} on every line)")
    return np.array(rows, dtype=np.float32)


def libsvm_rows(text: str, num_features: int = 0) -> np.ndarray:
    """LIBSVM lines as a dense 2-D float array (absent features NaN: missing)."""
    parsed: list[dict[int, float]] = []
    width = num_features
    for number, line in enumerate(text.strip().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if ":" not in tokens[0]:
            tokens = tokens[1:]  # the label (and weight), ignored at inference
        row: dict[int, float] = {}
        try:
            for token in tokens:
                key, raw = token.split(":", 1)
                row[int(key)] = float(raw)
        except ValueError:
            raise InferenceError(400, f"LIBSVM line {number} is malformed: expected <index>:<value> pairs") from None
        if row:
            width = max(width, max(row) + 1)
        parsed.append(row)
    if not parsed:
        raise InferenceError(400, "Empty LIBSVM request: send one line per record")
    array = np.full((len(parsed), max(width, 1)), np.nan, dtype=np.float32)
    for i, features in enumerate(parsed):
        for column, amount in features.items():
            array[i, column] = amount
    return array


def to_dmatrix(input_data: Any, content_type: str, num_features: int = 0) -> Any:
    """A request body as an ``xgboost.DMatrix`` (CSV, LIBSVM; JSON and NPY arrays too); 415 for anything else."""
    import xgboost

    kind = codecs.media_type(content_type) or codecs.CSV
    if kind in CSV_TYPES:
        return xgboost.DMatrix(csv_rows(codecs.as_text(input_data)))
    if kind in LIBSVM_TYPES:
        return xgboost.DMatrix(libsvm_rows(codecs.as_text(input_data), num_features))
    if kind in (codecs.JSON, codecs.NPY):
        array = np.asarray(codecs.decode(input_data, kind), dtype=np.float32)
        return xgboost.DMatrix(array.reshape(1, -1) if array.ndim == 1 else array)
    raise UnsupportedContentType(content_type, REQUEST_TYPES)


def _objective(booster: Any) -> str:
    try:
        return str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _selected() -> list[str]:
    raw = os.environ.get("SAGEMAKER_INFERENCE_OUTPUT", "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SELECTABLE]
    if unknown:
        raise InferenceError(
            400, f"SAGEMAKER_INFERENCE_OUTPUT names unknown outputs {unknown}; known: {', '.join(SELECTABLE)}"
        )
    return keys


def _softmax(margins: np.ndarray) -> np.ndarray:
    shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def selectable_records(booster: Any, dmatrix: Any, keys: list[str]) -> list[dict[str, Any]]:
    """One dict per record with the ``keys`` asked for (classification objectives only)."""
    objective = _objective(booster)
    if objective not in CLASSIFICATION:
        raise InferenceError(
            400,
            f"SAGEMAKER_INFERENCE_OUTPUT needs a classification objective ({', '.join(CLASSIFICATION)}); "
            f"this model's is {objective or 'unknown'}",
        )
    margins = np.asarray(booster.predict(dmatrix, output_margin=True, validate_features=False), dtype=np.float64)
    if objective == "binary:logistic":
        p = 1.0 / (1.0 + np.exp(-margins.reshape(-1)))
        probabilities = np.stack([1.0 - p, p], axis=1)
        raw_scores = np.stack([-margins.reshape(-1), margins.reshape(-1)], axis=1)
    else:
        margins = margins.reshape(margins.shape[0], -1)
        probabilities = _softmax(margins)
        raw_scores = margins
    labels = np.argmax(probabilities, axis=1)
    records = []
    for i in range(probabilities.shape[0]):
        values = {
            "predicted_label": int(labels[i]),
            "labels": list(range(probabilities.shape[1])),
            "probability": float(probabilities[i, labels[i]]),
            "probabilities": [float(v) for v in probabilities[i]],
            "raw_score": float(raw_scores[i, labels[i]]),
            "raw_scores": [float(v) for v in raw_scores[i]],
        }
        records.append({k: values[k] for k in keys})
    return records


def _csv_value(value: Any) -> str:
    return f'"{json.dumps(value)}"' if isinstance(value, list) else str(value)


def encode_scores(predictions: np.ndarray, accept: str) -> bytes:
    """Plain predictions as ``accept`` (see the module doc)."""
    rows = predictions.tolist()
    if accept == codecs.CSV:
        lines = [",".join(str(v) for v in r) if isinstance(r, list) else str(r) for r in rows]
        return ("\n".join(lines) + "\n").encode("utf-8")
    if accept == codecs.JSON:
        return json.dumps({"predictions": [{"score": r} for r in rows]}).encode("utf-8")
    if accept == JSONLINES:
        return "".join(json.dumps({"score": r}) + "\n" for r in rows).encode("utf-8")
    raise UnsupportedContentType(accept, ACCEPTS, what="Accept type")


def encode_records(records: list[dict[str, Any]], accept: str) -> bytes:
    """Selected outputs as ``accept``."""
    if accept == codecs.CSV:
        return "".join(",".join(_csv_value(v) for v in r.values()) + "\n" for r in records).encode("utf-8")
    if accept == codecs.JSON:
        return json.dumps({"predictions": records}).encode("utf-8")
    if accept == JSONLINES:
        return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    raise UnsupportedContentType(accept, ACCEPTS, what="Accept type")


def transform_fn(model: Any, data: Any, content_type: str, accept: str) -> tuple[bytes, str]:
    """The algorithm's whole request path: decode, predict, encode."""
    if accept not in ACCEPTS:
        raise UnsupportedContentType(accept, ACCEPTS, what="Accept type")
    kind = codecs.media_type(content_type) or codecs.CSV
    if kind not in CSV_TYPES and kind not in LIBSVM_TYPES:
        raise UnsupportedContentType(content_type, REQUEST_TYPES)
    try:
        num_features = int(model.num_features())
    except (AttributeError, TypeError, ValueError):
        num_features = 0
    dmatrix = to_dmatrix(data, kind, num_features)
    if num_features and dmatrix.num_col() > num_features:
        raise InferenceError(
            400, f"Requests carry {dmatrix.num_col()} features but the model was trained on {num_features}"
        )
    keys = _selected()
    if keys:
        return encode_records(selectable_records(model, dmatrix, keys), accept), accept
    predictions = np.asarray(model.predict(dmatrix, validate_features=False))
    return encode_scores(predictions, accept), accept


def _unused(*_: Any) -> Any:  # pragma: no cover - transform_fn replaces them
    raise NotImplementedError


def defaults() -> Defaults:
    """The built-in algorithm's handlers: ``xgboost-model`` loaded, :func:`transform_fn` for every request."""
    accept = codecs.media_type(os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")) or codecs.CSV
    return Defaults(
        xgboost_model_fn,
        _unused,
        _unused,
        _unused,
        transform_fn=transform_fn,
        default_accept=accept,
        default_content_type=codecs.CSV,
    )
