"""Object stores addressed by ``s3://`` URIs."""

from __future__ import annotations

from pathlib import Path

from trainforge.storage.base import ObjectInfo, ObjectStore
from trainforge.storage.local import LocalObjectStore
from trainforge.storage.uri import S3Uri, check_key, parse_s3_uri, s3_join

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Uri",
    "check_key",
    "open_store",
    "parse_s3_uri",
    "s3_join",
]


def open_store(config: dict[str, object]) -> ObjectStore:
    """The object store a server's storage config describes: ``{"kind": "local", "root": "/path"}``."""
    kind = config.get("kind", "local")
    if kind == "local":
        return LocalObjectStore(Path(str(config["root"])))
    from trainforge.errors import ValidationError

    raise ValidationError(f"storage.kind: unknown object store kind {kind!r} (known: local)", field="storage.kind")
