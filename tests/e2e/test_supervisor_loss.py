"""Supervisor reporting survives what dies: a long server outage under a chatty job keeps the supervisor's memory
bounded and loses no line; a supervisor SIGKILLed while the server is down loses none of the lines it had spooled,
its job ends Failed, and the code it left running (unsandboxed) is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import trainforge
from tests.e2e.test_resilience import all_lines
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.settings import Settings

CHATTY_LINES = 150_000
PAD = "x" * 100

# Waits for the test's "go" (written once the server is down), then prints CHATTY_LINES lines.
CHATTY = f"""
    import os, time
    go = os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "go")
    print("waiting", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    for i in range({CHATTY_LINES}):
        print(f"line {{i}} {PAD}")
"""

# Prints numbered lines until its output breaks (its supervisor died), then goes on "training" silently.
ENDLESS = """
    import os, time
    with open(os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "pid"), "w") as out:
        out.write(str(os.getpid()))
    i = 0
    try:
        while True:
            print(f"line {i}", flush=True)
            i += 1
            if i % 50 == 0:
                time.sleep(0.02)
    except OSError:
        pass
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for the module, with the user code unsandboxed (the case where code outlives its supervisor);
    the tests SIGKILL and restart it on the same home."""
    home = tmp_path_factory.mktemp("tfhome")
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_SANDBOX": "off"}
    with running_server(home, env) as srv:
        yield srv


def _session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def _supervisor(root: Path) -> psutil.Process:
    """The supervisor process of the job root ``root`` (the one whose command line names its supervisor.json)."""
    cfg = str(root / "supervisor.json")
    for proc in psutil.process_iter(["cmdline"]):
        if cfg in (proc.info["cmdline"] or []) and "--resume" not in (proc.info["cmdline"] or []):
            return proc
    raise AssertionError(f"no supervisor runs for {root}")


def _tail(path: Path, size: int = 1 << 16) -> str:
    """The last ``size`` bytes of ``path`` as text."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", errors="replace")


def _numbered(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["message"].startswith("line ")]


def test_a_long_outage_under_a_chatty_job_keeps_memory_bounded_and_loses_no_line(
    server: ServerProcess, make_source: Any
) -> None:
    session = _session(server)
    est = script_estimator(session, make_source({"train.py": CHATTY}))
    est.fit(wait=False)
    assert est.latest_training_job is not None
    name = est.latest_training_job.name
    root = server.home / "jobs" / name / "algo-1"
    wait_for(
        lambda: any(e["message"] == "waiting" for e in session.client.logs(name, limit=1000)["events"]),
        timeout=60,
        what="the job to start",
    )
    server.kill(signal.SIGKILL)
    supervisor = _supervisor(root)
    before = supervisor.memory_info().rss
    (root / "opt" / "ml" / "go").touch()
    last = f"line {CHATTY_LINES - 1} {PAD}\n"
    wait_for(lambda: last in _tail(root / "job.log"), timeout=300, interval=0.5, what="every line")
    after = supervisor.memory_info().rss
    spooled = sum(f.stat().st_size for f in (root / "spool").glob("*.jsonl"))
    print(
        f"supervisor RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB over {CHATTY_LINES} lines "
        f"({spooled / 2**20:.1f} MiB spooled) while the server was down"
    )
    # Holding the lines in memory would take far more than the lines' own ~{CHATTY_LINES * 130 / 2**20:.0f} MiB.
    assert after - before < 24 * 2**20
    server.start()
    session = _session(server)
    wait_for(
        lambda: session.describe_training_job(name)["TrainingJobStatus"] == "Completed",
        timeout=180,
        interval=0.5,
        what="the job to complete after the outage",
    )
    events = all_lines(session, name)
    assert _numbered(events) == [f"line {i} {PAD}" for i in range(CHATTY_LINES)]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(seqs)))
    wait_for(lambda: not (root / "spool").exists(), what="the delivered spool to be removed")


def test_a_supervisor_killed_while_the_server_is_down_loses_no_spooled_line(
    server: ServerProcess, make_source: Any, tmp_path: Path
) -> None:
    session = _session(server)
    est = script_estimator(session, make_source({"train.py": ENDLESS}))
    est.fit(wait=False)
    assert est.latest_training_job is not None
    name = est.latest_training_job.name
    root = server.home / "jobs" / name / "algo-1"
    wait_for(lambda: len(session.client.logs(name, limit=1000)["events"]) > 200, timeout=60, what="some lines")
    server.kill(signal.SIGKILL)

    def spooled_only() -> bool:
        return (root / "job.log").read_text().count("\nline ") > 3000

    wait_for(spooled_only, timeout=60, what="lines only the spool holds")
    _supervisor(root).kill()
    code = psutil.Process(int((root / "opt" / "ml" / "pid").read_text()))
    assert code.is_running() and code.status() != psutil.STATUS_ZOMBIE  # the unsandboxed code outlived it
    mirrored = _numbered([{"message": m} for m in (root / "job.log").read_text().splitlines()])
    # An operator (or a node agent) resumes the dead supervisor; the scheduler salvages its spool too.
    with open(tmp_path / "resume.log", "wb") as out:
        resume = subprocess.Popen(
            [sys.executable, "-m", "trainforge.runtime.supervisor", "--resume", str(root / "supervisor.json")],
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        server.start()
        session = _session(server)
        described = wait_for(
            lambda: (lambda d: d if d["TrainingJobStatus"] == "Failed" else None)(session.describe_training_job(name)),
            timeout=60,
            what="the job to fail",
        )
        assert resume.wait(timeout=60) == 0, (tmp_path / "resume.log").read_text()
    finally:
        if resume.poll() is None:
            resume.kill()
    assert "supervisor" in described["FailureReason"]
    history = " ".join(t.get("StatusMessage", "") for t in described["SecondaryStatusTransitions"])
    assert "algo-1" in described["FailureReason"] + history
    stored = _numbered(all_lines(session, name))
    assert stored == [f"line {i}" for i in range(len(stored))]  # in order, each once
    assert len(stored) >= len(mirrored) > 3000  # every line the supervisor had taken in
    wait_for(lambda: not code.is_running() or code.status() == psutil.STATUS_ZOMBIE, what="the orphaned code to die")
    assert (root / "result.json").exists()
