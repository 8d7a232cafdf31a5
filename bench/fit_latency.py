"""Latency of a trivial job: ``fit()`` -> the script's first line, and the whole ``fit()``, next to ``python``.

Starts a private server (its own TRAINFORGE_HOME), runs the same trivial script N times through
``Estimator.fit()`` and N times as ``python train.py``, and prints medians and ratios as one JSON line, the last
line of stdout, with ``"name": "fit_latency"``.

    python bench/fit_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from firstline import MARKER, SCRIPT, FirstLineWatch


def run_direct(src: Path) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(src / "train.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    t_first = time.perf_counter() - start
    assert MARKER in first
    proc.communicate()
    return t_first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tf-bench-"))
    os.environ["TRAINFORGE_HOME"] = str(home)
    src = home / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)

    import trainforge
    from trainforge.estimator import Estimator
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    settings = load_settings()
    session = trainforge.Session(settings=settings)  # starts the server (not timed)
    role = trainforge.get_execution_role()
    job_first, job_total, direct_first, direct_total = [], [], [], []
    try:
        for _ in range(args.runs):
            est = Estimator(
                image_uri="trainforge/python:current",
                entry_point="train.py",
                source_dir=str(src),
                role=role,
                instance_type="local",
                instance_count=1,
                sagemaker_session=session,
            )
            watch = FirstLineWatch()
            start = time.perf_counter()
            with redirect_stdout(watch):  # type: ignore[type-var]
                est.fit()
            end = time.perf_counter()
            assert watch.first_line_at is not None, "".join(watch.parts)
            job_first.append(watch.first_line_at - start)
            job_total.append(end - start)
            d_first, d_total = run_direct(src)
            direct_first.append(d_first)
            direct_total.append(d_total)
    finally:
        stop_server(settings)

    med = statistics.median
    print(
        json.dumps(
            {
                "name": "fit_latency",
                "runs": args.runs,
                "fit_to_first_line_s": round(med(job_first), 3),
                "fit_total_s": round(med(job_total), 3),
                "python_direct_first_line_s": round(med(direct_first), 3),
                "python_direct_total_s": round(med(direct_total), 3),
                "ratio_first_line": round(med(job_first) / med(direct_first), 1),
                "ratio_total": round(med(job_total) / med(direct_total), 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
