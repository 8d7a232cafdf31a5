"""The API under load, on SQLite and on PostgreSQL: submits from many clients, describe/list at 100k stored jobs, log
ingestion through the agent route, each beside the raw database's own insert rate measured in the same run.

For each database: seed ``--stored`` finished jobs through SQL (one executemany transaction: the raw bulk rate),
start the real server (``python -m trainforge.server``) on it with this machine's capacity at one vCPU, submit one
long job that takes that vCPU, then have ``--clients`` threads (httpx, one connection each) submit ``--jobs`` jobs
at once. Those jobs honestly wait ``Pending`` ("Waiting for capacity") and are stopped afterwards. Checked: every
accepted job is recorded exactly once (names over the API's list and counted in SQL). Then describe and list
latency (one kept-alive connection, sequential requests), and log ingestion: ``--log-lines`` lines in batches of
500 (a supervisor's batch) from 8 senders. Raw figures: the same number of job rows inserted one transaction each
(as a submit does), and the same log rows by ``executemany`` in batches of 500, one transaction each.

    python bench/api_load.py [--db sqlite,postgres] [--jobs 1000] [--clients 20] [--stored 100000]
                             [--log-lines 200000]

Prints one JSON line, the last line of stdout, with ``"name": "api_load"``.

Targets: submit >= 500/s (SQLite), describe p99 <= 10 ms, list p99 <= 50 ms, log ingestion >= 50k lines/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainforge.service.agent import hash_token
from trainforge.spec.contract import job_arn, model_artifacts_uri
from trainforge.spec.job import parse_create_request
from trainforge.storage import LocalObjectStore
from trainforge.store import open_job_store
from trainforge.store.tables import jobs, log_lines, transitions

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
T0 = 1_700_000_000.0
LOG_BATCH = 500  # a supervisor's largest batch (runtime/reporter.py MAX_LINES)
LOG_SENDERS = 8
TARGETS = {"submit_per_s": 500, "describe_p99_ms": 10, "list_p99_ms": 50, "log_lines_per_s": 50_000}


def body(name: str, source: str | None = None, i: int = 0) -> dict[str, Any]:
    """A CreateTrainingJob request of a script job."""
    hp = {"epochs": str(10 + i % 7), "lr": f"{0.001 * (1 + i % 5):g}"}
    if source:
        hp |= {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "HyperParameters": hp,
    }


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


def lat(samples: list[float]) -> dict[str, float]:
    """p50/p99/max of millisecond samples."""
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": pct(samples, 0.99), "max_ms": pct(samples, 1)}


# -- the database --------------------------------------------------------------------------------------------


def job_rows(
    start_id: int, n: int, prefix: str, *, agent_tokens: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` finished jobs (Completed, Failed, Stopped) and their transitions, ids from ``start_id``; the first
    ``agent_tokens`` carry the agent token ``bench-agent-<i>``."""
    rows, trans = [], []
    first = f"{prefix}{start_id:06d}"
    template = json.dumps(parse_create_request(body(first, None, 0)).to_wire(), separators=(",", ":"))
    for k in range(n):
        i, job_id = start_id + k, start_id + k
        name = f"{prefix}{i:06d}"
        t = T0 + i
        status, secondary, reason = (
            ("Failed", "Failed", "AlgorithmError: exit 1")
            if i % 10 == 7
            else ("Stopped", "Stopped", None)
            if i % 10 == 8
            else ("Completed", "Completed", None)
        )
        rows.append(
            {
                "id": job_id,
                "name": name,
                "arn": job_arn("local", "000000000000", name),
                "spec": template.replace(first, name),
                "status": status,
                "secondary_status": secondary,
                "status_message": None,
                "failure_reason": reason,
                "instance_type": "ml.m5.large",
                "instance_count": 1,
                "model_artifacts": model_artifacts_uri("s3://trainforge-default/", name),
                "creation_time": t,
                "last_modified_time": t + 5,
                "training_start_time": t + 1,
                "training_end_time": t + 5,
                "agent_token_hash": hash_token(f"bench-agent-{k}") if k < agent_tokens else None,
                "created_by": "loadtest",
                "attempt": 1,
            }
        )
        trans += [
            {"job_id": job_id, "status": "Starting", "start_time": t, "end_time": t + 1, "message": "Starting"},
            {"job_id": job_id, "status": "Training", "start_time": t + 1, "end_time": t + 5, "message": "Training"},
            {"job_id": job_id, "status": secondary, "start_time": t + 5, "end_time": None, "message": secondary},
        ]
    return rows, trans


