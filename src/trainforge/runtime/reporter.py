"""Ordered, lossless, durable delivery of a host's log lines, metric points and status reports to the server.

Every line gets the next per-host sequence number (one 0-based counter for stdout and stderr together) and is
appended, like status reports and metric batches, to the host's spool on disk (:mod:`trainforge.runtime.spool`)
in the order they were produced, before anything is sent. A background thread reads the spool's head into a
bounded window (at most ``max_lines`` records, about ``max_bytes`` bytes) and sends it, one request at a time:
runs of lines as batches (at most ``max_lines`` lines or about ``max_bytes`` bytes), each status report and
metric batch on its own, so a report never overtakes lines written before it. A line written while nothing is
in flight is sent at once; lines written while a request is in flight wait for its answer and then leave
together as the next batch -- batching happens under load only (``flush_interval``, 0 by default, can make a
batch linger that long after its first line was written). A request that does not reach the server, or gets a
5xx, is retried forever with backoff while the job keeps writing to the spool, so memory stays bounded however
long the server is away.
Once answered, records are acknowledged in the spool. Since the server treats ``(job, host, seq)`` as a key, a
resent batch is never stored twice; a supervisor restarted on the same spool resends from the acknowledged
position. Nothing is dropped unless the server says the job is gone (404) or refuses that very item (409 or
another 4xx).

A full disk (the job's own code may fill it) never stops delivery: from the first record the spool cannot take,
that record and every later one are kept in memory instead (in order, after what the spool holds) and the job's
``job.log`` mirror stops; what was in memory is lost only if the supervisor itself dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trainforge.runtime.agent import AgentClient, ReplyKind
from trainforge.runtime.failure import is_disk_full
from trainforge.runtime.spool import Position, Record, Spool, open_for

log = logging.getLogger(__name__)

MAX_LINES = 500
MAX_BYTES = 1 << 20
FLUSH_INTERVAL = 0.0  # lines leave as soon as the sender is free (see the module doc)
SYNC_INTERVAL = 1.0  # at most this long between two fsyncs of the spool while lines keep coming


def spool_owner(agent_token: str) -> str:
    """The owner a launch writes in its spool: a digest of its agent token (never the token itself)."""
    return hashlib.sha256(agent_token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LogLine:
    """One output line: ``message`` has no trailing newline."""

    seq: int
    timestamp: float
    stream: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        """The line as the logs route takes it."""
        return {"seq": self.seq, "timestamp": self.timestamp, "stream": self.stream, "message": self.message}


def _ticket_of(data: dict[str, Any]) -> StatusTicket:
    """The ticket of a status record read back from the spool."""
    model_stored = data.get("model_stored")
    lineage = data.get("lineage")
    return StatusTicket(
        str(data["status"]),
        str(data.get("message") or ""),
        data.get("failure_reason"),
        model_stored if isinstance(model_stored, bool) else None,
        lineage=lineage if isinstance(lineage, dict) else None,
    )


class StatusTicket:
    """A queued status report; :meth:`wait` blocks until the server answered it (or it was dropped)."""

    def __init__(
        self,
        status: str,
        message: str,
        failure_reason: str | None,
        model_stored: bool | None = None,
        *,
        lineage: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.failure_reason = failure_reason
        self.model_stored = model_stored
        self.lineage = lineage
        self.outcome: ReplyKind | None = None
        self.reply: Any = None
        self._done = threading.Event()

    def resolve(self, outcome: ReplyKind | None, reply: Any = None) -> None:
        """Record the server's answer (None: dropped unanswered) and wake waiters."""
        self.outcome = outcome
        self.reply = reply
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until resolved; return whether it was."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def delivered(self) -> bool:
        """Whether the server accepted the report."""
        return self.outcome is ReplyKind.OK


@dataclass(frozen=True)
class MetricBatch:
    """Metric points ``{"name", "value", "timestamp"[, "seq"]}`` to post together."""

    points: list[dict[str, Any]]


Item = LogLine | StatusTicket | MetricBatch


