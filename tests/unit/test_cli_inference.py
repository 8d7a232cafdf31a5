"""``trainforge models|endpoints|transform-jobs`` against a real server (one per module) and real serving
processes: output shapes, filters and exit codes as the ``jobs`` commands have them.

The model's ``model.tar.gz`` does not exist, so the endpoint and the transform job fail fast (no environment to
build: the image is the server's own interpreter) with a reason naming the URI, which the commands then show.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge import inference_client as api
from trainforge.cli.main import main
from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError
from trainforge.local_server import connect
from trainforge.settings import Settings

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
MISSING = "s3://cli-bucket/no-such-model/model.tar.gz"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("cli-inference")
    with running_server(home, {"TRAINFORGE_STOP_GRACE_SECONDS": "2"}) as server, pytest.MonkeyPatch.context() as mp:
        for name in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_PORT", "TRAINFORGE_HOST"):
            mp.delenv(name, raising=False)
        mp.setenv("TRAINFORGE_HOME", str(home))
        yield server


@pytest.fixture(scope="module")
def client(srv: ServerProcess) -> Iterator[TrainforgeClient]:
    with connect(Settings(home=srv.home), start=False) as c:
        yield c


@pytest.fixture(scope="module")
def model(client: TrainforgeClient) -> str:
    api.create_model(
        client,
        {
            "ModelName": "cli-model",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": "trainforge/python:current", "ModelDataUrl": MISSING, "Environment": {}},
        },
    )
    return "cli-model"


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> Any:
    assert main([*argv, "--output", "json"]) == code
    return json.loads(capsys.readouterr().out)


def run_text(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> str:
    assert main(argv) == code
    return capsys.readouterr().out


def test_models_list_and_describe(srv: ServerProcess, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    listed = run_json(["models", "list"], capsys)
    assert [m["ModelName"] for m in listed["Models"]] == [model]
    assert run_json(["models", "list", "--name-contains", "nothing-like-it"], capsys) == {"Models": []}
    text = run_text(["models", "list"], capsys)
    assert text.splitlines()[0].split() == ["NAME", "CREATED"] and model in text

    described = run_json(["models", "describe", model], capsys)
    assert described["PrimaryContainer"]["ModelDataUrl"] == MISSING
    text = run_text(["models", "describe", model], capsys)
    assert "Image:" in text and "trainforge/python:current" in text and MISSING in text

    assert main(["models", "describe", "no-such-model"]) == 3
    assert capsys.readouterr().err.startswith("error: ")


def test_endpoint_list_describe_logs_delete(
    srv: ServerProcess, client: TrainforgeClient, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    variant = {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.t2.medium"}
    api.create_endpoint_config(
        client,
        {"EndpointConfigName": "cli-config", "ProductionVariants": [{**variant, "InitialInstanceCount": 1}]},
    )
    api.create_endpoint(client, {"EndpointName": "cli-ep", "EndpointConfigName": "cli-config"})
    wait_for(
        lambda: api.describe_endpoint(client, "cli-ep")["EndpointStatus"] == "Failed",
        timeout=60,
        what="the endpoint without model data to fail",
    )

    listed = run_json(["endpoints", "list"], capsys)
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed["Endpoints"]] == [("cli-ep", "Failed")]
    assert str(listed["Endpoints"][0]["CreationTime"]).endswith("+00:00")  # ISO-8601, as the AWS CLI prints
    assert run_json(["endpoints", "list", "--status", "InService"], capsys) == {"Endpoints": []}
    assert "cli-ep" in run_text(["endpoints", "list", "--status", "Failed"], capsys)

    described = run_json(["endpoints", "describe", "cli-ep"], capsys)
    assert described["EndpointConfigName"] == "cli-config" and MISSING in described["FailureReason"]
    text = run_text(["endpoints", "describe", "cli-ep"], capsys)
    for label in ("Status:", "Failed", "Failure reason:", "Endpoint config:", "cli-config", "Model:", model):
        assert label in text

    # --follow returns by itself: the endpoint is Failed.
    lines = run_text(["endpoints", "logs", "cli-ep", "--follow"], capsys).splitlines()
    events = [
        json.loads(line) for line in (run_text(["endpoints", "logs", "cli-ep", "-o", "json"], capsys)).splitlines()
    ]
    assert len(lines) == len(events) and all(e["type"] == "log" for e in events)

    assert run_json(["endpoints", "delete", "cli-ep"], capsys) == {
        "EndpointName": "cli-ep",
        "EndpointStatus": "Deleting",
    }

    def gone() -> bool:
        try:
            api.describe_endpoint(client, "cli-ep")
        except NotFoundError:
            return True
        return False

    wait_for(gone, timeout=60, what="the deleted endpoint to be gone")
    assert main(["endpoints", "describe", "cli-ep"]) == 3
    assert main(["endpoints", "delete", "cli-ep"]) == 3
    capsys.readouterr()


def test_transform_job_list_describe_logs_stop(
    srv: ServerProcess, client: TrainforgeClient, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api.create_transform_job(
        client,
        {
            "TransformJobName": "cli-transform",
            "ModelName": model,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://cli-bucket/batch/"}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": "s3://cli-bucket/preds/"},
            "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        },
    )
    wait_for(
        lambda: api.describe_transform_job(client, "cli-transform")["TransformJobStatus"] in ("Failed", "Stopped"),
        timeout=60,
        what="the transform job without model data to end",
    )

    listed = run_json(["transform-jobs", "list"], capsys)["TransformJobSummaries"]
    assert [(j["TransformJobName"], j["TransformJobStatus"]) for j in listed] == [("cli-transform", "Failed")]
    assert run_json(["transform-jobs", "list", "--status", "Completed"], capsys) == {"TransformJobSummaries": []}
    text = run_text(["transform-jobs", "list"], capsys)
    assert text.splitlines()[0].split() == ["NAME", "STATUS", "CREATED", "ENDED", "FAILURE"]

    described = run_json(["transform-jobs", "describe", "cli-transform"], capsys)
    assert str(described["TransformEndTime"]).endswith("+00:00")
    assert described["ModelName"] == model and MISSING in described["FailureReason"]
    text = run_text(["transform-jobs", "describe", "cli-transform"], capsys)
    for label in ("Status:", "Failed", "Failure reason:", "Input:", "s3://cli-bucket/batch/", "1 x ml.m5.large"):
        assert label in text

    run_text(["transform-jobs", "logs", "cli-transform", "--follow"], capsys)  # returns: the job has ended
    assert main(["transform-jobs", "stop", "cli-transform"]) == 2  # an ended job cannot be stopped
    assert main(["transform-jobs", "describe", "no-such-job"]) == 3
    assert main(["transform-jobs", "stop", "no-such-job"]) == 3
    assert capsys.readouterr().err.startswith("error: ")


def test_unknown_subcommands_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["endpoints"]) == 2
    assert main(["transform-jobs", "list", "--status", "Sleeping"]) == 2
    capsys.readouterr()
