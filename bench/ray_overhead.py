"""What running on Ray costs: ``fit()`` -> the script's first line on the Ray backend, the local backend and Ray's
own Job Submission API, and how far apart the hosts of a 2-instance job start.

Starts, on this machine: a Ray head (127.0.0.1, 8 CPUs, with the dashboard that serves the Job Submission API),
a trainforge server on the local backend and one on the Ray backend (``PACK``, so a one-node cluster holds both
hosts of a job). Then, interleaved, ``--runs`` times each:

- ``local`` / ``ray``: ``Estimator.fit()`` of a trivial script (``trainforge/python:current``, ``ml.m5.large``):
  seconds from the call to the script's first line printed by ``fit()``, and to ``fit()``'s return;
- ``ray_job_submission``: ``JobSubmissionClient.submit_job(entrypoint="<this python> train.py",
  runtime_env={"working_dir": <the same source dir>})`` (the interpreter trainforge's jobs run, not a PATH shim):
  seconds from the call to the first line in ``get_job_logs`` (polled every 10 ms), and to ``SUCCEEDED``;
- ``two_host_start_skew``: a 2-instance job on each backend; the difference between the per-host timestamps of the
  two hosts' first lines (stamped by each host's supervisor as it reads the line).

``--ways`` picks some of ``local``, ``ray``, ``ray_job_submission`` (``bench/run_all.py`` takes ``local`` and
``ray_job_submission``: the Ray Jobs baseline of the ``fit()`` target, interleaved with our own ``fit()``), and
``--no-skew`` skips the 2-instance jobs. Prints medians as one JSON line, the last line of stdout, with
``"name": "ray_overhead"``; where Ray cannot be imported or its head does not start, that line carries ``"error"``
saying so (exit status 1).

    python bench/ray_overhead.py [--runs 5] [--ways local,ray,ray_job_submission] [--no-skew]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
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
    entrypoint = f"{shlex.quote(sys.executable)} train.py"  # the interpreter our own jobs run, not a PATH shim
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(src)})
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


WAYS = ("local", "ray", "ray_job_submission")


def emit(result: dict[str, Any]) -> None:
    """Print ``result`` as one JSON line, the last line of stdout (``bench/run_all.py`` reads it)."""
    print(json.dumps({"name": "ray_overhead", **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)} (default: all)")
    parser.add_argument("--no-skew", action="store_true", help="skip the 2-instance start-skew jobs")
    args = parser.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or not ways:
        parser.error(f"--ways: unknown {unknown or 'empty list'}; choose from {', '.join(WAYS)}")

    # bench/ goes last on the path: no benchmark module may shadow a distribution Ray imports
    bench_dir = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != bench_dir] + [str(bench_dir)]
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        emit({"error": f"ray cannot be imported here ({exc}): no Ray baseline; pip install 'ray[default]'"})
        raise SystemExit(1) from None
    from tests.support.ray_cluster import RAY_ENV, start_head
    from tests.support.server import ServerProcess

    import trainforge
    from trainforge.settings import Settings

    os.environ.update(RAY_ENV)
    work = Path(tempfile.mkdtemp(prefix="tf-bench-ray-"))
    src = work / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    envs = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(work / "envs")}
    first: dict[str, list[float]] = {way: [] for way in ways}
    total: dict[str, list[float]] = {way: [] for way in ways}
    skew: dict[str, list[float]] = {}
    try:
        cluster = start_head(work / "node", num_cpus=8, dashboard=True)
    except Exception as exc:  # the baseline is reported as missing, never as a crash
        shutil.rmtree(work, ignore_errors=True)
        emit({"error": f"the Ray head did not start: {str(exc)[-1500:]}"})
        raise SystemExit(1) from None
    try:
        servers: dict[str, Any] = {}
        if "local" in ways:
            servers["local"] = ServerProcess(work / "local", extra_env=envs)
        if "ray" in ways:
            ray_env = {**envs, **cluster.server_env("bench", placement="PACK")}
            servers["ray"] = ServerProcess(work / "ray", extra_env=ray_env)
        try:
            sessions = {}
            for way, server in servers.items():
                server.start(timeout=60)
                sessions[way] = trainforge.Session(settings=Settings(home=server.home))
            jobs = JobSubmissionClient(cluster.dashboard_url)
            # warm-up (not counted): the first actor worker, the first import of the SDK path, Ray's first job
            for session in sessions.values():
                fit_once(session, src)
            if "ray_job_submission" in ways:
                job_submission_once(jobs, src)
            for run in range(args.runs):
                for way in ways if run % 2 == 0 else ways[::-1]:
                    if way == "ray_job_submission":
                        t_first, t_total = job_submission_once(jobs, src)
                    else:
                        t_first, t_total, _ = fit_once(sessions[way], src)
                    first[way].append(t_first)
                    total[way].append(t_total)
                if not args.no_skew:
                    for way, session in sessions.items():
                        _, _, name = fit_once(session, src, count=2)
                        skew.setdefault(way, []).append(start_skew(session, name))
        finally:
            for server in servers.values():
                server.kill()
            if "ray" in ways:
                cluster.cleanup("bench")
    finally:
        cluster.stop()
    shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    result: dict[str, Any] = {
        "runs": args.runs,
        "machine_cpus": os.cpu_count(),
        "fit_to_first_line_s": {way: round(med(v), 3) for way, v in first.items()},
        "to_end_s": {way: round(med(v), 3) for way, v in total.items()},
    }
    if "ray" in first and "local" in first:
        result["ray_backend_minus_local_first_line_s"] = round(med(first["ray"]) - med(first["local"]), 3)
    if "ray" in first and "ray_job_submission" in first:
        result["ray_backend_vs_job_submission_first_line"] = round(
            med(first["ray"]) / med(first["ray_job_submission"]), 2
        )
    if "local" in first and "ray_job_submission" in first:
        result["job_submission_vs_local_first_line"] = round(med(first["ray_job_submission"]) / med(first["local"]), 2)
    if skew:
        result["two_host_start_skew_s"] = {way: round(med(v), 3) for way, v in skew.items()}
        result["two_host_start_skew_max_s"] = {way: round(max(v), 3) for way, v in skew.items()}
    emit(result)


if __name__ == "__main__":
    main()
