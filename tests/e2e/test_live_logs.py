"""Live logs end to end: a line printed by a running job reaches ``client.follow_logs`` and ``trainforge jobs logs
--follow`` while the job still runs.

The job's script prints a line, then waits for a file the test creates only after it saw that line; so the line
can only have been seen while the job was running, with no timing in the test.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.support.faults import script_job, upload_source
from tests.support.server import ServerProcess
from trainforge.client import TrainforgeClient

SCRIPT = """import os, time
print("live line one", flush=True)
release = os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "release")
deadline = time.monotonic() + 120
while not os.path.exists(release):
    if time.monotonic() > deadline:
        raise SystemExit("the test never released the job")
    time.sleep(0.02)
print("after release", flush=True)
"""


def submit(server: ServerProcess, name: str) -> Path:
    """Submit the holding script as job ``name``; the file that releases it."""
    body = script_job(name, upload_source(server.home, name, SCRIPT))
    with server.client() as c:
        assert c.post("/v1/training-jobs", json=body).status_code == 200
    return server.home / "jobs" / name / "algo-1" / "opt" / "ml" / "release"


def test_follow_logs_yields_a_line_while_the_job_runs(server: ServerProcess) -> None:
    release = submit(server, "live-follow")
    seen: list[str] = []
    with TrainforgeClient(server.url, server.token) as client:
        for event in client.follow_logs("live-follow"):
            if event["type"] == "log":
                seen.append(event["message"])
                if event["message"] == "live line one":
                    assert client.describe_training_job("live-follow")["TrainingJobStatus"] == "InProgress"
                    release.touch()
            last = event
    mine = [m for m in seen if m in ("live line one", "after release")]
    assert mine == ["live line one", "after release"], seen
    assert last == {"type": "end", "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}


def test_cli_follow_prints_a_line_while_the_job_runs(server: ServerProcess) -> None:
    release = submit(server, "live-cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainforge.cli", "jobs", "logs", "live-cli", "--follow"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a CLI that never prints must fail the test, not hang it
    watchdog.start()
    try:
        assert proc.stdout is not None
        before: list[str] = []
        for text in proc.stdout:  # the job waits for the release: this line came while it ran
            before.append(text)
            if text.strip() == "live line one":
                release.touch()
                break
        out, err = proc.communicate()
    finally:
        watchdog.cancel()
    assert proc.returncode == 0, err
    assert "live line one\n" in before, "".join(before) + err
    assert "after release" in out and "Completed" in out, out
