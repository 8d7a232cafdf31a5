"""Printing a job's progress the way SageMaker's ``logs_for_job`` does (reference §4.2).

Status transitions print as ``YYYY-MM-DD HH:MM:SS <Status> - <StatusMessage>`` (local time of the
transition), log lines print as they were written, and a job's end prints ``Training seconds: N`` and
``Billable seconds: N``.

Each transition is printed where it happened among the log lines: after the line of its ``LogCursor`` (the job's
last log cursor when the status began), whether the job is followed live or read after it ended
(:func:`print_job_logs`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from trainforge.errors import UnexpectedStatusError

if TYPE_CHECKING:
    from trainforge.client import TrainforgeClient

# Reads a job's DescribeTrainingJob answer (raw epoch-second times), e.g. riding out a server restart.
Describe = Callable[[str], dict[str, Any]]

TERMINAL_PRIMARY = frozenset({"Completed", "Failed", "Stopped"})
STOPPED_WARNING = (
    "Job ended with status 'Stopped' rather than 'Completed'. This could mean the job timed out or stopped "
    "early for some other reason: Consider checking whether it completed as you expect."
)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def format_status_line(status: str, message: str | None, when: float | datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS <Status> - <StatusMessage>`` in local time (now, if ``when`` is unknown)."""
    seconds = _seconds(when)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if seconds is None else seconds))
    return f"{stamp} {status} - {message or ''}".rstrip()


FIRST_HOST = "algo-1"
DESCRIBE_EVERY_S = 0.2  # how often wait_with_dots describes the job (one cheap request to the server)


class LogPrinter:
    """Writes status lines and log lines to a text stream, each status transition once.

    Args:
        out: Where to write; ``None`` means the ``sys.stdout`` of the moment of each write.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._seen: set[tuple[str, str, float | None]] = set()
        self._dots = False
        self._attempt: int | None = None

    @property
    def out(self) -> TextIO:
        """The stream written to."""
        return self._out if self._out is not None else sys.stdout

    def _write(self, text: str) -> None:
        if self._dots:
            text = "\n" + text
            self._dots = False
        self.out.write(text + "\n")
        self.out.flush()

    def status(self, status: str, message: str | None, when: float | datetime | None) -> bool:
        """Print a transition unless this exact one was printed before; return whether it printed."""
        seconds = _seconds(when)
        key = (status, message or "", None if seconds is None else round(seconds, 3))
        if key in self._seen:
            return False
        self._seen.add(key)
        self._write(format_status_line(status, message, seconds))
        return True

    def transitions(self, transitions: Iterable[Mapping[str, Any]]) -> bool:
        """Print every transition of a ``SecondaryStatusTransitions`` list not printed yet."""
        printed = False
        for item in transitions:
            printed |= self.status(str(item.get("Status", "")), item.get("StatusMessage"), item.get("StartTime"))
        return printed

    def log(self, message: str, host: str | None = None, attempt: int | None = None) -> None:
        """Print one log line as it was written; a line of a host other than the first (``algo-1``) of a
        multi-host job is prefixed with its host, ``[algo-2] ...``. When ``attempt`` (the run of a job retried
        after a lost host) differs from the last line's, :func:`attempt_separator` is printed first."""
        if attempt is not None and attempt != self._attempt:
            if self._attempt is not None or attempt > 1:
                self._write(attempt_separator(attempt))
            self._attempt = attempt
        text = message[:-1] if message.endswith("\n") else message
        self._write(f"[{host}] {text}" if host and host != FIRST_HOST else text)

    def dot(self) -> None:
        """Print a progress dot (no newline), as SageMaker does while polling without logs."""
        self.out.write(".")
        self.out.flush()
        self._dots = True

    def line(self, text: str) -> None:
        """Print a line of the printer's own (summaries, warnings)."""
        self._write(text)


def attempt_separator(attempt: int) -> str:
    """The line printed before the first log line of a job's ``attempt`` (2, 3, ...: a retry after a lost host)."""
    return f"-------- attempt {attempt} --------"


def check_job_status(description: Mapping[str, Any], printer: LogPrinter | None = None) -> None:
    """SageMaker's ``_check_job_status``: Completed passes, Stopped warns, anything else raises.

    Raises:
        UnexpectedStatusError: The job ended ``Failed`` (or in another non-Completed, non-Stopped status);
            the message is ``Error for Training job <name>: <Status>. Reason: <FailureReason>``.
    """
    status = str(description.get("TrainingJobStatus", ""))
    name = str(description.get("TrainingJobName", ""))
    if status == "Completed":
        return
    if status == "Stopped":
        (printer or LogPrinter()).line(STOPPED_WARNING)
        return
    reason = description.get("FailureReason") or "(No reason provided)"
    raise UnexpectedStatusError(
        f"Error for Training job {name}: {status}. Reason: {reason}",
        job_name=name,
        status=status,
        failure_reason=description.get("FailureReason"),
    )


def print_billing(description: Mapping[str, Any], printer: LogPrinter) -> None:
    """``Training seconds: N`` and ``Billable seconds: N``, totals over all instances, as SageMaker prints."""
    resource = description.get("ResourceConfig") or {}
    count = resource.get("InstanceCount")
    if count is None:
        count = sum(int(g.get("InstanceCount", 0)) for g in resource.get("InstanceGroups") or []) or 1
    training = description.get("TrainingTimeInSeconds")
    billable = description.get("BillableTimeInSeconds")
    if training is not None:
        printer.line(f"Training seconds: {training * count}")
    if billable is not None:
        printer.line(f"Billable seconds: {billable * count}")
        if description.get("EnableManagedSpotTraining") and training:
            saving = (1 - float(billable) / float(training)) * 100
            printer.line(f"Managed Spot Training savings: {saving:.1f}%")


