"""The embedded object store: ``s3://bucket/key`` is the file ``<root>/bucket/key``.

Encryption at rest: a store made :meth:`~LocalObjectStore.with_encryption` writes every object in the chunked
AES-GCM format of :mod:`trainforge.storage.encryption` under a key id; every store reads such objects
transparently when it has a :class:`~trainforge.storage.encryption.Keyring` that yields the key (sizes reported by
``info`` and ``list`` are the plaintext sizes), and raises ``StorageError`` naming the key id when it has none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from trainforge.errors import NotFoundError, StorageError, ValidationError
from trainforge.storage.base import ObjectInfo
from trainforge.storage.encryption import (
    MAGIC,
    Header,
    Keyring,
    check_key_id,
    decrypt_chunks,
    encrypt_chunks,
    read_header,
)
from trainforge.storage.uri import S3Uri, check_key, parse_s3_uri

_TMP_PREFIX = ".tf-upload-"
CHUNK = 1024 * 1024


def _blocks(source: BinaryIO | Path | bytes) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            while block := handle.read(CHUNK):
                yield block
        return
    while block := source.read(CHUNK):
        yield block


class LocalObjectStore:
    """Objects as files under one root directory; writes are temp file + fsync + rename.

    Args:
        root: The folder that holds one sub-folder per bucket.
        keyring: Where data keys of encrypted objects come from (None: encrypted objects cannot be read).
        write_key_id: Encrypt every object this store writes under this key id (None: write plaintext).
    """

    def __init__(self, root: Path, *, keyring: Keyring | None = None, write_key_id: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.keyring = keyring
        self.write_key_id = check_key_id(write_key_id) if write_key_id is not None else None

    def with_encryption(self, key_id: str) -> LocalObjectStore:
        """This store, writing every object encrypted under ``key_id`` (reads are unchanged).

        Raises:
            ValidationError: ``key_id`` is not a usable key id.
        """
        return LocalObjectStore(self.root, keyring=self.keyring, write_key_id=key_id)

    def _key(self, key_id: str, uri: str, *, for_write: bool) -> bytes:
        if self.keyring is None:
            raise StorageError(
                f"{uri} is encrypted with key '{key_id}' and this process has no access to the server's keys; "
                "read it through the trainforge server or the SDK"
            )
        return self.keyring.data_key(key_id, uri=uri, for_write=for_write)

    def encryption_key_id(self, uri: str) -> str | None:
        """The key id the object at ``uri`` is encrypted under; None for a plaintext object.

        Raises:
            NotFoundError: There is no object at ``uri``.
        """
        _, path = self._object_path(uri)
        handle, header, _ = self._open_header(uri, path)
        handle.close()
        return header.key_id if header is not None else None

    def _open_header(self, uri: str, path: Path) -> tuple[BinaryIO, Header | None, bytes]:
        """Open the object's file and read its header: (file, header or None, plaintext bytes already read)."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"no object at {uri}") from None
        except OSError as exc:
            raise StorageError(f"could not read {uri}: {exc}") from exc
        try:
            header, head = read_header(handle.read, where=uri)
        except BaseException:
            handle.close()
            raise
        return handle, header, head

    def _plaintext(self, uri: str, path: Path, chunk_size: int = CHUNK) -> Iterator[bytes] | None:
        """The decrypted content of an encrypted object (opened now), or None for a plaintext object."""
        handle, header, _ = self._open_header(uri, path)
        if header is None:
            handle.close()
            return None
        try:
            key = self._key(header.key_id, uri, for_write=False)
        except BaseException:
            handle.close()
            raise

        def chunks() -> Iterator[bytes]:
            with handle:
                yield from decrypt_chunks(handle.read, header, key, where=uri)

        return chunks()

    def _stored_size(self, full: Path, size: int) -> int:
        """The content size of the file ``full`` of ``size`` bytes: its plaintext size when encrypted."""
        try:
            with open(full, "rb") as handle:
                header, _ = read_header(handle.read, where=str(full))
        except (OSError, StorageError):
            return size
        return header.plaintext_size(size) if header is not None else size

    def _path(self, uri: str, *, field: str = "uri") -> tuple[S3Uri, Path]:
        parsed = parse_s3_uri(uri, field=field)
        check_key(parsed.key, field=field)
        if parsed.bucket in (".", "..") or "/" in parsed.bucket:
            raise ValidationError(f"{field}: bad bucket name {parsed.bucket!r}", field=field)
        path = (self.root / parsed.bucket / parsed.key).resolve()
        if not path.is_relative_to(self.root / parsed.bucket):
            raise ValidationError(f"{field}: {uri!r} escapes the object store", field=field)
        return parsed, path

    def _object_path(self, uri: str) -> tuple[S3Uri, Path]:
        parsed, path = self._path(uri)
        if not parsed.key or parsed.key.endswith("/"):
            raise ValidationError(f"uri: {uri!r} names a prefix, not an object", field="uri")
        return parsed, path

    def _publish(self, parsed: S3Uri, path: Path, write: BinaryIO | Path | bytes) -> ObjectInfo:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        except OSError as exc:  # e.g. a key whose "folder" is an object already: a/b next to a
            raise StorageError(f"could not write {parsed}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                if self.write_key_id is not None:
                    key = self._key(self.write_key_id, str(parsed), for_write=True)
                    for block in encrypt_chunks(_blocks(write), key, self.write_key_id):
                        out.write(block)
                elif isinstance(write, bytes):
                    out.write(write)
                elif isinstance(write, Path):
                    with open(write, "rb") as src:
                        shutil.copyfileobj(src, out, 1024 * 1024)
                else:
                    shutil.copyfileobj(write, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"could not write {parsed}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        st = path.stat()
        size = st.st_size if self.write_key_id is None else self._stored_size(path, st.st_size)
        return ObjectInfo(parsed.bucket, parsed.key, size, st.st_mtime)

    def put_file(self, uri: str, path: Path) -> ObjectInfo:
        """Store a copy of the file at ``path`` under ``uri`` atomically."""
        parsed, dest = self._object_path(uri)
        return self._publish(parsed, dest, Path(path))

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        """Store ``data`` under ``uri`` atomically."""
        parsed, dest = self._object_path(uri)
        return self._publish(parsed, dest, data)

    def put_stream(self, uri: str, stream: BinaryIO) -> ObjectInfo:
        """Store what ``stream`` yields under ``uri`` atomically."""
        parsed, dest = self._object_path(uri)
        return self._publish(parsed, dest, stream)

    def get_bytes(self, uri: str) -> bytes:
        """The content of the object at ``uri``; ``NotFoundError`` if there is none."""
        _, path = self._object_path(uri)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"no object at {uri}") from None
        except OSError as exc:
            raise StorageError(f"could not read {uri}: {exc}") from exc
        plain = self._plaintext(uri, path) if data.startswith(MAGIC) else None
        return data if plain is None else b"".join(plain)

    def ensure_bucket(self, bucket: str) -> None:
        """Make the bucket's folder (idempotent)."""
        _, path = self._path(f"s3://{bucket}/", field="bucket")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"could not create bucket {bucket!r} at {path}: {exc}") from exc

    def info(self, uri: str) -> ObjectInfo:
        """Size and modification time of the object at ``uri``; ``NotFoundError`` if there is none."""
        parsed, path = self._object_path(uri)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no object at {uri}") from None
        if not path.is_file():
            raise NotFoundError(f"no object at {uri}")
        return ObjectInfo(parsed.bucket, parsed.key, self._stored_size(path, st.st_size), st.st_mtime)

    def read_chunks(self, uri: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Open the object now (``NotFoundError`` is raised by this call) and iterate over its content."""
        _, path = self._object_path(uri)
        handle, header, head = self._open_header(uri, path)
        if header is not None:
            handle.close()
            plain = self._plaintext(uri, path, chunk_size)
            assert plain is not None
            return plain

        def chunks() -> Iterator[bytes]:
            with handle:
                first = head + handle.read(max(0, chunk_size - len(head)))
                if first:
                    yield first
                while block := handle.read(chunk_size):
                    yield block

        return chunks()

    def download_file(self, uri: str, dest: Path) -> None:
        """Copy the object to ``dest``: a new inode, so writing it never changes the stored object."""
        _, path = self._object_path(uri)
        if not path.is_file():
            raise NotFoundError(f"no object at {uri}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        plain = self._plaintext(uri, path)
        try:
            if plain is None:
                shutil.copyfile(path, dest)
            else:
                try:
                    with open(dest, "wb") as out:
                        for block in plain:
                            out.write(block)
                except BaseException:
                    dest.unlink(missing_ok=True)
                    raise
            os.chmod(dest, 0o644)
        except OSError as exc:
            raise StorageError(f"could not copy {uri} to {dest}: {exc}") from exc

    def list(self, uri_prefix: str) -> Iterator[ObjectInfo]:
        """Objects under ``uri_prefix`` (a plain string prefix of the key), sorted by key."""
        parsed, _ = self._path(uri_prefix, field="prefix")
        bucket_root = self.root / parsed.bucket
        if not bucket_root.is_dir():
            return
        prefix = parsed.key
        # Walk only the deepest directory the prefix names in full.
        start_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = bucket_root / start_rel
        if not start.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(bucket_root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    found.append(ObjectInfo(parsed.bucket, key, self._stored_size(full, st.st_size), st.st_mtime))
        found.sort(key=lambda o: o.key)
        yield from found

    def exists(self, uri: str) -> bool:
        """Whether an object is stored at exactly ``uri``."""
        _, path = self._object_path(uri)
        return path.is_file()

    def delete(self, uri: str) -> None:
        """Remove the object at ``uri`` if present."""
        _, path = self._object_path(uri)
        path.unlink(missing_ok=True)
