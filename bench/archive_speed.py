"""Packaging a model: ``model.tar.gz`` of float32 weights, written and read by trainforge and by the usual tools.

    python bench/archive_speed.py [--size-mib 256] [--runs 3]

The model: ``--size-mib`` MiB of random float32 weights (normally distributed, so they barely compress, like real
weights) and a little text (a config and a vocabulary). In one run, interleaved so every way sees the same machine:

- write: ``tarfile_zlib1`` (what ``make_archive`` did before #13: ``tarfile`` ``w:gz`` at zlib level 1),
  ``archives_1t`` / ``archives_2t`` (:func:`trainforge.archives.write_archive` on one and two threads; ``ours`` is
  the thread count trainforge picks on this machine), ``published`` (what a job does: the archive streamed into a
  local object store with the model's content hash, fsync'd), ``tar_gzip1`` (``tar cf - | gzip -1``),
  ``tar_zstd1`` (``tar cf - | zstd -1 -T0``, "missing" without ``zstd``), ``tar`` (plain, uncompressed);
- read: extracting the same archive with ``tarfile`` and with :func:`trainforge.archives.open_archive`, beside
  ``tar xzf``.

Rates are MiB of model per second (the model's size over the wall time), median of ``--runs``; each archive is
written to and read from the page cache of a temporary directory (``published`` also fsyncs, as a store does).
Prints one JSON object, the last thing on stdout, with ``"name": "archive_speed"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainforge import archives
from trainforge.runtime.packaging import publish_archive
from trainforge.storage import LocalObjectStore

MiB = 1024 * 1024


def make_model(root: Path, size_mib: int) -> int:
    """Write the model under ``root``; return its size in bytes."""
    import numpy as np

    root.mkdir(parents=True)
    rng = np.random.default_rng(13)
    with open(root / "weights.bin", "wb") as out:
        left = size_mib * MiB // 4
        while left:
            count = min(left, 16 * MiB // 4)
            out.write(rng.standard_normal(count, dtype=np.float32).tobytes())
            left -= count
    (root / "config.json").write_text(json.dumps({"layers": 12, "hidden": 768, "vocab": 30522}, indent=2))
    words = (f"token_{i}\n" for i in range(30522))
    (root / "vocab.txt").write_text("".join(words))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tarfile_zlib1(src: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
        for name in sorted(os.listdir(src)):
            tar.add(src / name, arcname=name)


def shell(command: str) -> Callable[[Path, Path], None]:
    def run(src: Path, dest: Path) -> None:
        subprocess.run(["bash", "-o", "pipefail", "-c", command.format(src=src, dest=dest)], check=True)

    return run


def published(store: LocalObjectStore) -> Callable[[Path, Path], None]:
    def run(src: Path, dest: Path) -> None:
        publish_archive(store, src, f"s3://bench/{dest.name}", content_hash=True)
        (store.root / "bench" / dest.name).unlink()

    return run


def writers(store: LocalObjectStore) -> dict[str, Callable[[Path, Path], None] | None]:
    ways: dict[str, Callable[[Path, Path], None] | None] = {
        "tarfile_zlib1": tarfile_zlib1,
        "archives_1t": lambda src, dest: archives.write_archive(src, dest, threads=1) and None,
        "archives_2t": lambda src, dest: archives.write_archive(src, dest, threads=2) and None,
        "published": published(store),
        "tar_gzip1": shell("tar cf - -C {src} . | gzip -1 > {dest}"),
        "tar_zstd1": shell("tar cf - -C {src} . | zstd -q -1 -T0 -o {dest}") if shutil.which("zstd") else None,
        "tar": shell("tar cf {dest} -C {src} ."),
    }
    return ways


def extract_tarfile(archive: Path, out: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(out, filter="data")


def extract_archives(archive: Path, out: Path) -> None:
    with archives.open_archive(archive) as tar:
        tar.extractall(out, filter="data")


def extract_tar(archive: Path, out: Path) -> None:
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True)


READERS: dict[str, Callable[[Path, Path], None]] = {
    "tarfile": extract_tarfile,
    "archives": extract_archives,
    "tar_xzf": extract_tar,
}


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate(size: int, seconds: list[float]) -> float:
    return round(size / MiB / statistics.median(seconds), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256, help="MiB of float32 weights (default 256)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each way; the median counts (default 3)")
    args = parser.parse_args()
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tf-bench-packaging-") as tmp:
        work = Path(tmp)
        src = work / "model"
        size = make_model(src, args.size_mib)
        store = LocalObjectStore(work / "store")
        ways = writers(store)
        times: dict[str, list[float]] = {name: [] for name, fn in ways.items() if fn is not None}
        sizes: dict[str, int] = {}
        for run in range(args.runs):
            for name, fn in ways.items():
                if fn is None:
                    continue
                dest = work / f"{name}.out"
                times[name].append(timed(lambda fn=fn, dest=dest: fn(src, dest)))
                if dest.exists():
                    sizes[name] = dest.stat().st_size
                    if name != "archives_2t" or run < args.runs - 1:
                        dest.unlink()
                print(f"run {run + 1}: {name} {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
        archive = work / "archives_2t.out"
        verified = {
            "tar_tzf": subprocess.run(["tar", "tzf", str(archive)], capture_output=True).returncode == 0,
            "gzip_t": subprocess.run(["gzip", "-t", str(archive)], capture_output=True).returncode == 0,
        }
        read_times: dict[str, list[float]] = {name: [] for name in READERS}
        for run in range(args.runs):
            for name, extract in READERS.items():
                out = work / f"extract-{name}"
                out.mkdir()
                read_times[name].append(timed(lambda extract=extract, out=out: extract(archive, out)))
                shutil.rmtree(out)
                print(f"run {run + 1}: read {name} {read_times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    write = {name: rate(size, seconds) for name, seconds in times.items()}
    threads = archives.compression_threads()
    write["ours"] = write[f"archives_{threads}t"]
    today = write["tarfile_zlib1"]
    read = {name: rate(size, seconds) for name, seconds in read_times.items()}
    result: dict[str, Any] = {
        "name": "archive_speed",
        "model_mib": round(size / MiB, 1),
        "runs": args.runs,
        "machine": {"cores": len(os.sched_getaffinity(0)), "python": platform.python_version()},
        "isal": archives.ACCELERATED,
        "ours_threads": threads,
        "write_mib_s": write,
        "missing": [name for name, fn in ways.items() if fn is None],
        "read_mib_s": read,
        "archive_size_ratio": {name: round(n / size, 4) for name, n in sizes.items()},
        "ours_x_today": round(write["ours"] / today, 1),
        "published_x_today": round(write["published"] / today, 1),
        "read_ours_x_tarfile": round(read["archives"] / read["tarfile"], 1),
        "ours_archive_verified": verified,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
