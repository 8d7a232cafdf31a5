"""End to end: what a new user sees of stops, logs, describe output and artifacts, against one real server."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.estimator import Estimator
from trainforge.settings import Settings

STATUS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+) - ")

LOOPING = """
    import time
    print("looping", flush=True)
    while True:
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for every job of this module."""
    home = tmp_path_factory.mktemp("fidelity-home")
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    srv = ServerProcess(home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(home)


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def source(root: Path, script: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(textwrap.dedent(script))
    return root


@pytest.fixture(scope="module")
def stopped(session: trainforge.Session, tmp_path_factory: pytest.TempPathFactory) -> Estimator:
    """A looping job, stopped by its user while it trains; its model dir stays empty."""
    est = script_estimator(session, source(tmp_path_factory.mktemp("looping"), LOOPING))
    est.fit(wait=False)
    job = est.latest_training_job
    assert job is not None
    wait_for(
        lambda: any(e["message"] == "looping" for e in session.client.logs(job.name)["events"]),
        timeout=60,
        what="the script to start",
    )
    job.stop()
    wait_for(lambda: job.describe()["TrainingJobStatus"] == "Stopped", timeout=60, what="Stopped")
    return est


def printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What was printed since the last call, one entry per line: a status line as ``<Status>``, else the line."""
    out = capsys.readouterr().out.splitlines()
    return [f"<{m.group(1)}>" if (m := STATUS_LINE.match(line)) else line for line in out]


def test_a_stop_records_stopping_once(
    session: trainforge.Session, stopped: Estimator, capsys: pytest.CaptureFixture[str]
) -> None:
    name = stopped.latest_training_job.name  # type: ignore[union-attr]
    statuses = [t["Status"] for t in session.describe_training_job(name)["SecondaryStatusTransitions"]]
    assert statuses.count("Stopping") == 1, statuses
    assert statuses[-2:] == ["Stopping", "Stopped"]
    capsys.readouterr()
    session.logs_for_job(name, wait=True)
    lines = printed(capsys)
    assert lines.count("<Stopping>") == 1, lines
    assert lines.count("<Stopped>") == 1, lines
