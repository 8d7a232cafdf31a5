"""Upload and download one large file through trainforge's S3 store and through the client libraries used raw.

    python bench/storage.py                      # 1 GiB against a moto server started here on 127.0.0.1
    python bench/storage.py --size-mib 256       # smaller
    python bench/storage.py --endpoint URL       # another S3-compatible server; credentials from AWS_*

Side by side in one run, interleaved, on the same server and file:

- ``trainforge``: :class:`trainforge.storage.s3.S3ObjectStore` ``put_file`` / ``download_file`` with its defaults
  (multipart from 64 MiB, 32 MiB parts, 4 threads; ranged parallel GETs for large objects);
- ``boto3``: the chosen library used raw, ``upload_file`` / ``download_file`` with the same part size, threshold,
  threads and client options;
- ``obstore``: the other candidate used raw, ``put`` (multipart, same part size and concurrency) and the same
  ranged parallel download written with ``get_range`` in 4 threads.

Each raw library also downloads once with a single streamed GET (``*_single_get``): moto reads the whole object
for every ranged GET, so on moto a single stream can beat ranged downloads; on S3 itself ranges win.

Prints JSON: MiB/s (best of ``--repeat``), client CPU seconds, and trainforge's ratio to raw boto3.
Needs the dev extra (boto3, obstore, moto[server]).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MiB = 1024 * 1024
BUCKET = "trainforge-bench"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MiB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def s3_endpoint(endpoint: str | None) -> Iterator[dict[str, str]]:
    """The ``AWS_*`` environment of the server to measure: ``endpoint`` with this environment's credentials, or a
    moto server started here."""
    if endpoint:
        yield {**{k: v for k, v in os.environ.items() if k.startswith("AWS_")}, "AWS_ENDPOINT_URL_S3": endpoint}
        return
    from tests.support.s3 import moto_server

    with moto_server() as server:
        yield server.env


def timed(size: int, fn: Callable[[], object]) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return {"mib_s": round(size / MiB / wall, 1), "seconds": round(wall, 2), "client_cpu_s": round(cpu, 2)}


class Runners:
    """The three ways to move the file, with identical part sizes, thresholds and thread counts."""

    def __init__(self, env: dict[str, str], work: Path, size: int) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from obstore.store import S3Store

        from trainforge.storage.s3 import S3ObjectStore
        from trainforge.storage.s3_settings import S3Settings

        settings = S3Settings.from_env(env)
        self.size = size
        self.work = work
        self.ours = S3ObjectStore(settings=settings)
        self.ours.ensure_bucket(BUCKET)
        # boto3 raw: a plain client with the options our store sets (path style, checksums only when required).
        self.boto = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=self.ours.region,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            config=self.ours.client.meta.config,
        )
        self.boto_config = TransferConfig(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=settings.part_size,
            max_concurrency=settings.max_concurrency,
        )
        self.part = settings.part_size
        self.threads = settings.max_concurrency
        self.obs = S3Store(
            BUCKET,
            endpoint=settings.endpoint_url,
            region=self.ours.region,
            access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "timeout": "600s"},
        )

    def upload(self, way: str, src: Path) -> None:
        import obstore

        key = f"{way}/file.bin"
        if way == "trainforge":
            self.ours.put_file(f"s3://{BUCKET}/{key}", src)
        elif way == "boto3":
            self.boto.upload_file(str(src), BUCKET, key, Config=self.boto_config)
        else:
            obstore.put(self.obs, key, src, chunk_size=self.part, max_concurrency=self.threads)

    def download(self, way: str, dest: Path) -> None:
        key = f"{way}/file.bin"
        if way == "trainforge":
            self.ours.download_file(f"s3://{BUCKET}/{key}", dest)
        elif way == "boto3":
            self.boto.download_file(BUCKET, key, str(dest), Config=self.boto_config)
        else:
            self._obstore_ranged(key, dest)

    def _obstore_ranged(self, key: str, dest: Path) -> None:
        import obstore

        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, self.size)

            def part(start: int) -> None:
                data = obstore.get_range(self.obs, key, start=start, end=min(start + self.part, self.size))
                os.pwrite(fd, memoryview(data), start)

            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(part, range(0, self.size, self.part)))
        finally:
            os.close(fd)

    def single_get(self, way: str, dest: Path) -> None:
        import obstore

        key = f"{way}/file.bin"
        with open(dest, "wb") as out:
            if way == "boto3":
                body = self.boto.get_object(Bucket=BUCKET, Key=key)["Body"]
                for chunk in body.iter_chunks(8 * MiB):
                    out.write(chunk)
            else:
                for chunk in obstore.get(self.obs, key).stream(min_chunk_size=8 * MiB):
                    out.write(chunk)

    def delete(self, way: str) -> None:
        self.boto.delete_object(Bucket=BUCKET, Key=f"{way}/file.bin")


def best(runs: list[dict[str, float]]) -> dict[str, Any]:
    top = max(runs, key=lambda r: r["mib_s"])
    return {**top, "runs_mib_s": [r["mib_s"] for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--endpoint", help="an S3-compatible endpoint (default: start moto on 127.0.0.1)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    ways = ["trainforge", "boto3", "obstore"]
    with tempfile.TemporaryDirectory(prefix="tf-bench-storage-") as tmp, s3_endpoint(args.endpoint) as env:
        work = Path(tmp)
        src = work / "src.bin"
        digest = make_file(src, size)
        runners = Runners(env, work, size)
        up: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
        down: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
        single: dict[str, dict[str, float]] = {}
        for rep in range(args.repeat):
            for way in ways if rep % 2 == 0 else ways[::-1]:
                dest = work / f"{way}.out"
                up[way].append(timed(size, lambda way=way: runners.upload(way, src)))  # type: ignore[misc]
                down[way].append(timed(size, lambda way=way, dest=dest: runners.download(way, dest)))  # type: ignore[misc]
                if sha256(dest) != digest:
                    raise SystemExit(f"{way}: the downloaded file differs from the uploaded one")
                dest.unlink()
                if rep == args.repeat - 1 and way != "trainforge":
                    single[way] = timed(size, lambda way=way, dest=dest: runners.single_get(way, dest))  # type: ignore[misc]
                    dest.unlink()
                runners.delete(way)
        result = {
            "size_mib": args.size_mib,
            "server": args.endpoint or "moto (python -m moto.server, 127.0.0.1)",
            "part_mib": runners.part // MiB,
            "threads": runners.threads,
            "upload": {w: best(up[w]) for w in ways},
            "download": {w: best(down[w]) for w in ways},
            "download_single_get": single,
        }
        result["trainforge_vs_raw_boto3"] = {
            "upload": round(result["upload"]["trainforge"]["mib_s"] / result["upload"]["boto3"]["mib_s"], 3),
            "download": round(result["download"]["trainforge"]["mib_s"] / result["download"]["boto3"]["mib_s"], 3),
            "target": 0.9,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
