"""How CLI commands print: ``--output json`` for scripts, aligned text for people."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_json_line(data: Any) -> None:
    """Print ``data`` as one compact JSON line (streams of events)."""
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
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
