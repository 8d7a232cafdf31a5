"""The HTTP client against a real server process: error classes, and a log follow that survives a restart."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess
from trainforge.client import TrainforgeClient
from trainforge.errors import AuthError, ConflictError, NotFoundError, ServerUnavailableError, ValidationError
from trainforge.estimator import Estimator
from trainforge.session import Session
from trainforge.settings import Settings

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
N_LINES = 400
CHATTY = f"""
import time
for i in range({N_LINES}):
    print(f"line {{i}}", flush=True)
    if i % 50 == 0:
        time.sleep(0.2)
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_body(name: str, image: str = "trainforge/python:current") -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def test_an_unreachable_server_says_how_to_start_one() -> None:
    client = TrainforgeClient(f"http://127.0.0.1:{closed_port()}", "token", reconnect_for_s=0.3)
    with pytest.raises(ServerUnavailableError, match="trainforge server start"):
        client.describe_training_job("x")
    with pytest.raises(ServerUnavailableError, match="TRAINFORGE_ENDPOINT"):
        list(client.follow_logs("x"))


def test_server_errors_come_back_as_their_classes(server: ServerProcess) -> None:
    with TrainforgeClient(server.url, server.token) as client:
        assert client.health()["status"] == "ok"
        config = client.get_config()
        assert config["default_bucket"] == "trainforge-default" and config["storage"]["kind"] == "local"
        with pytest.raises(NotFoundError):
            client.describe_training_job("no-such-job")
        with pytest.raises(NotFoundError):
            client.stop_training_job("no-such-job")
        with pytest.raises(ValidationError) as info:
            client.create_training_job(job_body("bad_name"))
        assert info.value.field == "TrainingJobName"
        body = job_body("taken")
        assert client.create_training_job(body)["TrainingJobArn"].endswith("training-job/taken")
        body["AlgorithmSpecification"] = {"TrainingImage": "trainforge/python:3.11", "TrainingInputMode": "File"}
        with pytest.raises(ConflictError):
            client.create_training_job(body)
        page = client.list_training_jobs(name_contains="taken", max_results=5)
        assert [s["TrainingJobName"] for s in page["TrainingJobSummaries"]] == ["taken"]
        assert [s["TrainingJobName"] for s in client.iter_training_jobs(max_results=1)] == ["taken"]
    with TrainforgeClient(server.url, "wrong-token") as client, pytest.raises(AuthError):
        client.list_training_jobs()


def test_follow_logs_survives_a_server_restart_without_losing_or_doubling_a_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(CHATTY)
    session = Session(settings=Settings(home=server.home))
    est = Estimator(
        "trainforge/python:current",
        role=ROLE,
        instance_type="local",
        instance_count=1,
        entry_point="train.py",
        source_dir=str(src),
        sagemaker_session=session,
    )
    est.fit(wait=False)
    assert est.latest_training_job is not None
    client = TrainforgeClient(server.url, server.token, reconnect_for_s=60)
    lines: list[str] = []
    kinds: list[str] = []
    restarted = False
    for event in client.follow_logs(est.latest_training_job.name):
        kinds.append(event["type"])
        if event["type"] == "log" and event["message"].startswith("line "):
            lines.append(event["message"])
            if len(lines) == 60 and not restarted:
                server.kill(signal.SIGKILL)
                server.start()
                restarted = True
    assert restarted
    assert lines == [f"line {i}" for i in range(N_LINES)]
    assert kinds[0] == "status" and kinds[-1] == "end"
