"""The REST API against the real app (in-process ASGI, real SQLite): shapes, auth and bad input."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from trainforge.server.app import create_app
from trainforge.settings import Settings

BODY: dict[str, Any] = {
    "TrainingJobName": "api-job",
    "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
    "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    "HyperParameters": {"epochs": "10", "name": '"abc"', "cfg": '{"a": 1}'},
    "ProfilerConfig": {"DisableProfiler": True},
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(home=tmp_path / "home"), start_scheduler=False)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {app.state.token}"
        yield c


def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"code", "message", "details"}
    return err


def test_create_describe_list_stop(client: TestClient) -> None:
    assert client.post("/v1/training-jobs", json=BODY).json() == {
        "TrainingJobArn": "arn:aws:sagemaker:local:000000000000:training-job/api-job"
    }
    d = client.get("/v1/training-jobs/api-job").json()
    assert d["HyperParameters"] == BODY["HyperParameters"]
    assert d["TrainingJobStatus"] == "InProgress" and d["SecondaryStatus"] == "Starting"
    assert d["ModelArtifacts"]["S3ModelArtifacts"] == "s3://trainforge-default/api-job/output/model.tar.gz"
    assert d["OutputDataConfig"]["KmsKeyId"] == "" and d["ResourceConfig"]["InstanceCount"] == 1
    assert d["SecondaryStatusTransitions"][0]["StatusMessage"] == "Starting the training job"
    listed = client.get("/v1/training-jobs", params={"NameContains": "api"}).json()
    assert [s["TrainingJobName"] for s in listed["TrainingJobSummaries"]] == ["api-job"]
    assert client.post("/v1/training-jobs/api-job/stop").json() == {}
    d = client.get("/v1/training-jobs/api-job").json()
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Stopped", "Stopped")
    err = error(client.post("/v1/training-jobs/api-job/stop"), 400)
    assert "already Stopped" in err["message"]


def test_resubmitting_the_same_spec_is_safe_but_a_different_one_conflicts(client: TestClient) -> None:
    assert client.post("/v1/training-jobs", json=BODY).status_code == 200
    assert client.post("/v1/training-jobs", json=BODY).status_code == 200
    other = copy.deepcopy(BODY)
    other["HyperParameters"]["epochs"] = "11"
    err = error(client.post("/v1/training-jobs", json=other), 409)
    assert err["code"] == "ResourceInUse" and "already exists" in err["message"]


def test_auth(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    token = client.headers.pop("Authorization")
    assert error(client.get("/v1/training-jobs"), 401)["code"] == "AccessDenied"
    assert error(client.get("/v1/training-jobs", headers={"Authorization": "Bearer wrong"}), 401)
    client.headers["Authorization"] = token
    assert client.get("/v1/training-jobs").status_code == 200
    assert error(client.post("/v1/agent/training-jobs/api-job/heartbeat", json={}), 401)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"TrainingJobName": "bad_name"}, "TrainingJobName"),
        ({"HyperParameters": {f"k{i}": "v" for i in range(101)}}, "HyperParameters"),
        ({"HyperParameters": {"k": "v" * 2501}}, "HyperParameters"),
        ({"ResourceConfig": {"InstanceType": "ml.m5.larg"}}, "ResourceConfig.InstanceType"),
        ({"ResourceConfig": {"InstanceType": "ml.p3.2xlarge"}}, "ResourceConfig.InstanceType"),
        ({"StoppingCondition": {"MaxRuntimeInSeconds": 0}}, "StoppingCondition.MaxRuntimeInSeconds"),
        ({"Environment": {"bad-key": "x"}}, "Environment"),
        ({"Bogus": True}, "Bogus"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client: TestClient, change: dict[str, Any], field: str) -> None:
    body = {**copy.deepcopy(BODY), **change}
    err = error(client.post("/v1/training-jobs", json=body), 400)
    assert err["code"] == "ValidationException"
    assert err["details"]["field"] == field, err
    assert err["message"].startswith(field)


def test_unknown_instance_type_suggests_close_matches(client: TestClient) -> None:
    body = {**BODY, "ResourceConfig": {"InstanceType": "ml.m5.larg"}}
    err = error(client.post("/v1/training-jobs", json=body), 400)
    assert "ml.m5.large" in err["details"]["suggestions"]


def test_malformed_json_is_a_400(client: TestClient) -> None:
    resp = client.post(
        "/v1/training-jobs", content=b'{"TrainingJobName": ', headers={"content-type": "application/json"}
    )
    err = error(resp, 400)
    assert "not valid JSON" in err["message"] and err["details"]["field"] == "(body)"
    err = error(client.post("/v1/training-jobs", content=b"[1, 2]", headers={"content-type": "application/json"}), 400)


def test_not_found(client: TestClient) -> None:
    assert error(client.get("/v1/training-jobs/nope"), 404)["code"] == "ResourceNotFound"
    assert error(client.post("/v1/training-jobs/nope/stop"), 404)
    assert error(client.get("/v1/training-jobs/nope/logs"), 404)


def test_list_validation(client: TestClient) -> None:
    assert error(client.get("/v1/training-jobs", params={"SortBy": "Size"}), 400)["details"]["field"] == "SortBy"
    assert error(client.get("/v1/training-jobs", params={"MaxResults": 0}), 400)["details"]["field"] == "MaxResults"
    assert error(client.get("/v1/training-jobs", params={"StatusEquals": "Done"}), 400)
    assert error(client.get("/v1/training-jobs", params={"NextToken": "zz"}), 400)["details"]["field"] == "NextToken"


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/training-jobs" in schema["paths"]
    assert "CreateTrainingJobRequest" in schema["components"]["schemas"]
