"""Latency of a live log line: the script's ``print`` -> the line printed by ``fit()``.

Starts a private server (its own TRAINFORGE_HOME) and runs one job whose script first prints a ready line and
waits until the bench, once ``fit()`` showed that line, answers on a socket (so the job's start is not measured;
a file would not do: the job's sandbox has its own ``/tmp``), then
prints ``--lines`` lines about every 40 ms (with jitter), each carrying the ``time.time()`` of its print. The
bench follows through ``fit()`` and notes when each line reaches its stdout; it prints the print -> visible
latency (p50, p95, max, in ms) as one JSON object, the last thing on stdout.

    python bench/log_latency.py [--lines 50]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

READY = "log-latency-ready"
LINE = re.compile(r"log-latency-line (\d+) ([0-9.]+)")
SCRIPT = """import random, socket, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
lines = int(sys.argv[sys.argv.index("--lines") + 1])
go = socket.create_connection(("127.0.0.1", port), timeout=120)
print("log-latency-ready", flush=True)
go.recv(1)
for i in range(lines):
    print(f"log-latency-line {i} {time.time():.6f}", flush=True)
    time.sleep(0.04 * random.uniform(0.5, 1.5))
"""


class LineClock(io.TextIOBase):
    """Collects what ``fit()`` prints (use with ``redirect_stdout``): answers the script's connection on ``go``
    when the ready line shows, and notes for each timed line when it arrived."""

    def __init__(self, go: socket.socket) -> None:
        self.go = go
        self.answered: socket.socket | None = None
        self.latencies_ms: dict[int, float] = {}
        self.parts: list[str] = []
        self._pending = ""

    def write(self, s: str) -> int:
        now = time.time()
        self.parts.append(s)
        self._pending += s
        *complete, self._pending = self._pending.split("\n")
        for text in complete:
            if READY in text and self.answered is None:
                self.answered, _ = self.go.accept()
                self.answered.sendall(b"g")
            match = LINE.search(text)
            if match is not None:
                self.latencies_ms.setdefault(int(match.group(1)), (now - float(match.group(2))) * 1000.0)
        return len(s)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=50)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    os.environ["TRAINFORGE_HOME"] = str(home)
    src = home / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    go = socket.create_server(("127.0.0.1", 0))

    import trainforge
    from trainforge.estimator import Estimator
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    settings = load_settings()
    session = trainforge.Session(settings=settings)  # starts the server (not timed)
    try:
        est = Estimator(
            image_uri="trainforge/python:current",
            entry_point="train.py",
            source_dir=str(src),
            role=trainforge.get_execution_role(),
            instance_type="local",
            instance_count=1,
            hyperparameters={"port": go.getsockname()[1], "lines": args.lines},
            sagemaker_session=session,
        )
        clock = LineClock(go)
        with redirect_stdout(clock):
            est.fit()
    finally:
        stop_server(settings)
    got = list(clock.latencies_ms.values())
    assert len(got) == args.lines, "".join(clock.parts)
    print(
        json.dumps(
            {
                "name": "log_latency",
                "lines": args.lines,
                "p50_ms": round(statistics.median(got), 1),
                "p95_ms": round(percentile(got, 0.95), 1),
                "max_ms": round(max(got), 1),
                "mean_ms": round(statistics.fmean(got), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
