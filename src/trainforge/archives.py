"""tar.gz archives, fast: written and read with ISA-L's gzip (the ``isal`` package), still standard gzip.

Every ``tar.gz`` trainforge makes or reads (``model.tar.gz``, ``output.tar.gz``, ``sourcedir.tar.gz``, repacked
models) goes through this module.

Writing streams: :func:`create` puts the tar stream straight into the gzip writer, and the gzip writer straight
into the destination (a path, or any writable binary file such as an upload to the object store), so no byte is
written twice. Compression is ISA-L level 1 (about the size of zlib's level 1, over ten times its speed) on
:func:`compression_threads` threads: two where this process may run on two cores or more (``igzip_threaded``), else
the plain ``igzip`` writer in the caller's thread. The result is ordinary gzip (one member, CRC-32 and size
trailer, ``XFL=4`` "fastest", ``OS=255``, no name, mtime 0): ``tarfile``, ``tar xzf`` and SageMaker's own tools
read it.

Reading: :func:`open_archive` recognises gzip by its magic bytes and decompresses it with ISA-L; any other tar
(plain, bzip2, xz) goes through ``tarfile`` as before. Corrupt compressed data raises ``tarfile.ReadError`` and
truncated data ``EOFError``, as with the stdlib, never ISA-L's own error type.

Without ``isal`` (a dependency of trainforge, but code that runs inside a user's environment may import this module
where it is missing) the stdlib's ``gzip`` does the same work at zlib level 1 in one thread, several times slower.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, BinaryIO, cast

GZIP_MAGIC = b"\x1f\x8b"
GZIP_LEVEL = 1
COPY_BUFFER = 1024 * 1024
MAX_THREADS = 2
_HEADER_SIZE = 10
_XFL_FASTEST = 4
_OS_UNKNOWN = 255


def _load_isal() -> tuple[ModuleType, ModuleType, type[Exception]] | None:
    try:
        from isal import igzip, igzip_threaded
        from isal.igzip_lib import IsalError
    except ImportError:
        return None
    return igzip, igzip_threaded, cast(type[Exception], IsalError)  # the stub calls the class an instance


_ISAL = _load_isal()
ACCELERATED = _ISAL is not None
"""Whether ISA-L is used (else the stdlib's gzip)."""

_CORRUPT: tuple[type[Exception], ...] = (zlib.error, gzip.BadGzipFile) + ((_ISAL[2],) if _ISAL else ())


def compression_threads() -> int:
    """How many threads a writer compresses on by default: ``min(2, cores this process may run on)``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


@dataclass
class Contents:
    """What :func:`add_tree` wrote, for content hashes: the sha256 (hex) of every regular file's bytes and the
    target of every symbolic link, by member name. Hard links and directories are not listed."""

    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


class _Output(io.RawIOBase):
    """The destination as the gzip writer sees it: sets the header's XFL and OS bytes (ISA-L's writers leave them
    0 or swapped) and, once :meth:`refuse` is called, fails every write so an abandoned archive never ends well."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self._out = out
        self._position = 0
        self._refused = False

    def writable(self) -> bool:
        return True

    def refuse(self) -> None:
        """Fail every later write (the archive is being abandoned)."""
        self._refused = True

    def write(self, data: Any) -> int:
        if self._refused:
            raise OSError("the archive was abandoned")
        view = memoryview(data).cast("B")
        size = view.nbytes
        if self._position < _HEADER_SIZE and self._position + size > 8:
            patched = bytearray(view)
            for index, value in ((8, _XFL_FASTEST), (9, _OS_UNKNOWN)):
                if 0 <= index - self._position < size:
                    patched[index - self._position] = value
            view = memoryview(patched)
        written = 0
        while written < size:  # a raw destination may take part of it
            count = self._out.write(view[written:])
            written += size - written if count is None else count
        self._position += size
        return size


