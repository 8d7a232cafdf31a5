"""What the per-node launcher saves at a job's start: a supervisor forked from it vs a fresh interpreter, in one run.

    python bench/supervisor_start.py [--runs 9] [--no-fit]

Two measurements, each case alternating with the other, N times, medians reported:

- ``supervisor``: the backend's start of one supervisor -> its first line in ``supervisor.log``. The config is
  deliberately unusable, so the first line is the supervisor's own error about it, written once its code is
  imported and ``main`` runs: ``fork`` asks a launcher (``NodeLauncher.fork``, what ``LocalBackend`` does with
  ``TRAINFORGE_LAUNCHER=auto``), ``spawn`` is ``start_supervisor`` (``off``).
- ``fit``: ``Estimator.fit()`` of a trivial script -> its first line in the SDK's output, on two private servers
  started here, one with ``TRAINFORGE_LAUNCHER=auto`` (its launcher answering before timing) and one with ``off``.

Prints one JSON object as the last stdout line, ``"name": "supervisor_start"``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.server: a private server process

from firstline import SCRIPT, FirstLineWatch


def _until(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.0005)


def _answers(sock: Path) -> bool:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        conn.close()


def supervisor_starts(work: Path, runs: int) -> dict[str, list[float]]:
    """Seconds from asking for a supervisor to its first ``supervisor.log`` line, forked and spawned."""
    from trainforge.backends.local import NodeLauncher, supervisor_env
    from trainforge.runtime.launch import InstanceInfo, SupervisorConfig, start_supervisor

    env = supervisor_env()
    keeper = NodeLauncher(python=sys.executable, home=work, jobs_root=work / "jobs", env=env)
    # Only its python and the job root count for a start; the config file itself is unusable on purpose.
    cfg = SupervisorConfig(
        job_name="bench",
        host="algo-1",
        hosts=["algo-1"],
        spec={},
        server_url="http://127.0.0.1:9",
        agent_token="x",
        storage={},
        instance=InstanceInfo(type="ml.m5.large", vcpus=2, memory_gib=8, effective_vcpus=2),
        python=sys.executable,
    )
    times: dict[str, list[float]] = {"fork": [], "spawn": []}
    try:
        _until(lambda: _answers(work / "launcher.sock"), what="the launcher")
        for i in range(runs):
            for case in ("fork", "spawn"):
                root = work / "jobs" / f"{case}-{i}" / "algo-1"
                root.mkdir(parents=True)
                (root / "supervisor.json").write_text("{}")
                log = root / "supervisor.log"
                start = time.perf_counter()
                if case == "fork":
                    pid = keeper.fork(root / "supervisor.json", env)
                    assert pid is not None, "the launcher did not fork"
                else:
                    proc = start_supervisor(cfg, root, env)
                _until(lambda log=log: log.exists() and log.stat().st_size > 0, what=f"{case}'s first line")
                times[case].append(time.perf_counter() - start)
                if case == "spawn":
                    proc.wait()
    finally:
        keeper.close()
    return times


def fit_first_lines(work: Path, runs: int) -> dict[str, list[float]]:
    """Seconds from ``fit()`` to the script's first line, on a server with the launcher and one without."""
    from tests.support.server import ServerProcess, kill_supervisors

    import trainforge
    from trainforge.estimator import Estimator
    from trainforge.settings import Settings

    src = work / "src"
    src.mkdir(parents=True)
    (src / "train.py").write_text(SCRIPT)
    servers = {
        case: ServerProcess(work / case, extra_env={"TRAINFORGE_LAUNCHER": mode}).start()
        for case, mode in (("launcher", "auto"), ("spawn", "off"))
    }
    times: dict[str, list[float]] = {case: [] for case in servers}
    try:
        _until(lambda: _answers(servers["launcher"].home / "launcher.sock"), what="the server's launcher")
        for _ in range(runs):
            for case, server in servers.items():
                est: Any = Estimator(
                    image_uri="trainforge/python:current",
                    entry_point="train.py",
                    source_dir=str(src),
                    role=trainforge.get_execution_role(),
                    instance_type="ml.m5.large",
                    instance_count=1,
                    sagemaker_session=trainforge.Session(settings=Settings(home=server.home)),
                )
                watch = FirstLineWatch()
                start = time.perf_counter()
                with redirect_stdout(watch):  # type: ignore[type-var]
                    est.fit()
                assert watch.first_line_at is not None, "".join(watch.parts)[-3000:]
                times[case].append(watch.first_line_at - start)
    finally:
        for server in servers.values():
            server.stop()
            kill_supervisors(server.home)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-fit", action="store_true", help="only the supervisor start (no servers)")
    args = parser.parse_args()
    os.environ.pop("TRAINFORGE_TOKEN", None)
    med = statistics.median
    work = Path(tempfile.mkdtemp(prefix="tf-bench-supervisor-start-"))
    starts = supervisor_starts(work / "starts", args.runs)
    report: dict[str, Any] = {
        "name": "supervisor_start",
        "runs": args.runs,
        "supervisor_fork_to_first_line_s": round(med(starts["fork"]), 4),
        "supervisor_spawn_to_first_line_s": round(med(starts["spawn"]), 4),
        "supervisor_speedup": round(med(starts["spawn"]) / med(starts["fork"]), 1),
    }
    if not args.no_fit:
        fits = fit_first_lines(work / "fit", args.runs)
        report |= {
            "fit_to_first_line_launcher_s": round(med(fits["launcher"]), 3),
            "fit_to_first_line_spawn_s": round(med(fits["spawn"]), 3),
            "fit_saved_s": round(med(fits["spawn"]) - med(fits["launcher"]), 3),
        }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
