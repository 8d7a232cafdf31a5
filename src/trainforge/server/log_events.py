"""The page of log events a log route answers (training jobs, endpoints and transform jobs alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainforge.store.records import LogRecord


def log_event(rec: LogRecord, *, attempt: bool = True) -> dict[str, Any]:
    """One line as ``{"cursor", "host", "seq", "timestamp", "stream", "message"}``, plus its ``attempt`` unless
    ``attempt`` is False."""
    event: dict[str, Any] = {
        "cursor": rec.cursor,
        "host": rec.host,
        "seq": rec.seq,
        "timestamp": rec.timestamp,
        "stream": rec.stream,
        "message": rec.message,
    }
    if attempt:
        event["attempt"] = rec.attempt
    return event


def log_page(lines: Sequence[LogRecord], cursor: int, *, attempt: bool = True) -> dict[str, Any]:
    """``{"events": [...], "next_cursor"}`` for ``lines`` read after ``cursor``: a reader resumes from
    ``next_cursor`` (the last line's cursor, or ``cursor`` again when there were none)."""
    return {
        "events": [log_event(r, attempt=attempt) for r in lines],
        "next_cursor": lines[-1].cursor if lines else cursor,
    }
