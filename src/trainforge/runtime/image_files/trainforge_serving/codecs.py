"""The default decoders and encoders of the inference toolkit: JSON, CSV, NPY and NPZ (reference §7.3).

A request body of a UTF-8 type (``application/json``, ``text/csv``) is decoded to ``str`` before a handler sees it.
:func:`decode` turns a body into a numpy array as the toolkit's ``decoder.decode`` does (JSON: ``np.array`` of the
parsed value; CSV: ``np.genfromtxt`` with ``,``; NPY: ``np.load``; NPZ: a scipy sparse matrix when it holds one,
else its only array, else a dict of its arrays); :func:`encode` serializes a prediction for an ``Accept`` type.
An unknown type is an :class:`~trainforge_serving.errors.UnsupportedContentType` (415) naming the supported ones.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from .errors import UnsupportedContentType

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET_STREAM = "application/octet-stream"
ANY = "*/*"
UTF8_TYPES = frozenset({JSON, CSV})
DECODABLE = [JSON, CSV, NPY, NPZ]
ENCODABLE = [JSON, CSV, NPY, NPZ]


def media_type(header: str | None) -> str | None:
    """The media type of a ``Content-Type``/``Accept`` value, lower case, without parameters (None when empty)."""
    if not header:
        return None
    value = header.split(";", 1)[0].strip().lower()
    return value or None


def resolve_accept(header: str | None, default: str) -> str:
    """The type to answer in: the first type ``header`` lists that is not a wildcard; ``default`` when the header
    is missing or only wildcards (``*/*``), as the toolkit does."""
    if not header:
        return default
    for part in header.split(","):
        value = media_type(part)
        if value and value != ANY and not value.endswith("/*"):
            return value
    return default


def as_text(data: bytes | bytearray | str) -> str:
    """A body as text (UTF-8)."""
    return data if isinstance(data, str) else bytes(data).decode("utf-8")


def _json_to_numpy(data: bytes | str) -> Any:
    return np.array(json.loads(as_text(data)))


def _csv_to_numpy(data: bytes | str) -> Any:
    return np.genfromtxt(io.StringIO(as_text(data)), delimiter=",")


def _npy_to_numpy(data: bytes | str) -> Any:
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    return np.load(io.BytesIO(raw), allow_pickle=False)


def _npz_to_value(data: bytes | str) -> Any:
    raw = data.encode("latin-1") if isinstance(data, str) else bytes(data)
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if {"format", "shape", "data"} <= set(arrays):
        try:
            import scipy.sparse

            return scipy.sparse.load_npz(io.BytesIO(raw))
        except ImportError:
            pass
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    return arrays


_DECODERS = {JSON: _json_to_numpy, CSV: _csv_to_numpy, NPY: _npy_to_numpy, NPZ: _npz_to_value}


def decode(data: bytes | bytearray | str, content_type: str | None) -> Any:
    """``data`` of ``content_type`` as a numpy array (see the module doc); 415 for any other type."""
    kind = media_type(content_type)
    decoder = _DECODERS.get(kind or "")
    if decoder is None:
        raise UnsupportedContentType(content_type, DECODABLE)
    return decoder(data if isinstance(data, str) else bytes(data))


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars (and torch tensors) turned into lists and Python numbers."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _to_json(value: Any) -> bytes:
    return json.dumps(_plain(value)).encode("utf-8")


def _to_csv(value: Any) -> bytes:
    array = np.asarray(_plain(value))
    stream = io.StringIO()
    np.savetxt(stream, array if array.ndim else array.reshape(1), delimiter=",", fmt="%s")
    return stream.getvalue().encode("utf-8")


def _to_npy(value: Any) -> bytes:
    stream = io.BytesIO()
    np.save(stream, np.asarray(_plain(value)), allow_pickle=False)
    return stream.getvalue()


def _to_npz(value: Any) -> bytes:
    stream = io.BytesIO()
    if isinstance(value, dict):
        arrays: dict[str, Any] = {str(k): np.asarray(_plain(v)) for k, v in value.items()}
        np.savez(stream, *[], **arrays)
    else:
        np.savez(stream, np.asarray(_plain(value)))
    return stream.getvalue()


_ENCODERS = {JSON: _to_json, CSV: _to_csv, NPY: _to_npy, NPZ: _to_npz}


def encode(value: Any, accept: str | None) -> bytes:
    """``value`` (an array, a list, a number, a dict for JSON/NPZ) serialized as ``accept``; 415 for any other."""
    kind = media_type(accept)
    encoder = _ENCODERS.get(kind or "")
    if encoder is None:
        raise UnsupportedContentType(accept, ENCODABLE, what="Accept type")
    return encoder(value)
