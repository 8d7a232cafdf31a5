"""What the sandbox adds to a job's start: ``fit()`` -> the script's first line, sandboxed and not, side by side.

    python bench/sandbox_start.py [--runs 7]

Starts two private servers (their own TRAINFORGE_HOME), one with ``TRAINFORGE_SANDBOX=auto`` and one with
``TRAINFORGE_SANDBOX=off``, and runs the same trivial script through ``Estimator.fit()`` on each in turn. The
SDK follows the log by polling, so these figures carry its polling granularity; the launch itself is therefore
also timed alone: the script's interpreter started directly and behind the exact prefix the supervisor puts
before it (limits wrapper + ``bwrap`` with the job's mounts), the median of ``--runs * 5`` starts each.

Prints JSON: medians per mode and the differences (target: the sandbox adds <= 30 ms).
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

from firstline import MARKER, SCRIPT, FirstLineWatch


def fit_once(session: Any, src: Path) -> float:
    import trainforge
    from trainforge.estimator import Estimator

    est = Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(src),
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )
    watch = FirstLineWatch()
    start = time.perf_counter()
    with redirect_stdout(watch):
        est.fit()
    assert watch.first_line_at is not None, "".join(watch.parts)
    return watch.first_line_at - start


def launch_times(work: Path, runs: int) -> dict[str, float]:
    """Median seconds to the first line of ``python -c print`` started directly and behind the sandbox prefix."""
    from trainforge.runtime.limits import select_limits
    from trainforge.runtime.sandbox import SandboxSpec, probe, sandboxed

    found = probe()
    opt_ml = work / "launch" / "opt" / "ml"
    for sub in ("code", "model", "input/config"):
        (opt_ml / sub).mkdir(parents=True, exist_ok=True)
    (work / "launch" / "sandbox-tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-c", f"print({MARKER!r}, flush=True)"]
    variants = {"direct": cmd}
    if found.bwrap is not None:
        spec = SandboxSpec(
            opt_ml=opt_ml,
            tmp=work / "launch" / "sandbox-tmp",
            hidden=[work],
            expose=[Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parents[1] / "src"],
        )
        variants["sandboxed"] = sandboxed(found.bwrap, spec, cmd)
    limits = select_limits(memory_gib=1, cpus=1, job_name="bench-launch", host="algo-1")
    results: dict[str, list[float]] = {name: [] for name in variants}
    try:
        limits.prepare()
        limited = {f"{name}_with_limits": limits.wrap(argv) for name, argv in variants.items()}
    except OSError:
        limited = {}
    for name in limited:
        results[name] = []
    every = {**variants, **limited}
    for _ in range(runs):
        for name, argv in every.items():
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, process_group=0)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            results[name].append(time.perf_counter() - start)
            proc.wait()
            assert MARKER in line, (name, line)
    limits.close()
    out = {name: round(statistics.median(values), 4) for name, values in results.items()}
    out["limits"] = limits.kind  # type: ignore[assignment]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tf-bench-sandbox-"))
    src = work / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)

    import trainforge
    from trainforge.local_server import stop_server
    from trainforge.settings import load_settings

    sessions: dict[str, Any] = {}
    settings = {}
    try:
        for mode in ("auto", "off"):
            os.environ["TRAINFORGE_SANDBOX"] = mode  # the embedded server started next inherits it
            settings[mode] = load_settings(home=work / f"home-{mode}")
            sessions[mode] = trainforge.Session(settings=settings[mode])  # starts the server (not timed)
        firsts: dict[str, list[float]] = {"auto": [], "off": []}
        fit_once(sessions["auto"], src)  # warm-up: the image environment, imports
        fit_once(sessions["off"], src)
        for _ in range(args.runs):
            for mode in ("auto", "off"):
                firsts[mode].append(fit_once(sessions[mode], src))
    finally:
        for s in settings.values():
            stop_server(s)
    med = {mode: statistics.median(values) for mode, values in firsts.items()}
    launch = launch_times(work, args.runs * 5)
    report: dict[str, Any] = {
        "runs": args.runs,
        "fit_to_first_line_s": {"sandboxed": round(med["auto"], 3), "unsandboxed": round(med["off"], 3)},
        "fit_sandbox_adds_ms": round(1000 * (med["auto"] - med["off"]), 1),
        "launch_to_first_line_s": launch,
    }
    if "sandboxed" in launch:
        report["launch_sandbox_adds_ms"] = round(1000 * (launch["sandboxed"] - launch["direct"]), 1)
    if "sandboxed_with_limits" in launch:
        added = launch["sandboxed_with_limits"] - launch["direct"]
        report["launch_sandbox_and_limits_add_ms"] = round(1000 * added, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
