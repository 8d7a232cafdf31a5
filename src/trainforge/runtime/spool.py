"""A host's durable outbox on the node's disk: the records its supervisor has yet to deliver to the server.

The supervisor's :class:`~trainforge.runtime.reporter.Reporter` appends every log line, status report and metric
batch here before anything is sent, and acknowledges records once the server answered them. A spool is a
directory (``<job root>/spool``) of:

- segments ``00000001.jsonl``, ``00000002.jsonl``, ...: one JSON object per line, appended in the order the
  records were produced (``{"kind": "line", "seq", "timestamp", "stream", "message"}``, ``{"kind": "status",
  "status", "message", "failure_reason"}`` or ``{"kind": "metrics", "points"}``). A segment is closed once it
  reaches ``segment_bytes`` and the next one begins.
- ``acked.json``: ``{"owner", "segment", "offset", "next_seq"}``, the position up to which the server answered
  every record, and the sequence number the next line gets. It is replaced atomically (written, fsync'd,
  renamed) after each answered batch; segments wholly before it are deleted then, so acknowledged data never
  holds more than one segment of disk.

Writes reach the operating system at each :meth:`Spool.flush` (a supervisor killed with SIGKILL loses nothing it
flushed) and the disk at each :meth:`Spool.sync` (the reporter syncs on status reports and at most once a
second otherwise), never once per line. Opening a spool recovers it: a record cut short by a crash (no final
newline, or not JSON) is truncated away, an acknowledged position beyond what the disk kept (a machine crash
before the data was synced) means everything was delivered. ``owner`` identifies the launch that wrote the
spool (a digest of its agent token): a supervisor of a new launch finds another owner's spool and sets it aside
(:func:`open_for`), since its records cannot be delivered with the new token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 << 20
ACK_FILE = "acked.json"
SEGMENT_SUFFIX = ".jsonl"
SPOOL_DIR = "spool"


@dataclass(frozen=True, order=True)
class Position:
    """A place in the spool: segment number and byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class Record:
    """One spooled record: its JSON object and the position just after it (what acknowledging it means)."""

    data: dict[str, Any]
    end: Position
    size: int

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))


def _segment_name(number: int) -> str:
    return f"{number:08d}{SEGMENT_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _complete_prefix(path: Path, start: int) -> tuple[int, int | None]:
    """Scan ``path`` from ``start``: the offset just after its last complete, valid record, and the highest line
    ``seq`` among the records from ``start`` to there (None: no line)."""
    good = start
    top: int | None = None
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break
                try:
                    data = json.loads(raw)
                except ValueError:
                    break
                if not isinstance(data, dict):
                    break
                good += len(raw)
                if data.get("kind") == "line" and isinstance(data.get("seq"), int):
                    top = data["seq"] if top is None else max(top, data["seq"])
    except FileNotFoundError:
        return start, None
    return good, top


