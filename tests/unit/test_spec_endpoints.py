"""Validation of CreateModel, CreateEndpointConfig, CreateEndpoint and UpdateEndpoint, and the endpoint statuses."""

from __future__ import annotations

from typing import Any

import pytest

from trainforge.errors import ValidationError
from trainforge.spec.endpoints import (
    INVOCABLE,
    EndpointStatus,
    allowed_predecessors,
    parse_create_endpoint,
    parse_create_endpoint_config,
    parse_create_model,
    parse_update_endpoint,
)

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
E = EndpointStatus


def model(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ModelName": "my-model",
        "PrimaryContainer": {
            "Image": "trainforge/sklearn:1.2-1",
            "ModelDataUrl": "s3://bucket/job/output/model.tar.gz",
        },
        "ExecutionRoleArn": ROLE,
    }
    body.update(fields)
    return body


def config(*variants: dict[str, Any], **fields: Any) -> dict[str, Any]:
    default = {
        "VariantName": "AllTraffic",
        "ModelName": "my-model",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    return {"EndpointConfigName": "my-config", "ProductionVariants": list(variants) or [default], **fields}


def field_of(fn: Any, body: Any) -> str:
    with pytest.raises(ValidationError) as info:
        fn(body)
    assert info.value.message.startswith(str(info.value.field)), info.value.message
    return str(info.value.field)


def test_a_model_request_keeps_what_was_sent_and_containers_zero_becomes_the_primary_container() -> None:
    parsed = parse_create_model(model(Tags=[{"Key": "trainforge:training-job-name", "Value": "job-1"}]))
    assert parsed.training_job_tag == "job-1"
    assert parsed.to_wire()["PrimaryContainer"] == {
        "Image": "trainforge/sklearn:1.2-1",
        "ModelDataUrl": "s3://bucket/job/output/model.tar.gz",
        "Mode": "SingleModel",
    }
    body = model(Containers=[model()["PrimaryContainer"]])
    del body["PrimaryContainer"]
    wire = parse_create_model(body).to_wire()
    assert "Containers" not in wire and wire["PrimaryContainer"]["Image"] == "trainforge/sklearn:1.2-1"
    assert parse_create_model(model()).training_job_tag is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (model(ModelName="my_model"), "ModelName"),
        (model(ModelName="-model"), "ModelName"),
        (model(ModelName="m" * 64), "ModelName"),
        (model(ExecutionRoleArn="SageMakerRole"), "ExecutionRoleArn"),
        (
            model(PrimaryContainer={"Image": "x", "ModelDataUrl": "/local/model.tar.gz"}),
            "PrimaryContainer.ModelDataUrl",
        ),
        (model(PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://bucket-only"}), "PrimaryContainer.ModelDataUrl"),
        (model(PrimaryContainer={"Image": "x"}), "PrimaryContainer.ModelDataUrl"),
        (
            model(PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/k", "Mode": "MultiModel"}),
            "PrimaryContainer.Mode",
        ),
        (
            model(PrimaryContainer={"Image": "x", "ModelDataUrl": "s3://b/k", "Environment": {"1X": "y"}}),
            "PrimaryContainer.Environment",
        ),
        (model(PrimaryContainer=None, Containers=[model()["PrimaryContainer"]] * 2), "Containers"),
        (model(Unknown=1), "Unknown"),
        ({k: v for k, v in model().items() if k != "ExecutionRoleArn"}, "ExecutionRoleArn"),
    ],
)
def test_a_bad_model_request_names_its_field(body: dict[str, Any], field: str) -> None:
    assert field_of(parse_create_model, body) == field


def test_a_model_without_any_container_says_what_to_give() -> None:
    body = model()
    del body["PrimaryContainer"]
    with pytest.raises(ValidationError, match="PrimaryContainer: required"):
        parse_create_model(body)


def test_an_endpoint_config_serves_exactly_one_variant() -> None:
    parsed = parse_create_endpoint_config(config())
    assert parsed.variant.ModelName == "my-model" and parsed.variant.InitialVariantWeight == 1.0
    variant = config()["ProductionVariants"][0]
    with pytest.raises(ValidationError, match="exactly one production variant") as info:
        parse_create_endpoint_config(config(variant, {**variant, "VariantName": "B"}))
    assert info.value.field == "ProductionVariants"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"InitialInstanceCount": 0}, "ProductionVariants[0].InitialInstanceCount"),
        ({"ModelName": "bad name"}, "ProductionVariants[0].ModelName"),
        ({"InstanceType": None}, "ProductionVariants[0].InstanceType"),
        ({"AcceleratorType": "ml.eia2.medium"}, "ProductionVariants[0].AcceleratorType"),
        ({"ServerlessConfig": {"MemorySizeInMB": 2048}}, "ProductionVariants[0].ServerlessConfig"),
    ],
)
def test_a_bad_variant_names_its_field(change: dict[str, Any], field: str) -> None:
    variant = {**config()["ProductionVariants"][0], **change}
    assert field_of(parse_create_endpoint_config, config(variant)) == field


def test_endpoint_requests_check_both_names() -> None:
    assert parse_create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg"}).EndpointName == "ep"
    assert field_of(parse_create_endpoint, {"EndpointName": "e p", "EndpointConfigName": "cfg"}) == "EndpointName"
    assert field_of(parse_create_endpoint, {"EndpointName": "ep", "EndpointConfigName": ""}) == "EndpointConfigName"
    assert field_of(parse_create_endpoint, ["not", "an", "object"]) == "(body)"
    assert parse_update_endpoint({"EndpointConfigName": "cfg-2"}).EndpointConfigName == "cfg-2"
    assert field_of(parse_update_endpoint, {}) == "EndpointConfigName"


def test_endpoint_statuses_follow_sagemakers_life_cycle() -> None:
    assert allowed_predecessors(E.IN_SERVICE) >= {E.CREATING, E.UPDATING}
    assert allowed_predecessors(E.UPDATING) == {E.IN_SERVICE}
    assert E.DELETING not in allowed_predecessors(E.IN_SERVICE)
    assert E.DELETING not in allowed_predecessors(E.FAILED)
    assert E.FAILED in allowed_predecessors(E.DELETING)
    assert allowed_predecessors(E.CREATING) == frozenset()
    assert E.IN_SERVICE in INVOCABLE and E.CREATING not in INVOCABLE and E.FAILED not in INVOCABLE