def seed(url: str, n: int) -> dict[str, Any]:
    """Insert ``n`` finished jobs in one transaction (executemany); the raw bulk rate."""
    store = open_job_store(url)
    rows, trans = job_rows(1, n, "seeded-", agent_tokens=LOG_SENDERS)
    started = time.perf_counter()
    with store.engine.begin() as conn:
        conn.execute(insert(jobs), rows)
        conn.execute(insert(transitions), trans)
        if store.engine.dialect.name == "postgresql":
            for table in ("training_jobs", "secondary_status_transitions"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
    seconds = time.perf_counter() - started
    store.engine.dispose()
    return {"jobs": n, "seconds": round(seconds, 2), "jobs_per_s": round(n / seconds)}


def raw_job_inserts(url: str, n: int) -> float:
    """Jobs/s inserting ``n`` job rows (and a transition each) one transaction per job, sequentially: what a submit
    writes, without the API."""
    store = open_job_store(url)
    with store.engine.connect() as conn:
        start_id = int(conn.execute(select(func.max(jobs.c.id))).scalar_one()) + 1_000_000
    rows, trans = job_rows(start_id, n, "rawjob-")
    started = time.perf_counter()
    for row, first in zip(rows, trans[::3], strict=True):
        with store.engine.begin() as conn:
            conn.execute(insert(jobs), row)
            conn.execute(insert(transitions), first)
    seconds = time.perf_counter() - started
    with store.engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.name.like("rawjob-%")))
    store.engine.dispose()
    return n / seconds