class Spool:
    """One host's spool directory (see the module doc). Not thread-safe: the reporter locks around it.

    Args:
        directory: The spool directory (created when missing).
        owner: Who writes it (a digest of the launch's agent token); recorded in ``acked.json``.
        segment_bytes: Size at which a segment is closed and the next one begun.
    """

    def __init__(self, directory: Path, *, owner: str = "", segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.owner = owner
        self.segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        ack = read_ack(self.directory)
        if ack is not None and not owner:
            self.owner = str(ack.get("owner", ""))
        self.acked = Position(int((ack or {}).get("segment", 1)), int((ack or {}).get("offset", 0)))
        acked_next_seq = int((ack or {}).get("next_seq", 0))
        self.next_seq = acked_next_seq
        self._writer: IO[bytes] | None = None
        self._segment = self.acked.segment
        self._size = 0
        self._synced_at = time.monotonic()
        self._recover()
        if ack is None:
            self._write_ack()

    # ----------------------------------------------------------------------------------- opening

    def segments(self) -> list[int]:
        """The numbers of the segment files present, in order."""
        found = []
        for entry in self.directory.glob(f"*{SEGMENT_SUFFIX}"):
            with contextlib.suppress(ValueError):
                found.append(int(entry.name[: -len(SEGMENT_SUFFIX)]))
        return sorted(found)

    def _path(self, segment: int) -> Path:
        return self.directory / _segment_name(segment)

    def _recover(self) -> None:
        """Drop acknowledged segments, cut a torn last record, find the next sequence number, open for append."""
        numbers = self.segments()
        for number in numbers:
            if number < self.acked.segment:
                self._path(number).unlink(missing_ok=True)
        numbers = [n for n in numbers if n >= self.acked.segment]
        if not numbers:
            numbers = [self.acked.segment]
        for number in numbers:
            path = self._path(number)
            start = self.acked.offset if number == self.acked.segment else 0
            size = path.stat().st_size if path.exists() else 0
            if number == self.acked.segment and start > size:
                # The disk kept less than was acknowledged (a crash before a sync): all of it was delivered.
                start = size
                self.acked = Position(number, size)
            good, top = _complete_prefix(path, start)
            if top is not None:
                self.next_seq = max(self.next_seq, top + 1)
            if good < size:
                if number != numbers[-1]:
                    log.warning("spool segment %s has a damaged record at %d; dropping what follows", path, good)
                else:
                    log.warning("spool %s: dropping a record cut short at offset %d", path, good)
                with open(path, "r+b") as handle:
                    handle.truncate(good)
                for later in numbers[numbers.index(number) + 1 :]:
                    self._path(later).unlink(missing_ok=True)
                numbers = numbers[: numbers.index(number) + 1]
                break
        self._segment = numbers[-1]
        self._writer = open(self._path(self._segment), "ab")  # noqa: SIM115 - closed in close()
        self._size = self._writer.tell()

    # ----------------------------------------------------------------------------------- writing

    @property
    def end(self) -> Position:
        """The position after the last record written."""
        return Position(self._segment, self._size)

    @property
    def pending(self) -> bool:
        """Whether some record is not acknowledged yet."""
        return self.acked < self.end

    def append(self, data: dict[str, Any]) -> Position:
        """Write one record (buffered: call :meth:`flush` before anyone reads it); return the position after it."""
        assert self._writer is not None, "spool is closed"
        raw = json.dumps(data, separators=(",", ":")).encode("ascii") + b"\n"
        if self._size > 0 and self._size + len(raw) > self.segment_bytes:
            self._rotate()
        self._writer.write(raw)
        self._size += len(raw)
        return self.end

    def _rotate(self) -> None:
        assert self._writer is not None
        self._writer.flush()
        os.fsync(self._writer.fileno())
        self._writer.close()
        self._segment += 1
        self._writer = open(self._path(self._segment), "ab")  # noqa: SIM115 - closed in close()
        self._size = 0
        _fsync_dir(self.directory)

    def flush(self) -> None:
        """Hand what was appended to the operating system (it survives the process, not the machine)."""
        if self._writer is not None:
            self._writer.flush()

    def sync(self) -> None:
        """Flush and fsync the segment being written (it survives the machine)."""
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
        self._synced_at = time.monotonic()

    def sync_if_older(self, seconds: float) -> None:
        """:meth:`sync` unless the last sync is less than ``seconds`` old."""
        if time.monotonic() - self._synced_at >= seconds:
            self.sync()

    # ----------------------------------------------------------------------------------- reading

    def read(
        self, start: Position, *, limit: Position | None = None, max_records: int = 1000, max_bytes: int = 1 << 20
    ) -> list[Record]:
        """Records from ``start`` (a position some record ends at, or the acknowledged one), at most
        ``max_records`` of them and about ``max_bytes`` (always at least one), none beyond ``limit`` (default:
        what was written). A record cut short ends the read."""
        limit = limit or self.end
        out: list[Record] = []
        size = 0
        position = start

        def room() -> bool:
            return len(out) < max_records and (not out or size < max_bytes)

        while position < limit and room():
            path = self._path(position.segment)
            stop = limit.offset if position.segment == limit.segment else None
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed just below
            except FileNotFoundError:
                handle = None
            if handle is not None:
                with handle:
                    handle.seek(position.offset)
                    while room() and (stop is None or position.offset < stop):
                        raw = handle.readline()
                        if not raw.endswith(b"\n"):
                            break
                        try:
                            data = json.loads(raw)
                        except ValueError:
                            log.error("spool %s: unreadable record at offset %d", path, position.offset)
                            break
                        position = Position(position.segment, position.offset + len(raw))
                        out.append(Record(data, position, len(raw)))
                        size += len(raw)
            if position.segment >= limit.segment or not room():
                break
            position = Position(position.segment + 1, 0)
        return out

    def unacknowledged(self, *, max_records: int = 1000, max_bytes: int = 1 << 20) -> list[Record]:
        """The first records not acknowledged yet."""
        return self.read(self.acked, max_records=max_records, max_bytes=max_bytes)

    # ----------------------------------------------------------------------------------- acknowledging

    def ack(self, position: Position) -> None:
        """Record that every record up to ``position`` was answered; delete segments wholly before it."""
        if position <= self.acked:
            return
        self.acked = position
        try:
            self._write_ack()
        except OSError as exc:
            # The acknowledgement stays in memory: a supervisor resumed on this spool would resend from the last
            # one written, which the server stores once (it keys lines by host and sequence number).
            log.warning("spool %s: cannot record the acknowledgement (%s)", self.directory, exc)
        for number in self.segments():
            if number < position.segment:
                self._path(number).unlink(missing_ok=True)

    def ack_all(self) -> None:
        """Acknowledge everything written (the job is gone: nothing more will be delivered)."""
        with contextlib.suppress(OSError):
            self.flush()
        self.ack(self.end)

    def _write_ack(self) -> None:
        data = {
            "owner": self.owner,
            "segment": self.acked.segment,
            "offset": self.acked.offset,
            "next_seq": self.next_seq,
        }
        path = self.directory / ACK_FILE
        tmp = path.with_name(f".{ACK_FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(json.dumps(data))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        """Sync and close the segment being written."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self.sync()
            with contextlib.suppress(OSError):  # a full disk: what the buffer still held was sent from memory
                self._writer.close()
            self._writer = None


def read_ack(directory: Path) -> dict[str, Any] | None:
    """The content of a spool's ``acked.json`` (None: none, or unreadable)."""
    try:
        data = json.loads((Path(directory) / ACK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_for(directory: Path, owner: str, *, segment_bytes: int = SEGMENT_BYTES) -> Spool:
    """Open the spool at ``directory`` for the launch ``owner``. A spool another launch left there is renamed
    ``<directory>.<time>.stale`` (logged; its records could not be delivered with this launch's token) or removed
    when it holds nothing undelivered, and a fresh one begins."""
    directory = Path(directory)
    ack = read_ack(directory)
    if ack is not None and ack.get("owner") and ack.get("owner") != owner:
        left = Spool(directory)
        pending = left.pending
        left.close()
        if pending:
            aside = directory.with_name(f"{directory.name}.{int(time.time())}.stale")
            log.warning("spool %s of an earlier launch holds undelivered records; moved to %s", directory, aside)
            os.replace(directory, aside)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    elif ack is None and directory.exists() and any(directory.glob(f"*{SEGMENT_SUFFIX}")):
        log.warning("spool %s has no acknowledgement file; reading it from its start", directory)
    return Spool(directory, owner=owner, segment_bytes=segment_bytes)


def remove(directory: Path) -> None:
    """Delete a spool directory (everything in it was delivered)."""
    shutil.rmtree(directory, ignore_errors=True)


def drain(
    directory: Path,
    *,
    on_lines: Callable[[list[dict[str, Any]]], object],
    on_metrics: Callable[[list[dict[str, Any]]], object],
    batch: int = 5000,
) -> int:
    """Hand what a dead supervisor's spool holds unacknowledged to ``on_lines`` (batches of ``{"seq", "timestamp",
    "stream", "message"}``, in order) and ``on_metrics`` (its metric points), acknowledging each batch once its
    handler returned; status records are skipped (whoever drains decides the host's fate). Returns how many lines
    were handed over. A handler that raises leaves the rest unacknowledged for a later drain. Only for a spool
    nobody writes any more."""
    directory = Path(directory)
    if read_ack(directory) is None:
        return 0
    spool = Spool(directory)
    handed = 0
    try:
        while True:
            records = spool.unacknowledged(max_records=batch, max_bytes=16 << 20)
            if not records:
                return handed
            lines = [
                {k: r.data.get(k) for k in ("seq", "timestamp", "stream", "message")}
                for r in records
                if r.kind == "line"
            ]
            points = [p for r in records if r.kind == "metrics" for p in (r.data.get("points") or [])]
            if lines:
                on_lines(lines)
            if points:
                on_metrics(points)
            handed += len(lines)
            spool.ack(records[-1].end)
    finally:
        spool.close()
