"""Round trip of a no-op ``@remote`` call, cold and warm, next to a direct call.

Starts a private server (its own TRAINFORGE_HOME), then times in one run:
- ``direct``: calling the function in-process;
- ``cold``: a call with ``keep_alive_period_in_seconds=0`` (a fresh supervisor and interpreter per call);
- ``warm``: calls with ``keep_alive_period_in_seconds>0`` after a first call has left a warm worker.
Prints medians as JSON.

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


def noop() -> int:
    return 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tf-bench-remote-"))
    os.environ["TRAINFORGE_HOME"] = str(home)

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

    def timed(fn: object) -> float:
        sink = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            assert fn() == 1  # type: ignore[operator]
        return time.perf_counter() - start

    try:
        direct = [timed(noop) for _ in range(args.runs)]
        timed(cold_fn)  # first call of the session: imports in this process, not measured
        cold = [timed(cold_fn) for _ in range(args.runs)]
        first_warm = timed(warm_fn)
        warm = [timed(warm_fn) for _ in range(args.runs)]
    finally:
        stop_server(settings)
    med = statistics.median
    print(
        json.dumps(
            {
                "runs": args.runs,
                "direct_call_s": round(med(direct), 6),
                "cold_round_trip_s": round(med(cold), 3),
                "first_keep_alive_call_s": round(first_warm, 3),
                "warm_round_trip_s": round(med(warm), 3),
                "targets": {"warm_s": 0.3, "cold_s": 1.5},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