class _Counted(io.RawIOBase):
    """The gzip writer as ``tarfile`` sees it: a stream whose position is counted (``tarfile`` asks ``tell()``
    once; the threaded writer cannot answer)."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        super().__init__()
        self._inner = inner
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self._inner.write(data)
        self._position += size
        return size

    def tell(self) -> int:
        return self._position


def _gzip_writer(out: _Output, threads: int) -> io.BufferedIOBase:
    if _ISAL is None:
        return gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=out, mtime=0)
    igzip, igzip_threaded, _ = _ISAL
    if threads >= 2:
        writer = igzip_threaded.open(out, "wb", compresslevel=GZIP_LEVEL, threads=threads)
    else:
        writer = igzip.IGzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=out, mtime=0)
    return cast(io.BufferedIOBase, writer)


@contextmanager
def create(
    dest: Path | IO[bytes], *, threads: int | None = None, dereference: bool = False
) -> Iterator[tarfile.TarFile]:
    """A ``tarfile.TarFile`` whose members are gzip'd into ``dest`` as they are added.

    The archive is complete when the block ends without an exception. When it raises, the gzip stream is left
    without its end (no reader takes it for a whole archive), a ``dest`` path is removed, and the exception
    propagates; a file object passed as ``dest`` is never closed.

    Args:
        dest: A path (created or replaced) or a writable binary file.
        threads: Compression threads (default :func:`compression_threads`); 1 compresses in the caller's thread.
        dereference: Store what symbolic links point to instead of the links.

    Raises:
        ValueError: ``threads`` is below 1.
        OSError: Writing failed (``ENOSPC`` for a full disk), or a file could not be read.
    """
    count = compression_threads() if threads is None else threads
    if count < 1:
        raise ValueError(f"threads: at least 1, got {count}")
    with ExitStack() as stack:
        if isinstance(dest, Path):
            file: IO[bytes] = stack.enter_context(open(dest, "wb"))
        else:
            file = dest
        try:
            output = _Output(file)
            writer = _gzip_writer(output, count)
            done = False
            try:
                # closed below only when complete: closing writes the archive's end
                tar = tarfile.open(fileobj=_Counted(writer), mode="w:", dereference=dereference)  # noqa: SIM115
                tar.copybufsize = COPY_BUFFER  # type: ignore[attr-defined]
                yield tar
                tar.close()
                writer.close()
                done = True
            finally:
                if not done:
                    output.refuse()
                    with suppress(Exception):  # the error that abandoned the archive is the one that counts
                        writer.close()  # stops the writer's threads; its trailer write fails
        except BaseException:
            if isinstance(dest, Path):
                stack.close()
                dest.unlink(missing_ok=True)
            raise


class _Hashing(io.RawIOBase):
    """A file being archived, hashed as ``tarfile`` reads it."""

    def __init__(self, inner: BinaryIO, name: str, contents: Contents) -> None:
        super().__init__()
        self._inner = inner
        self._name = name
        self._contents = contents
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._digest.update(data)
        return data

    def finish(self) -> None:
        """Record the file's hash."""
        self._contents.files[self._name] = self._digest.hexdigest()


def _add(tar: tarfile.TarFile, path: Path, arcname: str, contents: Contents | None) -> None:
    """``tar.add(path, arcname)``, recursive in sorted order, hashing regular files into ``contents``."""
    info = tar.gettarinfo(str(path), arcname)
    if info is None:  # a socket: tarfile.add leaves it out too
        return
    if info.isreg():
        with open(path, "rb") as handle:
            if contents is None:
                tar.addfile(info, handle)
            else:
                hashing = _Hashing(handle, arcname, contents)
                tar.addfile(info, hashing)
                hashing.finish()
    elif info.isdir():
        tar.addfile(info)
        for name in sorted(os.listdir(path)):
            _add(tar, path / name, f"{arcname}/{name}", contents)
    else:
        tar.addfile(info)
        if contents is not None and info.issym():
            contents.links[arcname] = info.linkname


def add_tree(tar: tarfile.TarFile, src_dir: Path, *, prefix: str = "", contents: Contents | None = None) -> int:
    """Add the contents of ``src_dir`` to ``tar`` under ``prefix`` (``""``: at the archive root), every directory's
    entries sorted by name, as ``tarfile.add`` would (symbolic links stored as links unless ``tar`` dereferences);
    record regular files' hashes and links' targets in ``contents`` when given.

    Returns the number of top-level entries; a missing directory adds nothing.
    """
    names = sorted(os.listdir(src_dir)) if src_dir.is_dir() else []
    for name in names:
        _add(tar, src_dir / name, f"{prefix}{name}", contents)
    return len(names)


