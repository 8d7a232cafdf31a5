"""Warm start: ``fit()`` -> the first line of a trivial script on a warm worker, forked from its forkserver vs a
fresh interpreter (``TRAINFORGE_WARM_FORK=off``).

Two private servers (each its own TRAINFORGE_HOME), one per mode, each run a first keep-alive job (not timed: it
leaves the warm worker), then N timed jobs each, interleaved (same machine state), each once its worker listens
again. ``--image`` adds an image whose preload is heavy (e.g. ``trainforge/sklearn:1.2-1``, whose script imports
sklearn): use it only where that environment is already built (``--envs-dir``, or the default
``$TRAINFORGE_HOME/envs``) - building it takes minutes. Prints one JSON object as the last stdout line, with
``"name": "warm_start"``.

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
FORKED = "warm start: forked from a forkserver"


def wait_listening(home: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(home.glob("warm/*/*.sock")):
        if time.monotonic() > deadline:
            raise RuntimeError("no warm worker is listening")
        time.sleep(0.01)


class Side:
    """One server (its own home) with ``TRAINFORGE_WARM_FORK=mode``, and the timed fits run on it."""

    def __init__(self, mode: str, image: str, envs_dir: str | None) -> None:
        self.image = image
        self.home = Path(tempfile.mkdtemp(prefix=f"tf-bench-warm-{mode}-"))
        os.environ["TRAINFORGE_HOME"] = str(self.home)
        os.environ["TRAINFORGE_WARM_FORK"] = mode  # read by the server this session starts
        if envs_dir:
            os.environ["TRAINFORGE_ENVS_DIR"] = envs_dir
        self.src = self.home / "src"
        self.src.mkdir()
        (self.src / "train.py").write_text(LIGHT_SCRIPT if image == LIGHT else HEAVY_SCRIPT)

        import trainforge
        from trainforge.settings import load_settings

        self.settings = load_settings()
        self.session = trainforge.Session(settings=self.settings)
        self.role = trainforge.get_execution_role()
        self.firsts: list[float] = []
        self.forked = 0

    def fit(self, *, timed: bool) -> None:
        from trainforge.estimator import Estimator

        if timed:
            wait_listening(self.home)
        est = Estimator(
            image_uri=self.image,
            entry_point="train.py",
            source_dir=str(self.src),
            role=self.role,
            instance_type="local",
            instance_count=1,
            sagemaker_session=self.session,
            keep_alive_period_in_seconds=60,
        )
        watch = FirstLineWatch()
        start = time.perf_counter()
        with redirect_stdout(watch):  # type: ignore[type-var]
            est.fit()
        assert watch.first_line_at is not None, "".join(watch.parts)
        if timed:
            self.firsts.append(watch.first_line_at - start)
            self.forked += FORKED in "".join(watch.parts)

    def stop(self) -> None:
        from trainforge.local_server import stop_server

        stop_server(self.settings)


def compare(image: str, runs: int, envs_dir: str | None) -> dict[str, Any]:
    """Forked vs a fresh interpreter for one image: two servers, their timed jobs interleaved."""
    sides = [Side("auto", image, envs_dir), Side("off", image, envs_dir)]
    try:
        for side in sides:
            side.fit(timed=False)  # leaves the warm worker (and its forkserver)
        for _ in range(runs):
            for side in sides:
                side.fit(timed=True)
    finally:
        for side in sides:
            side.stop()
    forked, fresh = (statistics.median(side.firsts) for side in sides)
    return {
        "forked_first_line_s": round(forked, 3),
        "fork_off_first_line_s": round(fresh, 3),
        "forked_runs": sides[0].forked,
        "speedup": round(fresh / max(forked, 1e-6), 1),
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
