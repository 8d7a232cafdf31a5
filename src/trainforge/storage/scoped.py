"""Roles on the object store: prefix grants, and a store that lets through only what a role grants.

A role grants ``read`` and ``write`` prefixes, as S3 with IAM: ``s3://bucket/p/`` covers every key that starts
with ``p/`` in ``bucket`` (a plain string prefix: ``s3://bucket/p`` also covers ``pq``); ``s3://bucket`` covers
the whole bucket; ``s3://`` covers every bucket. A write grant implies read of the same prefix (a job reads back
what it may write: checkpoints, its own output). Listing a prefix needs a grant that covers the whole listed
prefix, as ``s3:ListBucket`` with an ``s3:prefix`` condition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from trainforge.errors import PermissionDeniedError, ValidationError
from trainforge.storage.base import ObjectInfo, ObjectStore
from trainforge.storage.uri import check_key

EVERYTHING = "s3://"


def normalize_prefix(prefix: str, *, field: str = "prefix") -> str:
    """A grant prefix in its canonical form: ``s3://``, ``s3://bucket/`` or ``s3://bucket/key-prefix``.

    Raises:
        ValidationError: Not an ``s3://`` prefix, a bad bucket name, or a key with ``..`` (names ``field``).
    """
    if not isinstance(prefix, str) or not prefix.startswith("s3://"):
        raise ValidationError(
            f"{field}: {prefix!r} is not an object-store prefix; write it as s3://bucket/prefix/ (s3://bucket for a "
            "whole bucket, s3:// for every bucket)",
            field=field,
        )
    rest = prefix[len("s3://") :]
    if not rest:
        return EVERYTHING
    bucket, _, key = rest.partition("/")
    if not bucket or bucket in (".", "..") or any(c.isspace() for c in bucket):
        raise ValidationError(f"{field}: {prefix!r} has no valid bucket name", field=field)
    check_key(key, field=field)
    return f"s3://{bucket}/{key}"


def _covers(grant: str, uri: str) -> bool:
    """Whether the normalized ``grant`` covers the object (or listing prefix) ``uri``."""
    if grant == EVERYTHING:
        return True
    target = uri if uri.count("/") >= 3 else uri.rstrip("/") + "/"  # s3://bucket -> s3://bucket/
    return target.startswith(grant)


@dataclass(frozen=True)
class Grants:
    """A role's grants: its name and its normalized read and write prefixes."""

    name: str
    read: tuple[str, ...]
    write: tuple[str, ...]

    @classmethod
    def from_role(cls, role: Mapping[str, Any]) -> Grants:
        """Grants from a role dict ``{"name", "read": [...], "write": [...]}`` (a job's ``role_json``)."""
        name = str(role.get("name") or "?")
        read = tuple(normalize_prefix(p, field="role.read") for p in role.get("read") or ())
        write = tuple(normalize_prefix(p, field="role.write") for p in role.get("write") or ())
        return cls(name, read, write)

    @property
    def unrestricted(self) -> bool:
        """Whether the role may read and write everything."""
        return EVERYTHING in self.write

    def can_read(self, uri: str) -> bool:
        """Whether a read grant, or a write grant (which implies read), covers ``uri``."""
        return any(_covers(g, uri) for g in (*self.read, *self.write))

    def can_write(self, uri: str) -> bool:
        """Whether a write grant covers ``uri``."""
        return any(_covers(g, uri) for g in self.write)

    def denied(self, uri: str, access: str) -> PermissionDeniedError:
        """The error for a refused ``access`` (``read`` or ``write``) to ``uri``."""
        return PermissionDeniedError(
            f"access denied to {uri} (role '{self.name}' has no {access} grant for it)",
            details={"uri": uri, "role": self.name, "access": access},
        )

    def check_read(self, uri: str) -> None:
        """Raise ``PermissionDeniedError`` unless the role may read ``uri``."""
        if not self.can_read(uri):
            raise self.denied(uri, "read")

    def check_write(self, uri: str) -> None:
        """Raise ``PermissionDeniedError`` unless the role may write ``uri``."""
        if not self.can_write(uri):
            raise self.denied(uri, "write")


def union(grants: Iterable[Grants], name: str) -> Grants:
    """One :class:`Grants` holding every prefix of ``grants``."""
    read: list[str] = []
    write: list[str] = []
    for g in grants:
        read.extend(g.read)
        write.extend(g.write)
    return Grants(name, tuple(dict.fromkeys(read)), tuple(dict.fromkeys(write)))


class ScopedObjectStore:
    """An object store that refuses, with ``PermissionDeniedError``, every read or write a role does not grant.

    Reads (``get_bytes``, ``read_chunks``, ``download_file``, ``info``, ``exists``, ``list``) need a read grant (or
    a write grant) covering the URI; writes (``put_*``, ``delete``) a write grant; ``ensure_bucket`` a write grant
    covering the whole bucket. Everything else is the wrapped store's behaviour.
    """

    def __init__(self, inner: ObjectStore, grants: Grants) -> None:
        self.inner = inner
        self.grants = grants

    def with_encryption(self, key_id: str) -> ScopedObjectStore:
        """The same scope over the wrapped store writing encrypted under ``key_id``."""
        return ScopedObjectStore(self.inner.with_encryption(key_id), self.grants)

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (needs write on all of it)."""
        self.grants.check_write(f"s3://{bucket}/")
        self.inner.ensure_bucket(bucket)

    def put_file(self, uri: str, path: Path) -> ObjectInfo:
        """As the wrapped store's, with a write grant."""
        self.grants.check_write(uri)
        return self.inner.put_file(uri, path)

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        """As the wrapped store's, with a write grant."""
        self.grants.check_write(uri)
        return self.inner.put_bytes(uri, data)

    def put_stream(self, uri: str, stream: BinaryIO) -> ObjectInfo:
        """As the wrapped store's, with a write grant."""
        self.grants.check_write(uri)
        return self.inner.put_stream(uri, stream)

    def get_bytes(self, uri: str) -> bytes:
        """As the wrapped store's, with a read grant."""
        self.grants.check_read(uri)
        return self.inner.get_bytes(uri)

    def info(self, uri: str) -> ObjectInfo:
        """As the wrapped store's, with a read grant."""
        self.grants.check_read(uri)
        return self.inner.info(uri)

    def read_chunks(self, uri: str, *, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """As the wrapped store's, with a read grant."""
        self.grants.check_read(uri)
        return self.inner.read_chunks(uri, chunk_size=chunk_size)

    def download_file(self, uri: str, dest: Path) -> None:
        """As the wrapped store's, with a read grant."""
        self.grants.check_read(uri)
        self.inner.download_file(uri, dest)

    def list(self, uri_prefix: str) -> Iterator[ObjectInfo]:
        """As the wrapped store's, with a read grant covering the whole listed prefix (checked on this call)."""
        self.grants.check_read(uri_prefix)
        return self.inner.list(uri_prefix)

    def exists(self, uri: str) -> bool:
        """As the wrapped store's, with a read grant."""
        self.grants.check_read(uri)
        return self.inner.exists(uri)

    def delete(self, uri: str) -> None:
        """As the wrapped store's, with a write grant."""
        self.grants.check_write(uri)
        self.inner.delete(uri)
