"""Serializers: how ``Predictor.predict(data)`` turns ``data`` into a request body (``sagemaker.serializers``).

Each serializer has a ``CONTENT_TYPE`` (sent as the request's ``Content-Type``) and ``serialize(data)``. numpy,
pandas and scipy are imported only when the data is one of their types, so none of them is needed otherwise.
"""

from __future__ import annotations

import abc
import csv
import io
import json
from collections.abc import Iterable
from typing import Any


def _is_file_like(data: Any) -> bool:
    return hasattr(data, "read") and callable(data.read)


def _is_numpy_array(data: Any) -> bool:
    return type(data).__module__ == "numpy" and type(data).__name__ == "ndarray"


def _is_pandas(data: Any, name: str) -> bool:
    return type(data).__module__.startswith("pandas") and type(data).__name__ == name


def _is_sparse(data: Any) -> bool:
    return type(data).__module__.startswith("scipy.sparse") and hasattr(data, "tocsr")


class BaseSerializer(abc.ABC):
    """Abstract base of every serializer: ``serialize(data)`` and the ``CONTENT_TYPE`` it produces."""

    @abc.abstractmethod
    def serialize(self, data: Any) -> Any:
        """The request body for ``data`` (``bytes``, ``str`` or a file-like object)."""

    @property
    @abc.abstractmethod
    def CONTENT_TYPE(self) -> str:
        """The MIME type of the body ``serialize`` returns."""


class SimpleBaseSerializer(BaseSerializer, abc.ABC):
    """A serializer whose content type is given at construction.

    Args:
        content_type: The MIME type of the serialized data.
    """

    def __init__(self, content_type: str = "application/json") -> None:
        if not isinstance(content_type, str):
            raise ValueError(f"content_type must be a string, got {type(content_type).__name__}")
        self.content_type = content_type

    @property
    def CONTENT_TYPE(self) -> str:
        """The content type given at construction."""
        return self.content_type


class CSVSerializer(SimpleBaseSerializer):
    """Comma-separated values: a flat sequence is one row; a list of rows (or a 2-D array) is one row per line.

    A string passes through, a file-like object is read, a pandas DataFrame is written without header and index.
    """

    def __init__(self, content_type: str = "text/csv") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """``data`` as CSV text.

        Raises:
            ValueError: An empty sequence, or data that is neither a sequence, a string nor a file.
        """
        if _is_file_like(data):
            return data.read()
        if _is_pandas(data, "DataFrame"):
            return data.to_csv(header=False, index=False)
        if isinstance(data, str):
            return data
        mutable_sequence = self._is_sequence_like(data) and hasattr(data, "__setitem__")
        if mutable_sequence and len(data) > 0 and self._is_sequence_like(data[0]):
            return "\n".join(self._serialize_row(row) for row in data)
        return self._serialize_row(data)

    @staticmethod
    def _is_sequence_like(data: Any) -> bool:
        return hasattr(data, "__iter__") and hasattr(data, "__getitem__")

    @staticmethod
    def _serialize_row(data: Any) -> str:
        if isinstance(data, str):
            return data
        if _is_numpy_array(data):
            data = data.flatten()
        if hasattr(data, "__len__"):
            if len(data) == 0:
                raise ValueError("Cannot serialize empty array")
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=",").writerow(data)
            return buffer.getvalue().rstrip("\r\n")
        raise ValueError(f"Unable to handle input format: {type(data)}")


class JSONSerializer(SimpleBaseSerializer):
    """JSON: dicts and lists as ``json.dumps``; numpy arrays (also as dict values) as nested lists."""

    def serialize(self, data: Any) -> Any:
        """``data`` as a JSON string (a file-like object is read as it is)."""
        if isinstance(data, dict):
            return json.dumps({key: _to_list(value) for key, value in data.items()})
        if _is_file_like(data):
            return data.read()
        return json.dumps(_to_list(data))


def _to_list(value: Any) -> Any:
    if hasattr(value, "__array__") and hasattr(value, "tolist"):
        return value.tolist()
    return value


