"""CLI commands against a real server process: output shapes and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.cli.main import main
from trainforge.estimator import Estimator
from trainforge.session import Session
from trainforge.settings import Settings

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"


@pytest.fixture
def cli_env(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    for name in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_PORT", "TRAINFORGE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(server.home))
    return server


def submit(server: ServerProcess, tmp_path: Path, script: str, name: str) -> str:
    src = tmp_path / name
    src.mkdir()
    (src / "train.py").write_text(script)
    est = Estimator(
        "trainforge/python:current",
        role=ROLE,
        instance_type="local",
        instance_count=1,
        entry_point="train.py",
        source_dir=str(src),
        sagemaker_session=Session(settings=Settings(home=server.home)),
    )
    est.fit(wait=False, job_name=name)
    return name


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> dict[str, object]:
    assert main([*argv, "--output", "json"]) == code
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_status_describe_list_logs_wait(
    cli_env: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_json(["server", "status"], capsys)
    assert (status["url"], status["pid"], status["running"]) == (cli_env.url, cli_env.info["pid"], True)
    assert "started" not in status  # whether a call started the server: `status` never starts one

    assert main(["jobs", "describe", "no-such-job"]) == 3
    assert capsys.readouterr().err.startswith("error: ")

    ok = submit(cli_env, tmp_path, "print('hello from the job')\n", "cli-ok")
    bad = submit(cli_env, tmp_path, "raise SystemExit('broken on purpose')\n", "cli-bad")

    done = run_json(["jobs", "wait", ok, "--poll", "0.2"], capsys)
    assert done["TrainingJobStatus"] == "Completed" and str(done["ModelArtifacts"]).endswith(
        "/cli-ok/output/model.tar.gz"
    )
    failed = run_json(["jobs", "wait", bad, "--poll", "0.2"], capsys, code=1)
    assert failed["TrainingJobStatus"] == "Failed" and "broken on purpose" in str(failed["FailureReason"])

    assert main(["jobs", "wait", bad]) == 1
    assert "Failed (Failed). Reason: " in capsys.readouterr().out

    described = run_json(["jobs", "describe", ok], capsys)
    assert described["TrainingJobName"] == ok and described["TrainingJobStatus"] == "Completed"
    assert main(["jobs", "describe", ok]) == 0
    text = capsys.readouterr().out
    assert "Status:" in text and "Completed (Completed)" in text and "Status transitions:" in text

    listed = run_json(["jobs", "list"], capsys)
    names = [s["TrainingJobName"] for s in listed["TrainingJobSummaries"]]  # type: ignore[attr-defined]
    assert names == [bad, ok]
    assert main(["jobs", "list", "--sort-order", "Ascending", "--max-results", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "SECONDARY", "CREATED", "ENDED", "OWNER"]
    assert table[1].split()[:3] == [ok, "Completed", "Completed"]
    assert table[2].startswith("(more: --next-token ")

    assert main(["jobs", "logs", ok]) == 0
    assert "hello from the job" in capsys.readouterr().out.splitlines()
    assert main(["jobs", "logs", ok, "--follow", "--output", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["type"] == "status" and events[-1] == {
        "type": "end",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
    }
    assert main(["jobs", "logs", ok, "-f"]) == 0
    followed = capsys.readouterr().out
    assert "hello from the job" in followed and "Completed - Training job completed" in followed


def test_stop_and_wait_timeout(cli_env: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = submit(cli_env, tmp_path, "import time\nprint('looping', flush=True)\ntime.sleep(300)\n", "cli-loop")
    wait_for(
        lambda: (
            Session(settings=Settings(home=cli_env.home)).describe_training_job(name)["SecondaryStatus"] == "Training"
        ),
        what="Training",
    )
    assert main(["jobs", "wait", name, "--timeout", "0.3", "--poll", "0.1"]) == 124
    assert "still InProgress" in capsys.readouterr().err
    stopped = run_json(["jobs", "stop", name], capsys)
    assert stopped["TrainingJobStatus"] in ("Stopping", "Stopped")
    assert main(["jobs", "wait", name, "--poll", "0.2"]) == 1
    assert "Stopped" in capsys.readouterr().out
    assert main(["jobs", "stop", name]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_server_start_status_stop_as_a_user_runs_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["TRAINFORGE_HOME"] = str(tmp_path / "home")

    def tf(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trainforge.cli", *argv], env=env, capture_output=True, text=True, timeout=60
        )

    try:
        started = tf("server", "start", "--output", "json")
        assert started.returncode == 0, started.stderr
        info = json.loads(started.stdout)
        assert info["started"] is True
        status = tf("server", "status", "--output", "json")
        assert status.returncode == 0
        assert {k: json.loads(status.stdout)[k] for k in ("url", "pid")} == {"url": info["url"], "pid": info["pid"]}
        again = tf("server", "start")
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        stopped = tf("server", "stop")
    assert stopped.returncode == 0 and f"pid {info['pid']}" in stopped.stdout
    assert tf("server", "status").returncode == 4
