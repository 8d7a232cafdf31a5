"""Warm start: ``fit()`` -> the first line of a trivial script on a warm worker, forked from its forkserver vs a
fresh interpreter (``TRAINFORGE_WARM_FORK=off``).

For each mode a private server (its own TRAINFORGE_HOME) runs a first keep-alive job (not timed; it leaves the warm
worker), then N timed jobs, each submitted once the worker listens again. ``--image`` adds an image whose preload
is heavy (e.g. ``trainforge/sklearn:1.2-1``, whose script imports sklearn): use it only where that environment is
already built (``--envs-dir``, or the default ``$TRAINFORGE_HOME/envs``) - building it takes minutes. Prints one
JSON object as the last stdout line, with ``"name": "warm_start"``.

    python bench/warm_start.py [--runs 5] [--image trainforge/sklearn:1.2-1 --envs-dir ~/.trainforge/envs]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from firstline import MARKER, FirstLineWatch

LIGHT = "trainforge/python:current"
HEAVY_SCRIPT = f'import sklearn.ensemble\nprint("{MARKER}", flush=True)\n'
LIGHT_SCRIPT = f'print("{MARKER}", flush=True)\n'


def wait_listening(home: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(home.glob("warm/*/*.sock")):
        if time.monotonic() > deadline:
            raise RuntimeError("no warm worker is listening")
        time.sleep(0.01)


def measure(mode: str, image: str, runs: int, envs_dir: str | None) -> dict[str, Any]:
    """Medians for one (fork mode, image) on a server of its own."""
    home = Path(tempfile.mkdtemp(prefix=f"tf-bench-warm-{mode}-"))
    os.environ["TRAINFORGE_HOME"] = str(home)
    os.environ["TRAINFORGE_WARM_FORK"] = mode
    if envs_dir:
        os.environ["TRAINFORGE_ENVS_DIR"] = envs_dir
    src = home / "src"
    src.mkdir()
    (src / "train.py").write_text(LIGHT_SCRIPT if image == LIGHT else HEAVY_SCRIPT)

    import trainforge
    from trainforge.estimator import Estimator
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    settings = load_settings()
    session = trainforge.Session(settings=settings)
    role = trainforge.get_execution_role()
    firsts: list[float] = []
    forked = 0
    try:
        for i in range(runs + 1):
            if i:
                wait_listening(home)
            est = Estimator(
                image_uri=image,
                entry_point="train.py",
                source_dir=str(src),
                role=role,
                instance_type="local",
                instance_count=1,
                sagemaker_session=session,
                keep_alive_period_in_seconds=60,
            )
            watch = FirstLineWatch()
            start = time.perf_counter()
            with redirect_stdout(watch):  # type: ignore[type-var]
                est.fit()
            assert watch.first_line_at is not None, "".join(watch.parts)
            if i:
                firsts.append(watch.first_line_at - start)
                forked += "warm start: forked from a forkserver" in "".join(watch.parts)
    finally:
        stop_server(settings)
    return {"fit_to_first_line_s": round(statistics.median(firsts), 3), "forked_runs": forked, "runs": runs}


def compare(image: str, runs: int, envs_dir: str | None) -> dict[str, Any]:
    """Forked vs a fresh interpreter for one image, side by side."""
    forked = measure("auto", image, runs, envs_dir)
    fresh = measure("off", image, runs, envs_dir)
    return {
        "forked_first_line_s": forked["fit_to_first_line_s"],
        "fork_off_first_line_s": fresh["fit_to_first_line_s"],
        "forked_runs": forked["forked_runs"],
        "speedup": round(fresh["fit_to_first_line_s"] / max(forked["fit_to_first_line_s"], 1e-6), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=None, help="a heavy image whose environment is already built")
    parser.add_argument("--envs-dir", default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {"name": "warm_start", "runs": args.runs, "image": LIGHT, "target_warm_s": 0.05}
    report.update(compare(LIGHT, args.runs, args.envs_dir))
    if args.image:
        report["heavy"] = {"image": args.image, **compare(args.image, args.runs, args.envs_dir)}
    else:
        report["heavy"] = "not measured: pass --image with an environment already built (see the doc)"
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
