"""How CLI commands print: ``--output json`` for scripts, aligned text for people.

JSON output writes times as the AWS CLI does: ISO-8601 with the offset (``2026-12-03T14:05:20.123000+00:00``),
where the REST API answers epoch seconds. A time is the number under a key that names one: ``...Time``
(``CreationTime``, ``TrainingStartTime``, ``StartTime``, a stream event's ``Time``, ...) or ``Timestamp`` /
``timestamp``; every command's JSON goes through :func:`print_json` or :func:`print_json_line`, so each gets it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_TIMESTAMP_KEYS = frozenset({"Timestamp", "timestamp"})


def is_time_key(key: object) -> bool:
    """Whether a JSON key names a point in time (its number is epoch seconds)."""
    return isinstance(key, str) and (key.endswith("Time") or key in _TIMESTAMP_KEYS)


def iso_time(epoch: float) -> str:
    """Epoch seconds as the AWS CLI prints a timestamp: ISO-8601 in UTC with its offset, microseconds when
    there are any (``2026-12-03T14:05:20.123000+00:00``, ``2026-12-03T14:05:20+00:00``)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def with_iso_times(data: Any) -> Any:
    """A copy of ``data`` whose time fields (see the module doc) are ISO-8601 strings; the rest unchanged."""
    if isinstance(data, Mapping):
        return {
            key: iso_time(value)
            if is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool)
            else with_iso_times(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [with_iso_times(item) for item in data]
    return data


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, times as ISO-8601."""
    sys.stdout.write(json.dumps(with_iso_times(data), indent=2, default=str) + "\n")


def print_json_line(data: Any) -> None:
    """Print ``data`` as one compact JSON line (streams of events), times as ISO-8601."""
    sys.stdout.write(json.dumps(with_iso_times(data), separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def fmt_time(epoch: Any) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS``; ``-`` when absent."""
    if epoch is None or epoch == "":
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(epoch)))
    except (TypeError, ValueError):
        return str(epoch)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under headers in left-aligned columns."""
    cells = [[str(h) for h in headers], *[[("-" if c is None else str(c)) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Print ``label: value`` lines with aligned values, skipping ``None`` values."""
    present = [(k, v) for k, v in fields if v is not None and v != ""]
    width = max((len(k) for k, _ in present), default=0) + 1
    for key, value in present:
        sys.stdout.write(f"{(key + ':').ljust(width)} {value}\n")
