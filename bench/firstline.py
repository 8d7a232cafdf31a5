"""What the latency benches share: a trivial script and a stdout watcher that notes when its first line arrives."""

from __future__ import annotations

import io
import time

MARKER = "first-line-from-the-script"
SCRIPT = f'print("{MARKER}", flush=True)\nprint("done")\n'


class FirstLineWatch(io.TextIOBase):
    """Collects what ``fit()`` prints (use with ``redirect_stdout``) and notes when :data:`MARKER` first appears."""

    def __init__(self) -> None:
        self.first_line_at: float | None = None
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        if self.first_line_at is None and MARKER in s:
            self.first_line_at = time.perf_counter()
        self.parts.append(s)
        return len(s)
