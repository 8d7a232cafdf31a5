"""``trainforge server check`` over stores made by real jobs: clean after a completed, a failed and a stopped
job; each corruption of a copy (a log line deleted, an illegal status step, a model.tar.gz deleted or cut
short) is reported on its own line with exit code 1. Once on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import trainforge
from tests.support.estimators import script_estimator
from tests.support.postgres import fresh_database
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.settings import Settings

TRAIN = """
    import os, sys, time
    mode = sys.argv[sys.argv.index("--mode") + 1]
    for i in range(40):
        print(f"line {i}", flush=True)
    if mode == "fail":
        sys.exit(3)
    if mode == "sleep":
        print("sleeping", flush=True)
        time.sleep(600)
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
        f.write("weights " * 1000)
"""


def check(home: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``trainforge server check`` for ``home`` (or the database ``env`` names)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    base["TRAINFORGE_HOME"] = str(home)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "server", "check", *extra],
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_jobs(session: trainforge.Session, source: Path) -> dict[str, str]:
    """One completed, one failed and one stopped job; their names by outcome."""
    names: dict[str, str] = {}
    for mode in ("ok", "fail", "sleep"):
        est = script_estimator(session, source, hyperparameters={"mode": mode})
        est.fit(wait=False)
        names[mode] = est.latest_training_job.name
    wait_for(
        lambda: "sleeping" in [e["message"] for e in session.client.logs(names["sleep"], limit=1000)["events"]],
        timeout=90,
        what="the sleeping job to sleep",
    )
    session.client.stop_training_job(names["sleep"])
    for name in names.values():
        wait_for(
            lambda n=name: session.describe_training_job(n)["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"),
            timeout=90,
            what=f"{name} to end",
        )
    assert [session.describe_training_job(n)["TrainingJobStatus"] for n in names.values()] == [
        "Completed",
        "Failed",
        "Stopped",
    ]
    return names


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A home whose server ran three jobs to their ends and was then stopped."""
    home = tmp_path_factory.mktemp("checkhome") / "tfhome"
    source = tmp_path_factory.mktemp("checksrc")
    (source / "train.py").write_text("\n".join(line[4:] for line in TRAIN.splitlines()))
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    server = ServerProcess(home, extra_env=env).start()
    try:
        names = run_jobs(trainforge.Session(settings=Settings(home=home)), source)
        # Checked while the server runs, too.
        live = check(home)
        assert live.returncode == 0, live.stdout + live.stderr
    finally:
        server.stop()
        kill_supervisors(home)
    yield home, names


def copy_home(home: Path, dest: Path) -> Path:
    """A copy of the stopped server's home (the database through SQLite's backup API)."""
    shutil.copytree(home, dest, ignore=shutil.ignore_patterns("trainforge.db*", "jobs"))
    with sqlite3.connect(home / "trainforge.db") as src, sqlite3.connect(dest / "trainforge.db") as dst:
        src.backup(dst)
    return dest


def sql(home: Path, statement: str, *params: Any) -> None:
    with sqlite3.connect(home / "trainforge.db") as conn:
        conn.execute(statement, params)


def model_path(home: Path, name: str) -> Path:
    return home / "storage" / "trainforge-default" / name / "output" / "model.tar.gz"


def problems(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if not line.startswith("trainforge server check:")]


def test_a_store_after_completed_failed_and_stopped_jobs_is_clean(finished: tuple[Path, dict[str, str]]) -> None:
    home, _ = finished
    proc = check(home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checked 3 job(s)" in proc.stdout and "1 model artifact(s) [read]" in proc.stdout
    assert proc.stdout.strip().endswith(": clean")
    data = json.loads(check(home, "--output", "json").stdout)
    assert data["clean"] is True and data["problems"] == [] and data["log_lines"] > 120


def test_each_corruption_is_reported_with_exit_1(finished: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    home, names = finished
    bad = copy_home(home, tmp_path / "bad")
    ok, failed = names["ok"], names["fail"]
    # A log line deleted in the middle of the completed job's algo-1 lines.
    sql(
        bad,
        "DELETE FROM log_lines WHERE seq = 7 AND host = 'algo-1' "
        "AND job_id = (SELECT id FROM training_jobs WHERE name = ?)",
        ok,
    )
    # An illegal step: the failed job moves on to Training after Failed.
    sql(
        bad,
        "INSERT INTO secondary_status_transitions (job_id, status, start_time, end_time, message, log_cursor) "
        "SELECT id, 'Training', ?, NULL, 'forged', 0 FROM training_jobs WHERE name = ?",
        time.time(),
        failed,
    )
    model_path(bad, ok).unlink()
    proc = check(bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = problems(proc)
    assert any(
        line.startswith(f"{ok}: [logs]") and "1 log line(s) missing" in line and "seq 7)" in line for line in lines
    ), lines
    assert any(line.startswith(f"{failed}: [history]") and "Failed -> Training" in line for line in lines), lines
    assert any(line.startswith(f"{failed}: [job]") and "not the last status step" in line for line in lines), lines
    assert any(line.startswith(f"{ok}: [artifacts]") and "is missing" in line for line in lines), lines
    assert all("(fix: " in line for line in lines)
    assert "4 problem(s)" in proc.stdout
    data = json.loads(check(bad, "--output", "json").stdout)
    assert data["clean"] is False and {p["rule"] for p in data["problems"]} == {"logs", "history", "job", "artifacts"}

    # A model.tar.gz cut short is as bad as a missing one; --artifacts exists does not read it.
    short = copy_home(home, tmp_path / "short")
    path = model_path(short, ok)
    data_bytes = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data_bytes[: len(data_bytes) // 2])
    proc = check(short)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert [line for line in problems(proc) if "not a readable tar.gz" in line and line.startswith(ok)], proc.stdout
    assert check(short, "--artifacts", "exists").returncode == 0


def test_the_check_on_postgresql(postgres_url: str, tf_home: Path, envs_dir: Path, make_source: Any) -> None:
    url = fresh_database(postgres_url)
    env = {"TRAINFORGE_DATABASE_URL": url, "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    server = ServerProcess(tf_home, extra_env=env).start()
    try:
        session = trainforge.Session(settings=Settings(home=tf_home))
        est = script_estimator(session, make_source({"train.py": TRAIN}), hyperparameters={"mode": "ok"})
        est.fit(wait=True, logs=False)
        name = est.latest_training_job.name
        assert check(tf_home, env=env).returncode == 0
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "DELETE FROM log_lines WHERE seq IN (3, 4) AND job_id = "
                    "(SELECT id FROM training_jobs WHERE name = :n)"
                ),
                {"n": name},
            )
        engine.dispose()
        proc = check(tf_home, env=env)
        assert proc.returncode == 1
        assert [line for line in problems(proc) if line.startswith(f"{name}: [logs]") and "seq 3-4)" in line]
    finally:
        server.kill()
        kill_supervisors(tf_home)
