"""Environment preparation time per image: cold (built) and warm (reused), and what a warm reuse adds to a job.

For each image (default: the scikit-learn and XGBoost images), in a fresh environments directory:

- ``cold_s``: build with uv's cache as it is (what a node with a used uv cache sees first);
- ``cold_empty_uv_cache_s``: build with a private, empty ``UV_CACHE_DIR`` (everything downloaded; the user's
  own uv cache is never touched), unless ``--no-empty-cache``;
- ``warm_ms``: median of ``--runs`` reuses of the built environment (the supervisor's whole environment step).

Then, on a private server (its own TRAINFORGE_HOME, the warm environments directory), the median ``fit()`` of a
trivial script in the scikit-learn image next to the same script in ``trainforge/python:current`` (no
environment step): the difference is what a warm reuse adds to a job. Prints one JSON line, the last line of
stdout, with ``"name": "env_build"``.

    python bench/env_build.py [--images trainforge/sklearn:1.2-1 trainforge/xgboost:1.7-1] [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.stopping import StopSignal
from trainforge.spec.images import CATALOGUE

SCRIPT = 'print("hello from the job")\n'


def prepare(image: str, envs: Path, env: dict[str, str]) -> tuple[float, str]:
    """Seconds one prepare_environment call takes, and the python it returns."""
    lines: list[str] = []
    start = time.perf_counter()
    python = prepare_environment(
        CATALOGUE[image],
        envs_root=envs,
        server_python=sys.executable,
        env=env,
        sink=lambda stream, line: lines.append(line),
        on_status=lambda message: None,
        stop=StopSignal(),
    )
    return time.perf_counter() - start, str(python)


def job_seconds(image: str, runs: int, envs: Path, work: Path) -> float:
    """Median ``fit()`` seconds of a trivial job in ``image`` on a private server."""
    import trainforge
    from trainforge.estimator import Estimator
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "train.py").write_text(SCRIPT)
    settings = load_settings(home=work / "home", envs_dir=envs)
    os.environ["TRAINFORGE_HOME"] = str(work / "home")
    os.environ["TRAINFORGE_ENVS_DIR"] = str(envs)
    session = trainforge.Session(settings=settings)
    times = []
    try:
        for _ in range(runs):
            est = Estimator(
                image_uri=image,
                entry_point="train.py",
                source_dir=str(src),
                role=trainforge.get_execution_role(),
                instance_type="local",
                instance_count=1,
                sagemaker_session=session,
            )
            start = time.perf_counter()
            with redirect_stdout(io.StringIO()):
                est.fit()
            times.append(time.perf_counter() - start)
    finally:
        stop_server(settings)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", nargs="+", default=["trainforge/sklearn:1.2-1", "trainforge/xgboost:1.7-1"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-empty-cache", action="store_true", help="skip the build with an empty uv cache")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tf-env-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    results: dict[str, object] = {"name": "env_build", "python": sys.version.split()[0], "runs": args.runs}
    try:
        for image in args.images:
            envs = work / f"envs-{image.replace('/', '_').replace(':', '_')}"
            cold, python = prepare(image, envs, env)
            warm = [prepare(image, envs, env)[0] for _ in range(max(args.runs, 1) * 4)]
            entry: dict[str, object] = {
                "requirements": list(CATALOGUE[image].requirements),
                "cold_s": round(cold, 2),
                "warm_ms": round(statistics.median(warm) * 1000, 2),
                "env_mib": round(sum(f.stat().st_size for f in envs.rglob("*") if f.is_file()) / 2**20, 1),
                "python": python,
            }
            if not args.no_empty_cache:
                private = {**env, "UV_CACHE_DIR": str(work / "uv-cache-empty")}
                entry["cold_empty_uv_cache_s"] = round(prepare(image, work / "envs-empty-cache", private)[0], 2)
                shutil.rmtree(work / "envs-empty-cache", ignore_errors=True)
                shutil.rmtree(work / "uv-cache-empty", ignore_errors=True)
            results[image] = entry
        sklearn_envs = work / "envs-trainforge_sklearn_1.2-1"
        if sklearn_envs.is_dir():
            current = job_seconds("trainforge/python:current", args.runs, sklearn_envs, work / "job-current")
            reuse = job_seconds("trainforge/sklearn:1.2-1", args.runs, sklearn_envs, work / "job-sklearn")
            results["job_fit_s"] = {
                "trainforge/python:current (no environment step)": round(current, 3),
                "trainforge/sklearn:1.2-1 (warm reuse)": round(reuse, 3),
                "added_by_warm_reuse_s": round(reuse - current, 3),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
