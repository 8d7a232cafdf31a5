"""The job spec's SageMaker validation rules and the status table."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainforge.errors import ValidationError
from trainforge.spec.job import parse_create_request
from trainforge.spec.names import base_from_name, base_name_from_image, name_from_base
from trainforge.spec.status import ALLOWED, PRIMARY_OF, TERMINAL, SecondaryStatus, can_transition

BASE: dict[str, Any] = {
    "TrainingJobName": "job-1",
    "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
    "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def body(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


def field_of(b: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        parse_create_request(b)
    assert info.value.field
    return str(info.value.field)


def test_valid_request_keeps_hyperparameters_byte_identical() -> None:
    hps = {"epochs": "10", "name": '"abc"', "cfg": '{"a": 1}', "flag": "true", "weird": " spaced\tvalue "}
    req = parse_create_request(body(HyperParameters=hps))
    assert req.to_wire()["HyperParameters"] == hps
    assert list(req.to_wire()["HyperParameters"]) == list(hps)


@pytest.mark.parametrize("name", ["a_b", "-a", "a-", "a.b", "x" * 64, ""])
def test_invalid_job_names(name: str) -> None:
    assert field_of(body(TrainingJobName=name)) == "TrainingJobName"


def test_valid_job_names() -> None:
    for name in ("a", "A1", "a--b", "x" * 63):
        parse_create_request(body(TrainingJobName=name))


def test_hyperparameter_limits() -> None:
    assert field_of(body(HyperParameters={f"k{i}": "v" for i in range(101)})) == "HyperParameters"
    assert field_of(body(HyperParameters={"k" * 257: "v"})) == "HyperParameters"
    assert field_of(body(HyperParameters={"k": "v" * 2501})) == "HyperParameters"
    assert field_of(body(HyperParameters={"k": 3})) == "HyperParameters.k"
    parse_create_request(body(HyperParameters={f"k{i}": "v" * 2500 for i in range(100)}))


def test_channels() -> None:
    def ch(name: str, uri: str = "s3://b/p") -> dict[str, Any]:
        return {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}

    assert field_of(body(InputDataConfig=[ch("bad name")])) == "InputDataConfig[0].ChannelName"
    assert field_of(body(InputDataConfig=[ch(f"c{i}") for i in range(21)])) == "InputDataConfig"
    assert field_of(body(InputDataConfig=[ch("a"), ch("a")])) == "InputDataConfig"
    assert field_of(body(InputDataConfig=[ch("a", "ftp://x/y")])).startswith("InputDataConfig[0].DataSource")
    parse_create_request(body(InputDataConfig=[ch("train"), ch("test", "file:///tmp/data")]))


def test_other_constraints() -> None:
    assert field_of(body(StoppingCondition={"MaxRuntimeInSeconds": 0})) == "StoppingCondition.MaxRuntimeInSeconds"
    assert field_of(body(Environment={"1BAD": "x"})) == "Environment"
    assert field_of(body(RoleArn="admin-role-of-mine-xyz")) == "RoleArn"
    assert field_of(body(OutputDataConfig={"S3OutputPath": "/tmp/out"})) == "OutputDataConfig.S3OutputPath"
    assert field_of(body(Unknown=1)) == "Unknown"
    assert field_of(body(AlgorithmSpecification={"TrainingInputMode": "File"})) == "AlgorithmSpecification"
    with pytest.raises(ValidationError):
        parse_create_request(["not", "an", "object"])


def test_status_table() -> None:
    assert set(ALLOWED) == set(SecondaryStatus)
    for status in TERMINAL:
        assert not ALLOWED[status]
    assert can_transition(SecondaryStatus.TRAINING, SecondaryStatus.UPLOADING)
    assert not can_transition(SecondaryStatus.TRAINING, SecondaryStatus.COMPLETED)
    assert PRIMARY_OF[SecondaryStatus.MAX_RUNTIME_EXCEEDED].value == "Stopped"


def test_names() -> None:
    name = name_from_base("sagemaker-scikit-learn", now=1704110400.084)
    assert name == "sagemaker-scikit-learn-2024-01-01-12-00-00-084"
    assert base_from_name(name) == "sagemaker-scikit-learn"
    assert len(name_from_base("x" * 80)) <= 63
    assert base_name_from_image("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1") == (
        "sagemaker-xgboost"
    )


def test_job_names_made_in_one_process_never_repeat_even_within_a_millisecond() -> None:
    import threading

    from trainforge.spec.names import name_from_base

    names: list[str] = []
    threads = [
        threading.Thread(target=lambda: names.extend(name_from_base("sq") for _ in range(500))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 2000
