"""Time the web console's jobs list with 10,000 jobs in the store: ``GET /console/jobs``, first page.

Seeds a private ``TRAINFORGE_HOME`` through the real ``JobStore`` (10,000 finished jobs: Completed ones with
two metrics of 10 points each, Failed and Stopped ones), starts the real server on it (``python -m
trainforge.server``, 127.0.0.1), signs in with the API token like a browser, and times the first page of the
list (newest first, 25 rows) over HTTP, plus a status filter, a name search, a sort by name, a late page and the
JSON the page's script polls. Prints JSON; the target for the first page is under 300 ms.

``first_page_ms`` is the median on a new connection per request (connect, request, whole page). The other
figures reuse one kept-alive connection; they include ~40 ms of delayed-ACK wait while the server's listening
socket lacks ``TCP_NODELAY`` (see the note in ``docs/console.md``).

    python bench/console_list.py [--jobs 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from trainforge.spec.contract import job_arn, model_artifacts_uri
from trainforge.spec.job import parse_create_request
from trainforge.spec.status import SecondaryStatus as S
from trainforge.store import NewJob, open_job_store

TARGET_MS = 300.0
T0 = 1_700_000_000.0


def _spec(name: str, i: int) -> str:
    body = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "HyperParameters": {"epochs": str(10 + i % 7), "lr": f"{0.001 * (1 + i % 5):g}"},
    }
    return json.dumps(parse_create_request(body).to_wire(), separators=(",", ":"))


def seed(home: Path, n: int) -> float:
    """Insert ``n`` finished jobs (10 s apart); return the seconds it took."""
    started = time.perf_counter()
    store = open_job_store(f"sqlite:///{home / 'trainforge.db'}")
    for i in range(n):
        name = f"run-{i:05d}"
        t = T0 + 10 * i
        job, _ = store.create(
            NewJob(
                name=name,
                arn=job_arn("local", "000000000000", name),
                spec_json=_spec(name, i),
                instance_type="ml.m5.large",
                instance_count=1,
                model_artifacts=model_artifacts_uri("s3://trainforge-default/", name),
            ),
            now=t,
        )
        if i % 10 == 7:
            store.transition(name, S.FAILED, "Training job failed", failure_reason="AlgorithmError: exit 1", now=t + 5)
        elif i % 10 == 8:
            store.transition(name, S.STOPPED, "Training job stopped", now=t + 5)
        else:
            for k, status in enumerate((S.TRAINING, S.UPLOADING, S.COMPLETED), start=1):
                store.transition(name, status, status.value, now=t + 2 * k)
            points = [
                {"name": metric, "value": 1.0 / (step + 1 + i % 3), "timestamp": t + step * 0.2}
                for step in range(10)
                for metric in ("train:loss", "validation:auc")
            ]
            store.append_metrics(job.id, "algo-1", points)
    store.engine.dispose()
    return time.perf_counter() - started


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The real server on ``home``; its process and url once ``/health`` answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["TRAINFORGE_HOME"] = str(home)
    log = open(home / "server.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([sys.executable, "-m", "trainforge.server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(home / 'server.log').read_text()[-2000:]}")
        try:
            url = str(json.loads((home / "server.json").read_text())["url"])
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not answer /health within 60 s")


def _summary(samples: list[float], size: int) -> dict[str, Any]:
    samples = sorted(samples)
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 1),
        "max_ms": round(samples[-1], 1),
        "bytes": size,
    }


def timings(client: httpx.Client, path: str, runs: int) -> dict[str, Any]:
    """Milliseconds per request of ``path`` on one kept-alive connection (after two warm-up requests)."""
    for _ in range(2):
        client.get(path).raise_for_status()
    samples = []
    size = 0
    for _ in range(runs):
        t = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return _summary(samples, size)


def fresh_connection_timings(url: str, cookie: str, path: str, runs: int) -> dict[str, Any]:
    """Milliseconds per request of ``path``, each on a new connection (connect + request + whole body)."""
    parts = urlsplit(url)
    samples = []
    size = 0
    for _ in range(runs + 2):
        t = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        conn.request("GET", path, headers={"Cookie": cookie})
        response = conn.getresponse()
        body = response.read()
        samples.append((time.perf_counter() - t) * 1000)
        conn.close()
        if response.status != 200:
            raise SystemExit(f"GET {path}: HTTP {response.status}")
        size = len(body)
    return _summary(samples[2:], size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tf-console-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        seed_s = seed(home, args.jobs)
        proc, url = start_server(home)
        try:
            token = (home / "token").read_text().strip()
            with httpx.Client(base_url=url, timeout=30) as client:
                signin = client.post("/console/login", data={"token": token, "next": "/console/jobs"})
                assert signin.status_code == 303, f"sign-in failed: {signin.status_code}"
                assert "trainforge_console" in client.cookies, "sign-in failed"
                last_page = max(1, (args.jobs + 24) // 25)
                cookie = f"trainforge_console={client.cookies['trainforge_console']}"
                results = {
                    "first_page_new_connection": fresh_connection_timings(url, cookie, "/console/jobs", args.runs),
                    "first_page": timings(client, "/console/jobs", args.runs),
                    "status_filter": timings(client, "/console/jobs?status=Failed", args.runs),
                    "name_search": timings(client, "/console/jobs?q=run-09", args.runs),
                    "sort_by_name": timings(client, "/console/jobs?sort=Name&order=Ascending", args.runs),
                    "last_page": timings(client, f"/console/jobs?page={last_page}", args.runs),
                    "live_refresh_json": timings(client, "/console/api/jobs", args.runs),
                }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    first = results["first_page_new_connection"]["median_ms"]
    print(
        json.dumps(
            {
                "benchmark": "console_list",
                "jobs": args.jobs,
                "runs": args.runs,
                "seed_seconds": round(seed_s, 1),
                "first_page_ms": first,
                "target_ms": TARGET_MS,
                "within_target": max(results[k]["p95_ms"] for k in ("first_page", "first_page_new_connection"))
                < TARGET_MS,
                "pages": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
