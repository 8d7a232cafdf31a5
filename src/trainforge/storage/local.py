"""The embedded object store: ``s3://bucket/key`` is the file ``<root>/bucket/key``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from trainforge.errors import NotFoundError, StorageError, ValidationError
from trainforge.storage.base import ObjectInfo
from trainforge.storage.uri import S3Uri, check_key, parse_s3_uri

_TMP_PREFIX = ".tf-upload-"
CHUNK = 1024 * 1024


class LocalObjectStore:
    """Objects as files under one root directory; writes are temp file + fsync + rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

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
                if isinstance(write, bytes):
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
        return ObjectInfo(parsed.bucket, parsed.key, st.st_size, st.st_mtime)

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
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError(f"no object at {uri}") from None

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
        return ObjectInfo(parsed.bucket, parsed.key, st.st_size, st.st_mtime)

    def read_chunks(self, uri: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Open the object now (``NotFoundError`` is raised by this call) and iterate over its content."""
        _, path = self._object_path(uri)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"no object at {uri}") from None
        except OSError as exc:
            raise StorageError(f"could not read {uri}: {exc}") from exc

        def chunks() -> Iterator[bytes]:
            with handle:
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
        try:
            shutil.copyfile(path, dest)
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
                    found.append(ObjectInfo(parsed.bucket, key, st.st_size, st.st_mtime))
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