class Interleaver:
    """Prints a job's recorded transitions among its log lines where they happened.

    A transition whose ``LogCursor`` is ``c`` began after the job's line ``c`` was stored and before any later
    one, so it is printed after that line and before the next. Transitions come from DescribeTrainingJob
    (:meth:`transitions`) or one by one from a live stream (:meth:`status`, already in their place); one that
    arrives both ways prints once (:class:`LogPrinter` drops repeats).

    Args:
        printer: Where statuses and lines are printed.
        show_lines: Whether log lines are printed (``False``: statuses only; lines still place them).
    """

    def __init__(self, printer: LogPrinter, show_lines: bool = True) -> None:
        self.printer = printer
        self.show_lines = show_lines
        self._pending: list[tuple[int, int, Mapping[str, Any]]] = []
        self._added = 0
        self._last = 0  # cursor of the last line passed

    def transitions(self, transitions: Iterable[Mapping[str, Any]]) -> None:
        """Queue ``SecondaryStatusTransitions`` entries, each for its place; those whose place was passed
        already print now."""
        for item in transitions:
            self._pending.append((int(item.get("LogCursor") or 0), self._added, item))
            self._added += 1
        self._pending.sort(key=lambda entry: (entry[0], entry[1]))
        self._flush(self._last)

    def line(self, event: Mapping[str, Any]) -> None:
        """Print a log event ``{"cursor", "message", "host", "attempt"}`` after the transitions before it."""
        cursor = int(event.get("cursor") or 0)
        self._flush(cursor - 1)
        if self.show_lines:
            self.printer.log(str(event.get("message", "")), event.get("host"), event.get("attempt"))
        self._last = max(self._last, cursor)

    def status(self, event: Mapping[str, Any]) -> None:
        """Print a status event of a live stream (``SecondaryStatus``, ``StatusMessage``, ``Time``)."""
        self._flush(self._last)
        self.printer.status(str(event.get("SecondaryStatus", "")), event.get("StatusMessage"), event.get("Time"))

    def finish(self) -> None:
        """Print every transition still waiting (those that began after the last line)."""
        self._flush(None)

    def _flush(self, upto: int | None) -> None:
        while self._pending and (upto is None or self._pending[0][0] <= upto):
            _, _, item = self._pending.pop(0)
            self.printer.status(str(item.get("Status", "")), item.get("StatusMessage"), item.get("StartTime"))


def print_job_logs(
    client: TrainforgeClient,
    job_name: str,
    *,
    describe: Describe,
    wait: bool,
    show_lines: bool = True,
    printer: LogPrinter | None = None,
) -> dict[str, Any]:
    """Print a job's transitions and log lines in the order they happened, as ``logs_for_job`` does.

    Without ``wait`` prints what the job has so far and returns. With ``wait`` follows the job live until it is
    Completed, Failed or Stopped (``Stopping`` keeps waiting), then judges the end (:func:`check_job_status`) and
    prints the billing lines (:func:`print_billing`). A finished job prints the same as one followed live.

    Returns:
        The job's last DescribeTrainingJob answer (epoch-second times).

    Raises:
        UnexpectedStatusError: With ``wait``, the job ended Failed.
    """
    printer = printer or LogPrinter()
    placed = Interleaver(printer, show_lines)
    if not wait:
        description = describe(job_name)
        placed.transitions(description.get("SecondaryStatusTransitions") or [])
        cursor = 0
        while True:
            page = client.logs(job_name, cursor=cursor)
            events = page.get("events") or []
            if not events:
                break
            for event in events:
                placed.line(event)
            cursor = int(page.get("next_cursor", events[-1].get("cursor", cursor)))
        placed.finish()
        return description
    first: Mapping[str, Any] | None = None
    for event in client.follow_logs(job_name):
        kind = event.get("type")
        if first is None:
            # The stream opens with the status of the moment it connected; every transition up to then (and
            # maybe a few later ones, which the stream then repeats) comes from a description read now.
            first = event
            recorded = describe(job_name).get("SecondaryStatusTransitions") or []
            placed.transitions(recorded)
            if recorded and kind == "status":
                continue
        if kind == "status":
            placed.status(event)
        elif kind == "log":
            placed.line(event)
        elif kind == "end":
            break
    placed.finish()
    description = describe(job_name)
    check_job_status(description, printer)
    print_billing(description, printer)
    return description


def wait_with_dots(
    job_name: str, *, describe: Describe, poll: float, printer: LogPrinter | None = None
) -> dict[str, Any]:
    """Poll a job until it is Completed, Failed or Stopped, printing new transitions and a dot per quiet ``poll``
    seconds, as SageMaker does. The job is described every :data:`DESCRIBE_EVERY_S` (at most every ``poll``), so the
    wait ends within that of the job's end rather than up to ``poll`` later.

    Unlike SageMaker, ``Stopping`` is not an end: the wait goes on until ``Stopped``.

    Returns:
        The final DescribeTrainingJob answer (epoch-second times).

    Raises:
        UnexpectedStatusError: The job ended Failed.
    """
    printer = printer or LogPrinter()
    printed = -1
    quiet_since = time.monotonic()
    while True:
        description = describe(job_name)
        transitions = description.get("SecondaryStatusTransitions") or []
        start = max(len(transitions) - 1, 0) if printed < 0 else printed
        new = printer.transitions(transitions[start:])
        printed = len(transitions)
        if description.get("TrainingJobStatus") in TERMINAL_PRIMARY:
            break
        now = time.monotonic()
        if new:
            quiet_since = now
        elif now - quiet_since >= poll:
            printer.dot()
            quiet_since = now
        time.sleep(min(poll, DESCRIBE_EVERY_S))
    printer.line("")
    check_job_status(description, printer)
    return description
