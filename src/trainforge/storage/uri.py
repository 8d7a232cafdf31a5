"""Parsing of ``s3://bucket/key`` and ``file:///path`` URIs."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from trainforge.errors import ValidationError


@dataclass(frozen=True)
class S3Uri:
    """A parsed ``s3://bucket/key`` URI; ``key`` may be empty or a prefix."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """This URI with path parts appended (``/`` separated, no doubled slashes)."""
        key = self.key
        for part in parts:
            part = part.strip("/")
            if not part:
                continue
            key = f"{key.rstrip('/')}/{part}" if key else part
        return S3Uri(self.bucket, key)


def parse_s3_uri(uri: str, *, field: str = "uri") -> S3Uri:
    """Parse ``s3://bucket[/key]``; raise :class:`ValidationError` naming ``field`` if it is not one."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValidationError(f"{field}: {uri!r} is not an s3://bucket/key URI", field=field)
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValidationError(f"{field}: {uri!r} has no bucket name", field=field)
    return S3Uri(bucket, key)


def check_key(key: str, *, field: str = "key") -> str:
    """Return ``key`` if it stays inside its bucket; reject absolute keys and ``..`` segments."""
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValidationError(f"{field}: object key {key!r} must be relative, without backslashes", field=field)
    parts = key.split("/")
    if any(p == ".." for p in parts):
        raise ValidationError(f"{field}: object key {key!r} may not contain '..' segments", field=field)
    normalized = posixpath.normpath(key) if key else key
    if normalized.startswith(".."):
        raise ValidationError(f"{field}: object key {key!r} escapes its bucket", field=field)
    return key


def s3_join(base: str, *parts: str) -> str:
    """Join an ``s3://`` (or ``file://``) URI and path parts with single slashes."""
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out