class JSONLinesSerializer(SimpleBaseSerializer):
    """JSON Lines: each element of an iterable as one JSON document per line; a string passes through."""

    def __init__(self, content_type: str = "application/jsonlines") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """``data`` as JSON Lines text."""
        if isinstance(data, str):
            return data
        if _is_file_like(data):
            return data.read()
        return "\n".join(json.dumps(_to_list(item)) for item in data)


class NumpySerializer(SimpleBaseSerializer):
    """NumPy ``.npy``: an array (or a list, made an array with ``dtype``) saved with ``numpy.save``.

    Args:
        dtype: The dtype lists are converted with (default: numpy's choice).
        content_type: ``application/x-npy``.
    """

    def __init__(self, dtype: Any = None, content_type: str = "application/x-npy") -> None:
        super().__init__(content_type)
        self.dtype = dtype

    def serialize(self, data: Any) -> Any:
        """``data`` as ``.npy`` bytes.

        Raises:
            ValueError: An empty array or list.
        """
        import numpy as np

        if isinstance(data, np.ndarray):
            if data.size == 0:
                raise ValueError("Cannot serialize empty array.")
            return self._serialize_array(data)
        if isinstance(data, list):
            if len(data) == 0:
                raise ValueError("empty array can't be serialized")
            return self._serialize_array(np.array(data, self.dtype))
        if _is_file_like(data):
            return data.read()
        return self._serialize_array(np.array(data))

    @staticmethod
    def _serialize_array(array: Any) -> bytes:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()


class IdentitySerializer(SimpleBaseSerializer):
    """The data as it is (``bytes``, ``str`` or a file), sent as ``application/octet-stream`` by default."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """``data`` unchanged."""
        return data


class LibSVMSerializer(SimpleBaseSerializer):
    """LIBSVM text (``<label> <index>:<value> ...``): a string or file passes through; a scipy sparse matrix is
    written one row per line with label 0 and zero-based indices, as SageMaker's (scikit-learn's
    ``dump_svmlight_file``)."""

    def __init__(self, content_type: str = "text/libsvm") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """``data`` as LIBSVM text.

        Raises:
            ValueError: Data that is not a string, a file or a scipy sparse matrix.
        """
        if isinstance(data, str):
            return data
        if _is_file_like(data):
            return data.read()
        if _is_sparse(data):
            return "".join(f"{line}\n" for line in _libsvm_rows(data.tocsr()))
        raise ValueError(f"Unable to handle input format: {type(data)}")


def _libsvm_rows(matrix: Any) -> Iterable[str]:
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        pairs = " ".join(
            f"{int(i)}:{float(v):.16g}" for i, v in zip(matrix.indices[start:end], matrix.data[start:end], strict=True)
        )
        yield f"0 {pairs}".rstrip()


class DataSerializer(SimpleBaseSerializer):
    """Raw bytes of a file: a path is read; ``bytes`` pass through (e.g. images, audio)."""

    def __init__(self, content_type: str = "file-path/raw-bytes") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """The bytes of ``data`` (a file path, or bytes).

        Raises:
            ValueError: ``data`` is neither.
        """
        if isinstance(data, str):
            try:
                with open(data, "rb") as handle:
                    return handle.read()
            except OSError as exc:
                raise ValueError(f"Could not open/read file: {data}. {exc}") from exc
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        raise ValueError(f"Object of type {type(data)} is not Data serializable.")


class StringSerializer(SimpleBaseSerializer):
    """A string as it is (``text/plain``)."""

    def __init__(self, content_type: str = "text/plain") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Any:
        """``data``, which must be a string.

        Raises:
            ValueError: ``data`` is not a string.
        """
        if not isinstance(data, str):
            raise ValueError(f"{data} is not an instance of str.")
        return data


__all__ = [
    "BaseSerializer",
    "CSVSerializer",
    "DataSerializer",
    "IdentitySerializer",
    "JSONLinesSerializer",
    "JSONSerializer",
    "LibSVMSerializer",
    "NumpySerializer",
    "SimpleBaseSerializer",
    "StringSerializer",
]
