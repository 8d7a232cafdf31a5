"""Writing an object as a stream: bytes go to the object store while they are produced, with no file in between.

:func:`object_writer` hands out a writable binary file; a helper thread feeds what is written to the store's
``put_stream`` (the local store writes it to a temporary file next to the object and renames it; S3 uploads it in
parts). The object appears only when the block ends without an exception, as every put promises; when the block
raises, the store's read of the stream fails too, so nothing is stored and no temporary file stays behind.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, BinaryIO, cast

from trainforge.storage.base import ObjectInfo, ObjectStore

CHUNK = 1024 * 1024
DEPTH = 8  # chunks in flight between the writer and the store: bounded memory (8 MiB)
_POLL_S = 0.05


class _Abandoned(Exception):
    """What the store's read of the stream raises when the writer gave up (the writer's own error is raised)."""


class _StoreGone(OSError):
    """What a write raises once the store stopped reading (the store's own error is raised)."""


class _Pipe:
    """A bounded queue of byte chunks between one writer thread and one reader thread; either side can end it."""

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._reader_gone = threading.Event()
        self._pending = memoryview(b"")
        self._ended = False

    # the writer's side
    def put(self, item: bytes | BaseException | None) -> None:
        """Queue a chunk, the end (None) or the writer's failure; raises once the reader is gone."""
        while True:
            if self._reader_gone.is_set():
                raise _StoreGone("the object store stopped reading this object")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    # the reader's side
    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (all that remain when ``size`` < 0): fewer only at the end, as a file gives."""
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        got = 0
        while wanted is None or got < wanted:
            if not self._pending:
                if self._ended:
                    break
                item = self._queue.get()
                if item is None:
                    self._ended = True
                    break
                if isinstance(item, BaseException):
                    self._ended = True
                    raise _Abandoned("the archive being written was abandoned") from item
                self._pending = memoryview(item)
            take = len(self._pending) if wanted is None else min(len(self._pending), wanted - got)
            whole = cast(bytes, self._pending.obj)
            parts.append(whole if take == len(self._pending) == len(whole) else self._pending[:take].tobytes())
            self._pending = self._pending[take:]
            got += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close_reader(self) -> None:
        """The reader is done (finished or failed): later puts raise, queued chunks are dropped."""
        self._reader_gone.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


class _PipeReader(io.RawIOBase):
    """The stream the store reads: a non-seekable file whose reads return full sizes until the end."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__()
        self._pipe = pipe

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._pipe.read(-1 if size is None else size)

    def readall(self) -> bytes:
        return self._pipe.read(-1)

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        data = self._pipe.read(view.nbytes)
        view[: len(data)] = data
        return len(data)


class _PipeWriter(io.RawIOBase):
    """The writer's end: each write is queued as one chunk (a copy: the caller may reuse its buffer)."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__()
        self._pipe = pipe
        self._discarding = False

    def writable(self) -> bool:
        return True

    def discard(self) -> None:
        """Drop every later write (the object is abandoned; a buffered rest must not raise again)."""
        self._discarding = True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if size and not self._discarding:
            self._pipe.put(bytes(data))
        return size


@contextmanager
def object_writer(store: ObjectStore, uri: str, *, chunk_size: int = CHUNK) -> Iterator[IO[bytes]]:
    """A binary file whose content is stored at ``uri`` as it is written.

    The object is stored when the block ends without an exception (the store's put has finished by then). When
    the block raises, nothing is stored and the block's exception propagates. When the store fails first (a full
    volume, a denied write, a missing bucket), writes raise and the store's error propagates: ``StorageError``,
    ``ValidationError``, ``NotFoundError``... as its ``put_stream`` raises them.

    Args:
        store: Where the object goes.
        uri: The object's ``s3://`` URI.
        chunk_size: Writes are gathered into chunks of this size before they are handed over.
    """
    pipe = _Pipe(DEPTH)
    outcome: dict[str, BaseException | ObjectInfo] = {}

    def store_it() -> None:
        try:
            outcome["info"] = store.put_stream(uri, cast(BinaryIO, _PipeReader(pipe)))
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            pipe.close_reader()

    worker = threading.Thread(target=store_it, name="trainforge-object-writer", daemon=True)
    worker.start()
    raw = _PipeWriter(pipe)
    writer = io.BufferedWriter(raw, chunk_size)
    try:
        yield cast(IO[bytes], writer)
        writer.close()  # hands over what is buffered (a no-op when the caller closed it)
        pipe.put(None)
    except BaseException as exc:
        raw.discard()
        writer.close()
        with suppress(_StoreGone):
            pipe.put(exc)
        worker.join()
        store_error = outcome.get("error")
        if isinstance(store_error, Exception) and _caused_by_store(exc):
            raise store_error from None
        raise
    worker.join()
    store_error = outcome.get("error")
    if isinstance(store_error, BaseException):
        raise store_error


def _caused_by_store(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised from or while handling, the pipe's 'store stopped reading' error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _StoreGone):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