class Outbox:
    """The ordered queue and its batching rule; not thread-safe (the :class:`Reporter` locks around it).

    The sender asks :meth:`due` only while nothing is in flight and pops what it sent once answered, so with
    the default ``flush_interval`` of 0 a line queued while the sender is idle is due at once, and the lines
    queued while a batch is in flight are due together, as the next batch, once it is popped.
    Times are ``time.monotonic()`` values passed in by the caller, so the rule can be tested directly.
    """

    def __init__(
        self, *, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES, flush_interval: float = FLUSH_INTERVAL
    ) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval
        self.next_seq = 0
        self._items: deque[tuple[Item, float]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add_line(self, stream: str, message: str, timestamp: float, now: float) -> LogLine:
        """Queue a line with the next sequence number and return it."""
        line = LogLine(self.next_seq, timestamp, stream, message)
        self.next_seq += 1
        self._items.append((line, now))
        return line

    def add_status(self, ticket: StatusTicket, now: float) -> None:
        """Queue a status report behind everything queued so far."""
        self._items.append((ticket, now))

    def push(self, item: Item, now: float) -> None:
        """Queue an item as it is (a line keeps its sequence number)."""
        self._items.append((item, now))

    def _head_run(self) -> tuple[list[LogLine], bool]:
        """The lines at the head that fit one batch, and whether the batch is full (or a report follows)."""
        lines: list[LogLine] = []
        size = 0
        for item, _ in self._items:
            if not isinstance(item, LogLine):
                return lines, True
            cost = len(item.message) + 64
            if lines and (len(lines) >= self.max_lines or size + cost > self.max_bytes):
                return lines, True
            lines.append(item)
            size += cost
        return lines, len(lines) >= self.max_lines or size >= self.max_bytes

    def due(self, now: float, *, closing: bool = False) -> list[LogLine] | StatusTicket | MetricBatch | None:
        """What to send now: the head status report or metric batch, or the head batch of lines once it is due.

        A batch is due when its first line has waited ``flush_interval`` seconds (at once with the default 0),
        when it is full, when a status report is queued behind it, or when ``closing``. Items stay queued until
        popped.
        """
        if not self._items:
            return None
        head, queued_at = self._items[0]
        if not isinstance(head, LogLine):
            return head
        lines, full = self._head_run()
        if full or closing or now - queued_at >= self.flush_interval:
            return lines
        return None

    def wake_in(self, now: float) -> float | None:
        """Seconds until the head batch becomes due by age, or None when the queue is empty."""
        if not self._items:
            return None
        _, queued_at = self._items[0]
        return max(0.0, self.flush_interval - (now - queued_at))

    def pop(self, count: int) -> None:
        """Remove ``count`` items from the head (after they were answered)."""
        for _ in range(count):
            self._items.popleft()

    def lines(self) -> int:
        """How many lines are queued."""
        return sum(1 for item, _ in self._items if isinstance(item, LogLine))

    def drop_all(self) -> list[StatusTicket]:
        """Empty the queue; return the status tickets that were in it."""
        tickets = [item for item, _ in self._items if isinstance(item, StatusTicket)]
        self._items.clear()
        return tickets


class Reporter:
    """Forwards a host's output lines, metric points and status reports through its spool (see module doc).

    ``spool_dir`` is the host's spool (None: a private temporary one, removed at :meth:`close`); an existing
    spool of the same ``spool_owner`` is resumed: what it holds unacknowledged is sent first and numbering goes
    on after its last line. ``on_reply`` gets the JSON body of every accepted status report (it holds
    ``stop_requested``); ``on_gone`` is called once if the server answers 404 for the job. Lines are also
    appended to ``mirror`` (one per line) when given, even after the job is gone.
    """

    def __init__(
        self,
        client: AgentClient,
        *,
        spool_dir: Path | None = None,
        spool_owner: str = "",
        mirror: Path | None = None,
        on_reply: Callable[[Any], None] | None = None,
        on_gone: Callable[[], None] | None = None,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        flush_interval: float = FLUSH_INTERVAL,
        sync_interval: float = SYNC_INTERVAL,
    ) -> None:
        self._client = client
        self._private_dir: Path | None = None
        if spool_dir is None:
            self._private_dir = spool_dir = Path(tempfile.mkdtemp(prefix="trainforge-spool-"))
        self.spool_dir = spool_dir
        self._spool: Spool = open_for(spool_dir, spool_owner)
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._sync_interval = sync_interval
        self._outbox = Outbox(max_lines=max_lines, max_bytes=max_bytes, flush_interval=flush_interval)
        # per window item: where it ends in the spool (None: it came from memory after the disk filled), its size
        self._marks: deque[tuple[Position | None, int]] = deque()
        self._unflushed: list[tuple[dict[str, Any], StatusTicket | None]] = []  # appended, not yet flushed
        self._memory: deque[tuple[Item, int]] | None = None  # set once the disk is full: records not in the spool
        self._window_bytes = 0
        self._read_pos = self._spool.acked  # where the next record to load into the window starts
        self._written = self._spool.end  # records up to here were flushed and may be read
        self._unread_since: float | None = time.monotonic() if self._spool.pending else None
        self._tickets: dict[Position, StatusTicket] = {}  # status reports written, not yet loaded
        self.resumed = self._spool.pending
        self.peak_window = 0
        self._cond = threading.Condition()
        self._closing = False
        self._cancel = threading.Event()
        self._gone = False
        self._on_reply = on_reply
        self._on_gone = on_gone
        self._mirror: IO[str] | None = None
        if mirror is not None:
            mirror.parent.mkdir(parents=True, exist_ok=True)
            self._mirror = open(mirror, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._thread = threading.Thread(target=self._run, name="trainforge-reporter", daemon=True)
        self.dropped_lines = 0
        self.statuses_sent: list[tuple[str, ReplyKind]] = []

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    @property
    def gone(self) -> bool:
        """Whether the server said the job does not exist (nothing more is sent)."""
        return self._gone

    @property
    def lines_queued(self) -> int:
        """How many lines have been given a sequence number so far (a resumed spool's included)."""
        with self._cond:
            return self._spool.next_seq

    @property
    def window(self) -> int:
        """How many records are held in memory now (read from the spool, not yet answered)."""
        with self._cond:
            return len(self._outbox)

    def _append(self, data: dict[str, Any], ticket: StatusTicket | None = None) -> None:
        """Append one record to the spool, or to memory once the disk is full (lock held)."""
        if self._memory is None:
            try:
                end = self._spool.append(data)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self._to_memory(exc)
            else:
                if ticket is not None:
                    self._tickets[end] = ticket
                self._unflushed.append((data, ticket))
                return
        assert self._memory is not None
        self._memory.append(self._item_of(data, ticket))

    def _to_memory(self, exc: OSError) -> None:
        """The disk is full: what the spool did not take for sure, and all that follows, is kept in memory."""
        log.error(
            "spool %s: the disk is full (%s); keeping this host's reports in memory from now on", self.spool_dir, exc
        )
        self._memory = deque()
        for data, ticket in self._unflushed:
            if ticket is not None:
                self._tickets = {pos: t for pos, t in self._tickets.items() if t is not ticket}
            self._memory.append(self._item_of(data, ticket))
        self._unflushed.clear()

    def _item_of(self, data: dict[str, Any], ticket: StatusTicket | None) -> tuple[Item, int]:
        """A record as the item the sender sends, with its approximate size."""
        size = len(str(data.get("message", ""))) + 64
        if ticket is not None:
            return ticket, size
        if data["kind"] == "line":
            line = LogLine(int(data["seq"]), float(data["timestamp"]), str(data["stream"]), str(data["message"]))
            return line, size
        if data["kind"] == "status":
            status = _ticket_of(data)
            return status, size
        points = list(data.get("points") or [])
        return MetricBatch(points), 64 * max(1, len(points))

    def _written_now(self, *, sync: bool = False) -> None:
        """After appending: make the records readable, and sync the spool now and then (lock held)."""
        if self._memory is None:
            try:
                self._spool.flush()
                if sync:
                    self._spool.sync()
                else:
                    self._spool.sync_if_older(self._sync_interval)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                self._to_memory(exc)
            else:
                self._written = self._spool.end
                self._unflushed.clear()
        if self._unread_since is None and (self._read_pos < self._written or self._memory):
            self._unread_since = time.monotonic()
        self._cond.notify_all()

    def _mirror_write(self, text: str) -> None:
        """Append to the ``job.log`` mirror; a full disk stops the mirror, never the reports."""
        if self._mirror is None:
            return
        try:
            self._mirror.write(text)
            self._mirror.flush()
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            log.error("job log mirror: the disk is full (%s); the mirror stops here", exc)
            mirror, self._mirror = self._mirror, None
            with contextlib.suppress(OSError):
                mirror.close()

    def line(self, stream: str, message: str, timestamp: float | None = None) -> None:
        """Queue one output line of ``stream`` (``stdout``/``stderr``); a message with newlines is queued as
        several lines. It is in the spool (and the mirror) when this returns; never blocks on the network."""
        ts = time.time() if timestamp is None else timestamp
        parts = message.split("\n")
        with self._cond:
            for part in parts:
                if self._gone:
                    self.dropped_lines += 1
                    continue
                seq = self._spool.next_seq
                self._append({"kind": "line", "seq": seq, "timestamp": ts, "stream": stream, "message": part})
                self._spool.next_seq = seq + 1
            self._written_now()
            self._mirror_write("".join(part + "\n" for part in parts))

    def metrics(self, points: list[dict[str, Any]]) -> None:
        """Queue metric points ``{"name", "value", "timestamp"[, "seq"]}`` to be posted in order with the rest."""
        if not points:
            return
        with self._cond:
            if self._gone:
                return
            self._append({"kind": "metrics", "points": points})
            self._written_now()

    def status(
        self,
        status: str,
        message: str,
        failure_reason: str | None = None,
        *,
        model_stored: bool | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> StatusTicket:
        """Queue a status report behind every line queued so far (synced to disk) and return its ticket.

        ``model_stored`` (a final report's, when not None) says whether the job's model was stored; ``lineage``
        (when not None) is what the host ran on (:mod:`trainforge.runtime.lineage`), stored by the server."""
        ticket = StatusTicket(status, message, failure_reason, model_stored, lineage=lineage)
        with self._cond:
            if self._gone:
                ticket.resolve(ReplyKind.GONE)
                return ticket
            record: dict[str, Any] = {
                "kind": "status",
                "status": status,
                "message": message,
                "failure_reason": failure_reason,
            }
            if model_stored is not None:
                record["model_stored"] = model_stored
            if lineage is not None:
                record["lineage"] = lineage
            self._append(record, ticket)
            self._written_now(sync=True)
        return ticket

    def close(self, timeout: float | None = None) -> bool:
        """Send everything still queued, then stop the thread; return True if the spool was emptied (it is then
        removed from disk).

        With ``timeout`` None this waits as long as delivery takes (the server may be down for a while).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            alive = self._thread.is_alive()
            drained = not alive and not self._pending()
            if not alive:
                try:
                    self._spool.close()
                except OSError as exc:  # a full disk: what it could not take was sent from memory
                    log.error("spool %s: %s", self.spool_dir, exc)
        if not alive and self._mirror is not None:
            self._mirror.close()
            self._mirror = None
        if not alive and (drained or self._gone or self._private_dir is not None):
            shutil.rmtree(self.spool_dir, ignore_errors=True)
        return drained

    def abort(self) -> None:
        """Stop retrying and sending now; what is unsent stays in the spool (a resumed reporter sends it)."""
        self._cancel.set()
        with self._cond:
            self._closing = True
            tickets = self._outbox.drop_all() + list(self._tickets.values()) + self._memory_tickets()
            self._tickets.clear()
            self._marks.clear()
            self._window_bytes = 0
            self._cond.notify_all()
        for ticket in tickets:
            ticket.resolve(None)

    # ----------------------------------------------------------------------------------- sender

    def _item(self, record: Record) -> Item | None:
        data = record.data
        if record.kind == "line":
            return LogLine(int(data["seq"]), float(data["timestamp"]), str(data["stream"]), str(data["message"]))
        if record.kind == "status":
            ticket = self._tickets.pop(record.end, None)
            if ticket is None:  # written by an earlier supervisor of this launch: nobody waits for it
                ticket = _ticket_of(data)
            return ticket
        if record.kind == "metrics":
            return MetricBatch(list(data.get("points") or []))
        log.error("spool: unknown record kind %r skipped", record.kind)
        return None

    def _pending(self) -> bool:
        """Whether something written is not answered yet (lock held)."""
        return self._spool.acked < self._written or bool(self._memory) or len(self._outbox) > 0

    def _memory_tickets(self) -> list[StatusTicket]:
        """Take the status reports held in memory (lock held)."""
        if not self._memory:
            return []
        tickets = [item for item, _ in self._memory if isinstance(item, StatusTicket)]
        self._memory.clear()
        return tickets

    def _load(self) -> None:
        """Top up the window from the spool, then from memory once the disk is full (lock held): at most
        ``max_lines`` records, about ``max_bytes``."""
        while (
            self._read_pos < self._written
            and len(self._outbox) < self.max_lines
            and self._window_bytes < self.max_bytes
        ):
            records = self._spool.read(
                self._read_pos,
                limit=self._written,
                max_records=self.max_lines - len(self._outbox),
                max_bytes=self.max_bytes - self._window_bytes,
            )
            if not records:
                log.error("spool: cannot read records at %s; skipping to what was written last", self._read_pos)
                self._read_pos = self._written
                break
            queued_at = self._unread_since if self._unread_since is not None else time.monotonic()
            for record in records:
                item = self._item(record)
                if item is None:
                    continue
                self._outbox.push(item, queued_at)
                self._marks.append((record.end, record.size))
                self._window_bytes += record.size
            self._read_pos = records[-1].end
        if self._memory is not None and self._read_pos >= self._written:
            now = time.monotonic()
            while self._memory and len(self._outbox) < self.max_lines and self._window_bytes < self.max_bytes:
                item, size = self._memory.popleft()
                self._outbox.push(item, self._unread_since if self._unread_since is not None else now)
                self._marks.append((None, size))
                self._window_bytes += size
        if self._read_pos >= self._written and not self._memory:
            self._unread_since = None
        self.peak_window = max(self.peak_window, len(self._outbox))

    def _answered(self, count: int) -> None:
        """Drop the window's first ``count`` items and acknowledge them in the spool (lock held)."""
        self._outbox.pop(count)
        end: Position | None = None
        for _ in range(count):
            mark, size = self._marks.popleft()
            self._window_bytes -= size
            if mark is not None:
                end = mark
        if end is not None:
            self._spool.ack(end)

    def _next(self) -> list[LogLine] | StatusTicket | MetricBatch | None:
        with self._cond:
            while True:
                if self._cancel.is_set():
                    return None
                self._load()
                now = time.monotonic()
                item = self._outbox.due(now, closing=self._closing)
                if item is not None:
                    return item
                if self._closing and len(self._outbox) == 0 and self._read_pos >= self._written and not self._memory:
                    return None
                self._cond.wait(self._outbox.wake_in(now))

    def _run(self) -> None:
        while True:
            try:
                item = self._next()
                if item is None:
                    return
                if isinstance(item, StatusTicket):
                    self._send_status(item)
                elif isinstance(item, MetricBatch):
                    self._send_metrics(item)
                else:
                    self._send_lines(item)
            except Exception:
                # Never let the sender die: the supervisor waits on it for the job's final status.
                log.exception("reporter: unexpected error; retrying")
                if self._cancel.wait(1.0):
                    return

    def _send_lines(self, lines: list[LogLine]) -> None:
        body = self._client.logs_body([line.to_wire() for line in lines])
        reply = self._client.deliver("logs", body, cancel=self._cancel)
        if reply.kind is ReplyKind.RETRY:
            return
        if reply.kind is ReplyKind.GONE:
            self._mark_gone()
            return
        if reply.kind is not ReplyKind.OK:
            log.error("server refused log lines %d-%d: %s", lines[0].seq, lines[-1].seq, reply.error)
        with self._cond:
            self._answered(len(lines))

    def _send_metrics(self, batch: MetricBatch) -> None:
        reply = self._client.post_metrics(batch.points, cancel=self._cancel)
        if reply.kind is ReplyKind.RETRY:
            return
        if reply.kind is ReplyKind.GONE:
            self._mark_gone()
            return
        if reply.kind is not ReplyKind.OK:
            log.error("server refused %d metric point(s): %s", len(batch.points), reply.error)
        with self._cond:
            self._answered(1)

    def _send_status(self, ticket: StatusTicket) -> None:
        body = self._client.status_body(ticket.status, ticket.message, ticket.failure_reason)
        if ticket.model_stored is not None:
            body["model_stored"] = ticket.model_stored
        if ticket.lineage is not None:
            body["lineage"] = ticket.lineage
        reply = self._client.deliver("status", body, cancel=self._cancel)
        if reply.kind is ReplyKind.RETRY:
            return
        if reply.kind is ReplyKind.GONE:
            self._mark_gone()
            return
        if reply.kind is ReplyKind.OK:
            if self._on_reply is not None:
                self._on_reply(reply.body)
        else:
            log.warning("server refused status %s: %s", ticket.status, reply.error)
        with self._cond:
            self._answered(1)
            self.statuses_sent.append((ticket.status, reply.kind))
        ticket.resolve(reply.kind, reply.body)

    def _mark_gone(self) -> None:
        log.error("server says job %s does not exist; dropping queued reports", self._client.job_name)
        with self._cond:
            self._gone = True
            tickets = self._outbox.drop_all() + list(self._tickets.values()) + self._memory_tickets()
            self._tickets.clear()
            self._marks.clear()
            self._window_bytes = 0
            self._spool.ack_all()
            self._read_pos = self._written = self._spool.end
            self._unread_since = None
            self._cond.notify_all()
        for ticket in tickets:
            ticket.resolve(ReplyKind.GONE)
        if self._on_gone is not None:
            self._on_gone()
