"""The object-store interface: immutable objects addressed by ``s3://bucket/key``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object."""

    bucket: str
    key: str
    size: int
    mtime: float
    # The store's version tag of the content (S3's ETag, quotes removed); None where the store keeps none (the
    # local store: see trainforge.runtime.lineage.object_etag for the hash used there instead)
    etag: str | None = None

    @property
    def uri(self) -> str:
        """The object's ``s3://`` URI."""
        return f"s3://{self.bucket}/{self.key}"


class ObjectStore(Protocol):
    """What every object store offers. Objects are immutable: a put replaces an object by a new one whole.

    Keys that would leave their bucket (``..``, absolute keys) raise ``ValidationError``; a missing object
    raises ``NotFoundError``; any other failure raises ``StorageError``. Buckets: on S3 a bucket exists or
    not, and reading, listing or writing in a missing one raises ``NotFoundError`` saying that the bucket does
    not exist; the local store's buckets are folders made by the first put (a bucket never written lists empty).
    """

    def with_encryption(self, key_id: str) -> ObjectStore:
        """This store, writing every object encrypted at rest under the key ``key_id`` (S3: SSE-KMS; the local
        store: AES-GCM with a data key the server keeps). Reads of encrypted objects stay transparent."""
        ...

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` when it does not exist (idempotent)."""
        ...

    def put_file(self, uri: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` under ``uri``; readers see the old or the new object, never a part."""
        ...

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        """Store ``data`` under ``uri`` atomically."""
        ...

    def put_stream(self, uri: str, stream: BinaryIO) -> ObjectInfo:
        """Store everything read from ``stream`` under ``uri`` atomically."""
        ...

    def get_bytes(self, uri: str) -> bytes:
        """The content of the object at ``uri``."""
        ...

    def info(self, uri: str) -> ObjectInfo:
        """Size and modification time of the object at ``uri``."""
        ...

    def read_chunks(self, uri: str, *, chunk_size: int = ...) -> Iterator[bytes]:
        """Open the object now (so ``NotFoundError`` comes from this call) and iterate over its content."""
        ...

    def download_file(self, uri: str, dest: Path) -> None:
        """Write the object's content to a new file at ``dest`` (a copy the caller may change freely)."""
        ...

    def list(self, uri_prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose ``s3://`` URI starts with ``uri_prefix``, in key order."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether an object is stored at exactly ``uri``."""
        ...

    def delete(self, uri: str) -> None:
        """Remove the object at ``uri`` if it exists."""
        ...
