"""What a container costs at a job's start: ``fit()`` -> the script's first line in a custom container, in a
catalogue environment, and ``docker run`` of the same container directly, in one run.

    python bench/container_start.py [--runs 5]

Starts its own dockerd (tests/support/docker.py: a private data root and socket, no iptables, no bridge), builds
the python test image from Debian packages and, on it, a custom image whose own ``train`` executable is the trivial
script (prints one line), then one private server (its own TRAINFORGE_HOME, the engine in its environment). Each
repetition times, in turn:

- ``custom_container``: ``Estimator(image_uri=<custom image>).fit()`` -> the script's first line seen by the SDK
  (the supervisor runs ``docker run <image> train`` with the job's /opt/ml bound);
- ``catalogue_environment``: the same script as ``entry_point`` of ``trainforge/python:3.11`` (its uv environment,
  built before timing) -> first line;
- ``docker_run``: ``docker run --rm --network none <custom image> train`` started here -> first line on its stdout.

The SDK follows a job's log by polling, so the two ``fit()`` figures carry that granularity. Prints JSON: median
and p90 per case, and the ratios custom/docker_run and catalogue/docker_run (medians).
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.docker: the private engine

from firstline import MARKER, SCRIPT, FirstLineWatch

CUSTOM_TAG = "tfbench/custom-train:1"


def build_custom_image(engine: Any, base: str, work: Path) -> str:
    """``FROM <python test image>`` + the trivial script as ``/usr/local/bin/train``."""
    ctx = work / "custom-ctx"
    ctx.mkdir()
    (ctx / "train").write_text("#!/usr/bin/python3\n" + SCRIPT)
    (ctx / "train").chmod(0o755)
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY train /usr/local/bin/train\n")
    engine.docker("build", "-q", "-t", CUSTOM_TAG, str(ctx), timeout=300)
    return CUSTOM_TAG


def fit_once(session: Any, **kwargs: Any) -> float:
    """Seconds from ``fit()`` to the script's first line in the SDK's output; the job must complete."""
    import trainforge
    from trainforge.estimator import Estimator

    est = Estimator(
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
        **kwargs,
    )
    watch = FirstLineWatch()
    start = time.perf_counter()
    with redirect_stdout(watch):
        est.fit()
    assert watch.first_line_at is not None, "".join(watch.parts)[-3000:]
    return watch.first_line_at - start


def docker_run_once(engine: Any, image: str) -> float:
    """Seconds from starting ``docker run`` to the first line on its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["docker", "run", "--rm", "--network", "none", image, "train"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **engine.env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.communicate(timeout=120)
    assert MARKER in line, line
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return {"median_s": round(statistics.median(values), 3), "p90_s": round(p90, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from tests.support.docker import docker_engine, python_image

    work = Path(tempfile.mkdtemp(prefix="tf-bench-container-"))
    src = work / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)

    import trainforge
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    times: dict[str, list[float]] = {"custom_container": [], "catalogue_environment": [], "docker_run": []}
    with docker_engine() as engine:
        custom = build_custom_image(engine, python_image(engine), work)
        os.environ.update(engine.env)  # the embedded server started next (and its supervisors) use this engine
        os.environ["TRAINFORGE_ENVS_DIR"] = str(work / "envs")
        settings = load_settings(home=work / "home")
        session = trainforge.Session(settings=settings)  # starts the server (not timed)
        try:
            cases = {
                "custom_container": lambda: fit_once(session, image_uri=custom),
                "catalogue_environment": lambda: fit_once(
                    session, image_uri="trainforge/python:3.11", entry_point="train.py", source_dir=str(src)
                ),
                "docker_run": lambda: docker_run_once(engine, custom),
            }
            for run in cases.values():  # warm-up: the uv environment, the server's and the engine's first start
                run()
            for _ in range(args.runs):
                for name, run in cases.items():
                    times[name].append(run())
        finally:
            stop_server(settings)
    report: dict[str, Any] = {"runs": args.runs, **{name: summary(values) for name, values in times.items()}}
    direct = statistics.median(times["docker_run"])
    report["ratio_custom_over_docker_run"] = round(statistics.median(times["custom_container"]) / direct, 2)
    report["ratio_catalogue_over_docker_run"] = round(statistics.median(times["catalogue_environment"]) / direct, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
