"""What running on Ray costs: ``fit()`` -> the script's first line on the Ray backend, the local backend and Ray's
own Job Submission API, and how far apart the hosts of a 2-instance job start.

Starts, on this machine: a Ray head (127.0.0.1, 8 CPUs, with the dashboard that serves the Job Submission API),
a trainforge server on the local backend and one on the Ray backend (``PACK``, so a one-node cluster holds both
hosts of a job). Then, interleaved, ``--runs`` times each:

- ``local`` / ``ray``: ``Estimator.fit()`` of a trivial script (``trainforge/python:current``, ``ml.m5.large``):
  seconds from the call to the script's first line printed by ``fit()``, and to ``fit()``'s return;
- ``ray_job_submission``: ``JobSubmissionClient.submit_job(entrypoint="python train.py", runtime_env={"working_dir":
  <the same source dir>})``: seconds from the call to the first line in ``get_job_logs`` (polled every 10 ms), and
  to ``SUCCEEDED``;
- ``two_host_start_skew``: a 2-instance job on each backend; the difference between the per-host timestamps of the
  two hosts' first lines (stamped by each host's supervisor as it reads the line).

Prints medians as JSON.

    python bench/ray_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firstline import MARKER, SCRIPT, FirstLineWatch


def fit_once(session: Any, src: Path, count: int = 1) -> tuple[float, float, str]:
    """One ``fit()``: (seconds to the first line, seconds to the end, job name)."""
    import trainforge
    from trainforge.estimator import Estimator

    est = Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(src),
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=count,
        sagemaker_session=session,
    )
    watch = FirstLineWatch()
    start = time.perf_counter()
    with redirect_stdout(watch):  # type: ignore[type-var]
        est.fit()
    end = time.perf_counter()
    if watch.first_line_at is None:
        raise SystemExit("".join(watch.parts)[-3000:])
    return watch.first_line_at - start, end - start, est.latest_training_job.name


def job_submission_once(client: Any, src: Path) -> tuple[float, float]:
    """One Ray job of the same script: (seconds to its first line in the job's logs, seconds to SUCCEEDED)."""
    from ray.job_submission import JobStatus

    start = time.perf_counter()
    job_id = client.submit_job(entrypoint="python train.py", runtime_env={"working_dir": str(src)})
    first: float | None = None
    while True:
        if first is None and MARKER in client.get_job_logs(job_id):
            first = time.perf_counter() - start
        status = client.get_job_status(job_id)
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            raise SystemExit(f"Ray job {job_id} {status}: {client.get_job_logs(job_id)[-3000:]}")
        if status == JobStatus.SUCCEEDED and first is not None:
            return first, time.perf_counter() - start
        time.sleep(0.01)


def start_skew(session: Any, name: str) -> float:
    """Seconds between the two hosts' first lines of job ``name`` (per-host supervisor timestamps)."""
    events = session.client.logs(name, limit=10000)["events"]
    first = {}
    for event in events:
        if event["message"] == MARKER:
            first.setdefault(event["host"], float(event["timestamp"]))
    if set(first) != {"algo-1", "algo-2"}:
        raise SystemExit(f"job {name}: first lines by host: {first}")
    return abs(first["algo-1"] - first["algo-2"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from ray.job_submission import JobSubmissionClient
    from tests.support.ray_cluster import RAY_ENV, ray_head
    from tests.support.server import ServerProcess

    import trainforge
    from trainforge.settings import Settings

    os.environ.update(RAY_ENV)
    work = Path(tempfile.mkdtemp(prefix="tf-bench-ray-"))
    src = work / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    envs = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(work / "envs")}
    first: dict[str, list[float]] = {"local": [], "ray": [], "ray_job_submission": []}
    total: dict[str, list[float]] = {"local": [], "ray": [], "ray_job_submission": []}
    skew: dict[str, list[float]] = {"local": [], "ray": []}
    with ray_head(work / "node", num_cpus=8, dashboard=True) as cluster:
        servers = {
            "local": ServerProcess(work / "local", extra_env=envs),
            "ray": ServerProcess(work / "ray", extra_env={**envs, **cluster.server_env("bench", placement="PACK")}),
        }
        try:
            sessions = {}
            for way, server in servers.items():
                server.start(timeout=60)
                sessions[way] = trainforge.Session(settings=Settings(home=server.home))
            jobs = JobSubmissionClient(cluster.dashboard_url)
            fit_once(sessions["ray"], src)  # warm-up (not counted): first actor worker, first import of the SDK path
            fit_once(sessions["local"], src)
            job_submission_once(jobs, src)
            for run in range(args.runs):
                order = ["local", "ray", "ray_job_submission"]
                for way in order if run % 2 == 0 else order[::-1]:
                    if way == "ray_job_submission":
                        t_first, t_total = job_submission_once(jobs, src)
                    else:
                        t_first, t_total, _ = fit_once(sessions[way], src)
                    first[way].append(t_first)
                    total[way].append(t_total)
                for way, session in sessions.items():
                    _, _, name = fit_once(session, src, count=2)
                    skew[way].append(start_skew(session, name))
        finally:
            for server in servers.values():
                server.kill()
            cluster.cleanup("bench")
    shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    print(
        json.dumps(
            {
                "runs": args.runs,
                "machine_cpus": os.cpu_count(),
                "fit_to_first_line_s": {way: round(med(v), 3) for way, v in first.items()},
                "to_end_s": {way: round(med(v), 3) for way, v in total.items()},
                "ray_backend_minus_local_first_line_s": round(med(first["ray"]) - med(first["local"]), 3),
                "ray_backend_vs_job_submission_first_line": round(
                    med(first["ray"]) / med(first["ray_job_submission"]), 2
                ),
                "two_host_start_skew_s": {way: round(med(v), 3) for way, v in skew.items()},
                "two_host_start_skew_max_s": {way: round(max(v), 3) for way, v in skew.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
