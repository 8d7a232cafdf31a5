"""Time to make a 1 GiB local-store channel available to the job's code, three ways, in one run.

    python bench/channel_staging.py                  # 1 GiB in 8 objects, 3 repeats
    python bench/channel_staging.py --size-mib 256 --files 4 --repeat 5

- ``bind``: the sandbox's zero-copy path: :func:`trainforge.runtime.channels.bindable_channel` (the listing and
  the encryption check) plus a bubblewrap sandbox with the channel bound read-only at ``/opt/ml/input/data/train``
  whose code stats every file; the same sandbox without the channel is timed too, so the bind's own cost shows.
- ``stage``: today's copy, :func:`trainforge.runtime.channels.stage_channel` into an empty channel directory.
- ``cp``: ``cp -r`` of the store directory (the page cache is warm for both copies: the data was just written).

Prints JSON: the median seconds of each and the copies' ratios to the bind. Needs ``bwrap`` for the bind figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trainforge.runtime.channels import bindable_channel, stage_channel
from trainforge.runtime.sandbox import SandboxSpec, probe, sandboxed
from trainforge.spec.job import ChannelSpec
from trainforge.storage import LocalObjectStore

MiB = 1024 * 1024
URI = "s3://bench/channel/"
STAT_ALL = "import os, sys\nfor d, _, fs in os.walk(sys.argv[1]):\n    [os.stat(os.path.join(d, f)) for f in fs]\n"


def fill_store(store: LocalObjectStore, size: int, files: int, scratch: Path) -> None:
    per_file = size // files
    block = os.urandom(MiB)
    for index in range(files):
        path = scratch / f"part-{index:03d}.bin"
        with open(path, "wb") as out:
            for _ in range(per_file // MiB):
                out.write(block)
        store.put_file(f"{URI}part-{index:03d}.bin", path)
        path.unlink()


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    found = probe()
    with tempfile.TemporaryDirectory(prefix="tf-bench-channel-") as tmp:
        work = Path(tmp)
        store = LocalObjectStore(work / "storage")
        fill_store(store, args.size_mib * MiB, args.files, work)
        storage = {"kind": "local", "root": str(store.root)}
        channel = ChannelSpec.model_validate({"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": URI}}})
        opt_ml = work / "opt" / "ml"
        for sub in ("code", "input/config", "input/data/train"):
            (opt_ml / sub).mkdir(parents=True, exist_ok=True)
        (work / "sbx-tmp").mkdir()

        def bind(with_channel: bool) -> None:
            assert found.bwrap is not None
            channels: dict[str, Path] = {}
            if with_channel:
                staged = bindable_channel(store, storage, channel, host_count=1, input_mode="File")
                assert staged is not None and staged.bound is not None, "the channel should be bindable"
                channels["train"] = staged.bound
            spec = SandboxSpec(opt_ml=opt_ml, tmp=work / "sbx-tmp", channels=channels, hidden=[work])
            cmd = sandboxed(found.bwrap, spec, [sys.executable, "-S", "-c", STAT_ALL, "/opt/ml/input/data/train"])
            subprocess.run(cmd, check=True)

        def stage() -> None:
            dest = work / "staged"
            dest.mkdir()
            stage_channel(store, channel, dest, host_index=0, host_count=1, input_mode="File")
            shutil.rmtree(dest)

        def cp() -> None:
            subprocess.run(["cp", "-r", str(store.root / "bench" / "channel"), str(work / "copied")], check=True)
            shutil.rmtree(work / "copied")

        results: dict[str, list[float]] = {"bind": [], "sandbox_without_channel": [], "stage": [], "cp": []}
        for _ in range(args.repeat):  # interleaved, so a drifting machine hurts each way alike
            if found.available:
                results["bind"].append(timed(lambda: bind(True)))
                results["sandbox_without_channel"].append(timed(lambda: bind(False)))
            results["stage"].append(timed(stage))
            results["cp"].append(timed(cp))
    medians = {name: round(statistics.median(values), 4) for name, values in results.items() if values}
    report: dict[str, Any] = {
        "size_mib": args.size_mib,
        "files": args.files,
        "repeat": args.repeat,
        "median_seconds": medians,
    }
    if "bind" in medians:
        report["bind_own_cost_seconds"] = round(medians["bind"] - medians["sandbox_without_channel"], 4)
        report["stage_vs_bind"] = round(medians["stage"] / medians["bind"], 1)
        report["cp_vs_bind"] = round(medians["cp"] / medians["bind"], 1)
    else:
        report["bind"] = f"not measured: {found.reason}"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