def write_archive(
    src_dir: Path, dest: Path | IO[bytes], *, threads: int | None = None, contents: Contents | None = None
) -> int:
    """Write a ``tar.gz`` of the contents of ``src_dir`` (entries at the archive root, sorted; symbolic links
    stored as links) to ``dest``; return the number of top-level entries. An empty or missing directory gives a
    valid empty archive. See :func:`create` for ``dest``, ``threads`` and errors, :func:`add_tree` for
    ``contents``."""
    with create(dest, threads=threads) as tar:
        return add_tree(tar, src_dir, contents=contents)


class _Decompressed(io.BufferedIOBase):
    """Decompressed data for ``tarfile``: full reads, seeks passed on, corrupt data as ``tarfile.ReadError``."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._inner.read(-1 if size is None else size)
        except _CORRUPT as exc:
            raise tarfile.ReadError(f"corrupt gzip data: {exc}") from None

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        data = self.read(view.nbytes)
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return self._inner.seek(offset, whence)
        except _CORRUPT as exc:
            raise tarfile.ReadError(f"corrupt gzip data: {exc}") from None

    def tell(self) -> int:
        return self._inner.tell()


def _gzip_reader(raw: IO[bytes], stream: bool) -> io.BufferedIOBase:
    if _ISAL is None:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    igzip, igzip_threaded, _ = _ISAL
    if stream:
        reader = igzip_threaded.open(raw, "rb", threads=1, block_size=COPY_BUFFER)
    else:
        reader = igzip.IGzipFile(fileobj=raw, mode="rb")
    return cast(io.BufferedIOBase, reader)


def gunzip(data: bytes) -> bytes:
    """The decompressed content of gzip ``data`` (every member of it), with ISA-L where it is installed.

    Raises:
        gzip.BadGzipFile: ``data`` is not gzip, or its compressed data is corrupt (an ``OSError``).
        EOFError: ``data`` ends early.
    """
    if _ISAL is None:
        try:
            return gzip.decompress(data)
        except zlib.error as exc:
            raise gzip.BadGzipFile(f"corrupt gzip data: {exc}") from None
    try:
        return cast(bytes, _ISAL[0].decompress(data))
    except _CORRUPT as exc:
        if isinstance(exc, gzip.BadGzipFile):
            raise
        raise gzip.BadGzipFile(f"corrupt gzip data: {exc}") from None


def _tar_reader(fileobj: IO[bytes], *, stream: bool, decompressed: bool) -> tarfile.TarFile:
    if decompressed:
        if stream:
            return tarfile.open(fileobj=fileobj, mode="r|", bufsize=COPY_BUFFER)
        return tarfile.open(fileobj=fileobj, mode="r:")
    if stream:
        return tarfile.open(fileobj=fileobj, mode="r|*", bufsize=COPY_BUFFER)
    return tarfile.open(fileobj=fileobj, mode="r:*")


@contextmanager
def open_archive(source: Path | IO[bytes], *, stream: bool = False) -> Iterator[tarfile.TarFile]:
    """Open a tar archive (gzip'd or not) for reading; closed when the block ends.

    Args:
        source: A path, or a readable binary file (left open).
        stream: False: random access (``getmembers``, ``extractall``...; ``source`` must be seekable).
            True: members in order only (``tarfile``'s ``r|`` mode) from any readable file such as a pipe or an
            object's chunks; gzip is then decompressed in a helper thread while the caller works.

    Raises:
        tarfile.ReadError: Not a tar archive, or corrupt compressed data (also while reading members).
        EOFError: The compressed data ends early (also while reading members).
        OSError: ``source`` cannot be read.
    """
    with ExitStack() as stack:
        if isinstance(source, Path):
            raw: IO[bytes] = stack.enter_context(open(source, "rb"))
        else:
            raw = source
        if stream:
            buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
            magic = buffered.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)]
            reader: IO[bytes] = cast(IO[bytes], buffered)
        else:
            reader = raw
            start = raw.tell()
            magic = raw.read(len(GZIP_MAGIC))
            raw.seek(start)
        if magic == GZIP_MAGIC:
            reader = cast(IO[bytes], _Decompressed(stack.enter_context(_gzip_reader(reader, stream))))
        tar = stack.enter_context(_tar_reader(reader, stream=stream, decompressed=magic == GZIP_MAGIC))
        yield tar


__all__ = [
    "ACCELERATED",
    "GZIP_LEVEL",
    "Contents",
    "add_tree",
    "compression_threads",
    "create",
    "gunzip",
    "open_archive",
    "write_archive",
]
