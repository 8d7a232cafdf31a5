"""Round trip of a no-op ``@remote`` call, cold and warm, next to a direct call.

Starts a private server (its own TRAINFORGE_HOME), then times in one run:
- ``direct``: calling the function in-process;
- ``cold``: a call with ``keep_alive_period_in_seconds=0`` (a fresh supervisor and interpreter per call);
- ``warm``: calls with ``keep_alive_period_in_seconds>0`` after a first call has left a warm worker, whose code is
  forked from the worker's forkserver (``warm_forked_calls`` counts the calls whose log says so);
- ``warm_fork_off``: the same warm calls on a second server with ``TRAINFORGE_WARM_FORK=off`` (a fresh interpreter
  per call on the warm worker).
Prints medians as one JSON line, the last line of stdout, with ``"name": "remote_overhead"``.

    python bench/remote_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

FORKED = "[trainforge] warm start: forked from a forkserver"


def noop() -> int:
    return 1


def timed(fn: object) -> float:
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        assert fn() == 1  # type: ignore[operator]
    return time.perf_counter() - start


def wait_listening(home: Path, timeout: float = 60.0) -> None:
    """Until the warm worker listens again (a call right after the previous one ended could start a new one)."""
    deadline = time.monotonic() + timeout
    while not list(home.glob("warm/*/*.sock")) and time.monotonic() < deadline:
        time.sleep(0.005)


def measure(runs: int, fork: str) -> dict[str, Any]:
    """Cold and warm round trips on a private server with ``TRAINFORGE_WARM_FORK=fork``."""
    home = Path(tempfile.mkdtemp(prefix=f"tf-bench-remote-{fork}-"))
    os.environ["TRAINFORGE_HOME"] = str(home)
    os.environ["TRAINFORGE_WARM_FORK"] = fork

    import trainforge
    from trainforge.local_server import stop_server
    from trainforge.remote_function import remote
    from trainforge.settings import load_settings

    settings = load_settings()
    session = trainforge.Session(settings=settings)
    cold_fn = remote(noop, instance_type="local", sagemaker_session=session, job_name_prefix="cold")
    warm_fn = remote(
        noop, instance_type="local", sagemaker_session=session, job_name_prefix="warm", keep_alive_period_in_seconds=60
    )
    out: dict[str, Any] = {}
    try:
        timed(cold_fn)  # first call of the session: imports in this process, not measured
        out["cold"] = [timed(cold_fn) for _ in range(runs)] if fork == "auto" else []
        out["first_warm"] = timed(warm_fn)
        warm = []
        for _ in range(runs):
            wait_listening(home)
            warm.append(timed(warm_fn))
        out["warm"] = warm
        jobs = session.client.list_training_jobs(name_contains="warm", max_results=100)["TrainingJobSummaries"]
        out["forked"] = sum(
            any(FORKED in e["message"] for e in session.client.logs(j["TrainingJobName"])["events"]) for j in jobs
        )
    finally:
        stop_server(settings)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    direct = [timed(noop) for _ in range(args.runs)]
    fork_on = measure(args.runs, "auto")
    fork_off = measure(args.runs, "off")
    med = statistics.median
    print(
        json.dumps(
            {
                "name": "remote_overhead",
                "runs": args.runs,
                "direct_call_s": round(med(direct), 6),
                "cold_round_trip_s": round(med(fork_on["cold"]), 3),
                "first_keep_alive_call_s": round(fork_on["first_warm"], 3),
                "warm_round_trip_s": round(med(fork_on["warm"]), 3),
                "warm_forked_calls": fork_on["forked"],
                "warm_fork_off_round_trip_s": round(med(fork_off["warm"]), 3),
                "targets": {"warm_s": 0.05, "cold_s": 0.3},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
