"""Printing a job's progress the way SageMaker's ``logs_for_job`` does (reference §4.2).

Status transitions print as ``YYYY-MM-DD HH:MM:SS <Status> - <StatusMessage>`` (local time of the
transition), log lines print as they were written, and a job's end prints ``Training seconds: N`` and
``Billable seconds: N``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TextIO

from trainforge.errors import UnexpectedStatusError

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