def raw_log_inserts(url: str, n: int) -> float:
    """Lines/s inserting ``n`` log rows by executemany in batches of 500, one transaction per batch."""
    store = open_job_store(url)
    job_ids = list(range(LOG_SENDERS + 1, 2 * LOG_SENDERS + 1))
    batches = [
        [
            {
                "job_id": job_ids[b % len(job_ids)],
                "attempt": 1,
                "host": "algo-1",
                "seq": b * LOG_BATCH + k,
                "timestamp": T0 + k,
                "stream": "stdout",
                "message": line_text(b * LOG_BATCH + k),
            }
            for k in range(LOG_BATCH)
        ]
        for b in range(max(1, n // LOG_BATCH))
    ]
    started = time.perf_counter()
    for batch in batches:
        with store.engine.begin() as conn:
            conn.execute(insert(log_lines), batch)
    seconds = time.perf_counter() - started
    store.engine.dispose()
    return len(batches) * LOG_BATCH / seconds


def line_text(i: int) -> str:
    return f"epoch {i // 1000} step {i} loss={1.0 / (i + 1):.6f} lr=0.001 throughput=1234.5 samples/s"


# -- the server ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def server(home: Path, database_url: str | None) -> Iterator[tuple[str, str]]:
    """The real server on ``home`` with one vCPU of capacity; yields its url and admin token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env |= {
        "TRAINFORGE_HOME": str(home),
        "TRAINFORGE_LOCAL_CPUS": "1",
        "TRAINFORGE_LOCAL_CPU_OVERSUBSCRIPTION": "1",
        "TRAINFORGE_ENV_REUSE_SERVER": "auto",
        "TRAINFORGE_SYSTEM_METRICS_INTERVAL_SECONDS": "0",
        "TRAINFORGE_STOP_GRACE_SECONDS": "2",
    }
    if database_url:
        env["TRAINFORGE_DATABASE_URL"] = database_url
    log = open(home / "server.log", "ab")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen([sys.executable, "-m", "trainforge.server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                url = str(json.loads((home / "server.json").read_text())["url"])
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /health within 60 s")
            time.sleep(0.05)
        yield url, (home / "token").read_text().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        kill_supervisors_under(home)


def kill_supervisors_under(home: Path) -> None:
    """SIGKILL every supervisor whose job root is under ``home`` (one that launched before its stop was seen)."""
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = p.info.get("cmdline") or []
        if "trainforge.runtime.supervisor" in cmdline and cmdline[-1].startswith(str(home)):
            with contextlib.suppress(OSError, psutil.Error):
                os.kill(p.info["pid"], signal.SIGKILL)


def occupy(home: Path, client: httpx.Client) -> None:
    """Submit one long job and wait until it runs: this machine's one vCPU is taken, later jobs wait Pending."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"import time\nprint('holding the machine', flush=True)\ntime.sleep(3600)\n"
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    source = "s3://trainforge-default/blocker/source/sourcedir.tar.gz"
    LocalObjectStore(home / "storage").put_bytes(source, buf.getvalue())
    client.post("/v1/training-jobs", json=body("blocker", source)).raise_for_status()
    deadline = time.monotonic() + 120
    while client.get("/v1/training-jobs/blocker").json()["SecondaryStatus"] != "Training":
        if time.monotonic() > deadline:
            raise SystemExit("the blocker job did not reach Training within 120 s")
        time.sleep(0.2)


def release(client: httpx.Client) -> None:
    """Stop the long job and wait until it has ended (its supervisor and code exit)."""
    client.post("/v1/training-jobs/blocker/stop").raise_for_status()
    deadline = time.monotonic() + 60
    while client.get("/v1/training-jobs/blocker").json()["TrainingJobStatus"] != "Stopped":
        if time.monotonic() > deadline:
            raise SystemExit("the blocker job did not stop within 60 s")
        time.sleep(0.2)


def in_threads(n: int, work: Callable[[int], Any]) -> tuple[list[Any], float]:
    """Run ``work(i)`` for ``i < n`` in ``n`` threads started together; results and wall seconds."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def submit_load(url: str, token: str, jobs_n: int, clients: int) -> dict[str, Any]:
    """``jobs_n`` submits from ``clients`` threads; checks each accepted job is recorded exactly once."""
    per = [list(range(c, jobs_n, clients)) for c in range(clients)]
    headers = {"Authorization": f"Bearer {token}"}

    def work(c: int) -> tuple[list[str], list[float], list[str]]:
        accepted, samples, errors = [], [], []
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for i in per[c]:
                name = f"load-{i:05d}"
                t = time.perf_counter()
                try:
                    r = client.post("/v1/training-jobs", json=body(name, None, i))
                except httpx.HTTPError as exc:
                    errors.append(f"{name}: {exc!r}")
                    continue
                samples.append((time.perf_counter() - t) * 1000)
                if r.status_code == 200:
                    accepted.append(name)
                else:
                    errors.append(f"{name}: {r.status_code} {r.text[:200]}")
        return accepted, samples, errors

    results, seconds = in_threads(clients, work)
    accepted = sorted(n for a, _, _ in results for n in a)
    samples = [s for _, s, _ in results for s in s]
    errors = [e for _, _, e in results for e in e]
    listed: list[str] = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        token_ = None
        while True:
            params: dict[str, Any] = {"NameContains": "load-", "MaxResults": 100}
            if token_:
                params["NextToken"] = token_
            page = client.get("/v1/training-jobs", params=params).json()
            listed += [s["TrainingJobName"] for s in page["TrainingJobSummaries"]]
            token_ = page.get("NextToken")
            if not token_:
                break
    return {
        "jobs": jobs_n,
        "clients": clients,
        "accepted": len(accepted),
        "errors": errors[:5],
        "listed": len(listed),
        "recorded_exactly_once": sorted(listed) == accepted and len(accepted) == jobs_n,
        "seconds": round(seconds, 2),
        "per_s": round(jobs_n / seconds),
        **lat(samples),
    }


def recorded_in_sql(url: str) -> dict[str, int]:
    store = open_job_store(url)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(func.count(), func.count(func.distinct(jobs.c.name))).where(jobs.c.name.like("load-%"))
        ).one()
        pending = conn.execute(
            select(func.count()).where(jobs.c.name.like("load-%"), jobs.c.secondary_status == "Pending")
        ).scalar_one()
    store.engine.dispose()
    return {"rows": int(rows[0]), "distinct_names": int(rows[1]), "pending_at_count": int(pending)}


def stop_all(url: str, token: str, jobs_n: int, clients: int) -> dict[str, Any]:
    """Stop the submitted jobs (``clients`` threads); they were Pending, so they end Stopped."""
    headers = {"Authorization": f"Bearer {token}"}

    def work(c: int) -> int:
        ok = 0
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for i in range(c, jobs_n, clients):
                ok += client.post(f"/v1/training-jobs/load-{i:05d}/stop").status_code == 200
        return ok

    results, seconds = in_threads(clients, work)
    return {"stopped": sum(results), "per_s": round(jobs_n / seconds)}


def read_latency(url: str, token: str, stored: int, runs: int) -> dict[str, Any]:
    """Describe (random stored jobs) and list (first pages under several filters) on one kept-alive connection."""
    rng = random.Random(7)
    lists: list[dict[str, str | int]] = [
        {"MaxResults": 100},
        {"MaxResults": 100, "SortOrder": "Descending"},
        {"MaxResults": 100, "StatusEquals": "Failed"},
        {"MaxResults": 100, "NameContains": "seeded-0999"},
        {"MaxResults": 100, "SortBy": "Name", "SortOrder": "Descending"},
    ]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for _ in range(20):
            client.get(f"/v1/training-jobs/seeded-{rng.randint(1, stored):06d}").raise_for_status()
        describe = []
        for _ in range(runs):
            name = f"seeded-{rng.randint(1, stored):06d}"
            t = time.perf_counter()
            r = client.get(f"/v1/training-jobs/{name}")
            describe.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        listing: dict[str, list[float]] = {}
        for _ in range(max(1, runs // 20)):
            for params in lists:
                t = time.perf_counter()
                r = client.get("/v1/training-jobs", params=params)
                listing.setdefault(json.dumps(params), []).append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
    every = [s for v in listing.values() for s in v]
    return {
        "describe": {"runs": runs, **lat(describe)},
        "list": {"runs": len(every), **lat(every), "by_query": {k: lat(v) for k, v in listing.items()}},
    }


def log_load(url: str, lines_n: int) -> dict[str, Any]:
    """``lines_n`` lines through ``POST /v1/agent/training-jobs/{name}/logs`` in batches of 500 from 8 senders (each
    one seeded job with its agent token)."""
    batches = max(1, lines_n // (LOG_BATCH * LOG_SENDERS))

    def work(s: int) -> int:
        name = f"seeded-{s + 1:06d}"
        stored = 0
        headers = {"Authorization": f"Bearer bench-agent-{s}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for b in range(batches):
                lines = [
                    {"seq": b * LOG_BATCH + k, "timestamp": T0 + k, "message": line_text(b * LOG_BATCH + k)}
                    for k in range(LOG_BATCH)
                ]
                r = client.post(f"/v1/agent/training-jobs/{name}/logs", json={"host": "algo-1", "lines": lines})
                r.raise_for_status()
                stored += int(r.json()["inserted"])
        return stored

    results, seconds = in_threads(LOG_SENDERS, work)
    sent = batches * LOG_BATCH * LOG_SENDERS
    return {"lines": sent, "stored": sum(results), "seconds": round(seconds, 2), "lines_per_s": round(sent / seconds)}


def run_one(db: str, args: argparse.Namespace, tmp: Path, pg_url: str | None) -> dict[str, Any]:
    home = tmp / db
    home.mkdir()
    if db == "postgres":
        from tests.support.postgres import fresh_database

        assert pg_url is not None
        database_url: str | None = fresh_database(pg_url)
    else:
        database_url = None
    url_db = database_url or f"sqlite:///{home / 'trainforge.db'}"
    seeded = seed(url_db, args.stored)
    out: dict[str, Any] = {"database": db, "stored_jobs": args.stored, "raw_bulk_seed": seeded}
    with server(home, database_url) as (url, token):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            occupy(home, client)
        out["submit"] = submit_load(url, token, args.jobs, args.clients)
        out["submit"]["in_sql"] = recorded_in_sql(url_db)
        out["stop"] = stop_all(url, token, args.jobs, args.clients)
        out |= read_latency(url, token, args.stored, args.runs)
        out["logs"] = log_load(url, args.log_lines)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            release(client)
    out["raw_insert"] = {
        "jobs_one_tx_each_per_s": round(raw_job_inserts(url_db, args.jobs)),
        "log_lines_executemany_per_s": round(raw_log_inserts(url_db, args.log_lines)),
    }
    out["within_targets"] = {
        "submit_per_s": out["submit"]["per_s"] >= TARGETS["submit_per_s"],
        "describe_p99_ms": out["describe"]["p99_ms"] <= TARGETS["describe_p99_ms"],
        "list_p99_ms": out["list"]["p99_ms"] <= TARGETS["list_p99_ms"],
        "log_lines_per_s": out["logs"]["lines_per_s"] >= TARGETS["log_lines_per_s"],
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--log-lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2000, help="describe requests (list: a twentieth, per query)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tf-api-load-") as tmp_:
        tmp = Path(tmp_)
        os.chmod(tmp, 0o755)
        for db in args.db.split(","):
            if db == "postgres":
                from tests.support.postgres import postgres_cluster

                with postgres_cluster() as pg_url:
                    results.append(run_one(db, args, tmp, pg_url))
            else:
                results.append(run_one(db, args, tmp, None))
    print(json.dumps({"name": "api_load", "targets": TARGETS, "results": results}), flush=True)


if __name__ == "__main__":
    main()
