"""Ordered, lossless delivery of a host's log lines and status reports to the server.

Every line gets the next per-host sequence number (one 0-based counter for stdout and stderr together)
and waits in an in-memory queue together with status reports, in the order they were produced. A
background thread sends the queue's head: runs of lines as batches (at most ``max_lines`` lines or about
``max_bytes`` bytes; a batch leaves at the latest ``flush_interval`` seconds after its first line was
queued), and each status report on its own, so a report never overtakes lines queued before it. A
request that does not reach the server, or gets a 5xx, is retried forever with backoff; since the server
treats ``(job, host, seq)`` as a key, a resent batch is never stored twice. Nothing is dropped unless the
server says the job is gone (404) or refuses that very item (409 or another 4xx).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trainforge.runtime.agent import AgentClient, ReplyKind

log = logging.getLogger(__name__)

MAX_LINES = 500
MAX_BYTES = 1 << 20
FLUSH_INTERVAL = 0.2


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


class StatusTicket:
    """A queued status report; :meth:`wait` blocks until the server answered it (or it was dropped)."""

    def __init__(self, status: str, message: str, failure_reason: str | None) -> None:
        self.status = status
        self.message = message
        self.failure_reason = failure_reason
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


Item = LogLine | StatusTicket


class Outbox:
    """The ordered queue and its batching rule; not thread-safe (the :class:`Reporter` locks around it).

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

    def due(self, now: float, *, closing: bool = False) -> list[LogLine] | StatusTicket | None:
        """What to send now: the head status report, or the head batch of lines once it is due.

        A batch is due when it is full, when a status report is queued behind it, when its first line has
        waited ``flush_interval`` seconds, or when ``closing``. Items stay queued until popped.
        """
        if not self._items:
            return None
        head, queued_at = self._items[0]
        if isinstance(head, StatusTicket):
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

    def drop_all(self) -> list[StatusTicket]:
        """Empty the queue; return the status tickets that were in it."""
        tickets = [item for item, _ in self._items if isinstance(item, StatusTicket)]
        self._items.clear()
        return tickets


class Reporter:
    """Forwards a host's output lines and status reports through one ordered queue (see module doc).

    ``on_reply`` gets the JSON body of every accepted status report (it holds ``stop_requested``);
    ``on_gone`` is called once if the server answers 404 for the job. Lines are also appended to
    ``mirror`` (one per line) when given, even after the job is gone.
    """

    def __init__(
        self,
        client: AgentClient,
        *,
        mirror: Path | None = None,
        on_reply: Callable[[Any], None] | None = None,
        on_gone: Callable[[], None] | None = None,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self._client = client
        self._outbox = Outbox(max_lines=max_lines, max_bytes=max_bytes, flush_interval=flush_interval)
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

    def start(self) -> None:
        """Start the sender thread."""
        self._thread.start()

    @property
    def gone(self) -> bool:
        """Whether the server said the job does not exist (nothing more is sent)."""
        return self._gone

    @property
    def lines_queued(self) -> int:
        """How many lines have been given a sequence number so far."""
        with self._cond:
            return self._outbox.next_seq

    def line(self, stream: str, message: str, timestamp: float | None = None) -> None:
        """Queue one output line of ``stream`` (``stdout``/``stderr``); a message with newlines is queued as
        several lines. Never blocks on the network."""
        ts = time.time() if timestamp is None else timestamp
        parts = message.split("\n")
        with self._cond:
            for part in parts:
                if self._mirror is not None:
                    self._mirror.write(part + "\n")
                if self._gone:
                    self.dropped_lines += 1
                    continue
                self._outbox.add_line(stream, part, ts, time.monotonic())
            if self._mirror is not None:
                self._mirror.flush()
            self._cond.notify_all()

    def status(self, status: str, message: str, failure_reason: str | None = None) -> StatusTicket:
        """Queue a status report behind every line queued so far and return its ticket."""
        ticket = StatusTicket(status, message, failure_reason)
        with self._cond:
            if self._gone:
                ticket.resolve(ReplyKind.GONE)
                return ticket
            self._outbox.add_status(ticket, time.monotonic())
            self._cond.notify_all()
        return ticket

    def close(self, timeout: float | None = None) -> bool:
        """Send everything still queued, then stop the thread; return True if the queue was emptied.

        With ``timeout`` None this waits as long as delivery takes (the server may be down for a while).
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            drained = not self._thread.is_alive() and len(self._outbox) == 0
        if not self._thread.is_alive() and self._mirror is not None:
            self._mirror.close()
            self._mirror = None
        return drained

    def abort(self) -> None:
        """Stop retrying and sending now; queued items are left undelivered."""
        self._cancel.set()
        with self._cond:
            self._closing = True
            for ticket in self._outbox.drop_all():
                ticket.resolve(None)
            self._cond.notify_all()

    def _next(self) -> list[LogLine] | StatusTicket | None:
        with self._cond:
            while True:
                if self._cancel.is_set():
                    return None
                now = time.monotonic()
                item = self._outbox.due(now, closing=self._closing)
                if item is not None:
                    return item
                if self._closing and len(self._outbox) == 0:
                    return None
                self._cond.wait(self._outbox.wake_in(now))

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            if isinstance(item, StatusTicket):
                self._send_status(item)
            else:
                self._send_lines(item)

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
            self._outbox.pop(len(lines))

    def _send_status(self, ticket: StatusTicket) -> None:
        body = self._client.status_body(ticket.status, ticket.message, ticket.failure_reason)
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
            self._outbox.pop(1)
        ticket.resolve(reply.kind, reply.body)

    def _mark_gone(self) -> None:
        log.error("server says job %s does not exist; dropping queued reports", self._client.job_name)
        with self._cond:
            self._gone = True
            tickets = self._outbox.drop_all()
            self._cond.notify_all()
        for ticket in tickets:
            ticket.resolve(ReplyKind.GONE)
        if self._on_gone is not None:
            self._on_gone()
