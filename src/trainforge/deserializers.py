"""Deserializers: how ``Predictor.predict`` turns the response body into a value (``sagemaker.deserializers``).

Each deserializer has an ``ACCEPT`` (sent as the request's ``Accept``) and ``deserialize(stream, content_type)``,
where ``stream`` is the response body as a readable, closable stream. numpy and pandas are imported only by the
deserializers that return their types.
"""

from __future__ import annotations

import abc
import codecs
import csv
import io
import json
from typing import Any


def _media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class BaseDeserializer(abc.ABC):
    """Abstract base of every deserializer: ``deserialize(stream, content_type)`` and the ``ACCEPT`` it asks for."""

    @abc.abstractmethod
    def deserialize(self, stream: Any, content_type: str) -> Any:
        """The value of the response body ``stream`` of type ``content_type``."""

    @property
    @abc.abstractmethod
    def ACCEPT(self) -> Any:
        """The MIME type(s) this deserializer reads (a string, or a tuple in preference order)."""


class SimpleBaseDeserializer(BaseDeserializer, abc.ABC):
    """A deserializer whose accept type is given at construction.

    Args:
        accept: The MIME type (or tuple of types) to ask for.
    """

    def __init__(self, accept: Any = "*/*") -> None:
        self.accept = accept

    @property
    def ACCEPT(self) -> Any:
        """The accept type(s) given at construction."""
        return self.accept


class StringDeserializer(SimpleBaseDeserializer):
    """The body decoded as text (``encoding``, default UTF-8)."""

    def __init__(self, encoding: str = "UTF-8", accept: Any = "application/json") -> None:
        super().__init__(accept)
        self.encoding = encoding

    def deserialize(self, stream: Any, content_type: str) -> str:
        """The body as a ``str``."""
        try:
            return str(stream.read().decode(self.encoding))
        finally:
            stream.close()


class BytesDeserializer(SimpleBaseDeserializer):
    """The body as ``bytes``."""

    def deserialize(self, stream: Any, content_type: str) -> bytes:
        """The body's bytes."""
        try:
            return bytes(stream.read())
        finally:
            stream.close()


class CSVDeserializer(SimpleBaseDeserializer):
    """CSV text as a list of rows, each a list of strings."""

    def __init__(self, encoding: str = "utf-8", accept: Any = "text/csv") -> None:
        super().__init__(accept)
        self.encoding = encoding

    def deserialize(self, stream: Any, content_type: str) -> list[list[str]]:
        """The rows of the body (``[["0.1", "0.2"], ...]``)."""
        try:
            decoded = stream.read().decode(self.encoding)
            return list(csv.reader(io.StringIO(decoded)))
        finally:
            stream.close()


class StreamDeserializer(SimpleBaseDeserializer):
    """The stream itself and its content type, for the caller to read (and close)."""

    def deserialize(self, stream: Any, content_type: str) -> tuple[Any, str]:
        """``(stream, content_type)``."""
        return stream, content_type


class NumpyDeserializer(SimpleBaseDeserializer):
    """A numpy array from ``.npy``/``.npz``, CSV or JSON bodies.

    Args:
        dtype: The dtype of arrays read from CSV or JSON.
        accept: ``application/x-npy`` by default.
        allow_pickle: Passed to ``numpy.load`` (off: a pickled object array is refused).
    """

    def __init__(self, dtype: Any = None, accept: Any = "application/x-npy", allow_pickle: bool = False) -> None:
        super().__init__(accept)
        self.dtype = dtype
        self.allow_pickle = allow_pickle

    def deserialize(self, stream: Any, content_type: str) -> Any:
        """The body as an array.

        Raises:
            ValueError: A content type other than ``text/csv``, ``application/json``, ``application/x-npy`` or
                ``application/x-npz``.
        """
        import numpy as np

        media = _media_type(content_type)
        try:
            if media == "text/csv":
                return np.genfromtxt(codecs.getreader("utf-8")(stream), delimiter=",", dtype=self.dtype)
            if media == "application/json":
                return np.array(json.load(codecs.getreader("utf-8")(stream)), dtype=self.dtype)
            if media in ("application/x-npy", "application/x-npz"):
                return np.load(io.BytesIO(stream.read()), allow_pickle=self.allow_pickle)
        finally:
            stream.close()
        raise ValueError(f"{type(self).__name__} cannot read content type {content_type}.")


class JSONDeserializer(SimpleBaseDeserializer):
    """A JSON body as Python objects."""

    def __init__(self, accept: Any = "application/json") -> None:
        super().__init__(accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        """The decoded JSON value."""
        try:
            return json.load(codecs.getreader("utf-8")(stream))
        finally:
            stream.close()


class PandasDeserializer(SimpleBaseDeserializer):
    """A pandas DataFrame from a CSV or JSON body."""

    def __init__(self, accept: Any = ("text/csv", "application/json")) -> None:
        super().__init__(accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        """The body as a DataFrame.

        Raises:
            ValueError: A content type other than ``text/csv`` or ``application/json``.
        """
        import pandas as pd

        media = _media_type(content_type)
        try:
            if media == "text/csv":
                return pd.read_csv(stream)
            if media == "application/json":
                return pd.read_json(io.StringIO(stream.read().decode("utf-8")))
        finally:
            stream.close()
        raise ValueError(f"{type(self).__name__} cannot read content type {content_type}.")


class JSONLinesDeserializer(SimpleBaseDeserializer):
    """JSON Lines: one decoded value per non-empty line."""

    def __init__(self, accept: Any = "application/jsonlines") -> None:
        super().__init__(accept)

    def deserialize(self, stream: Any, content_type: str) -> list[Any]:
        """The list of the lines' values."""
        try:
            body = stream.read().decode("utf-8")
            return [json.loads(line) for line in body.rstrip().split("\n") if line.strip()]
        finally:
            stream.close()


__all__ = [
    "BaseDeserializer",
    "BytesDeserializer",
    "CSVDeserializer",
    "JSONDeserializer",
    "JSONLinesDeserializer",
    "NumpyDeserializer",
    "PandasDeserializer",
    "SimpleBaseDeserializer",
    "StreamDeserializer",
    "StringDeserializer",
]
