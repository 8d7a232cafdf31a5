"""CreateTransformJob validation, the transform status table, and how instance reports make the job's status."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainforge.errors import ValidationError
from trainforge.spec.transforms import (
    ALLOWED,
    TERMINAL,
    InstanceStatus,
    TransformJobStatus,
    allowed_predecessors,
    parse_create_transform_request,
    transform_move,
)

N = InstanceStatus
T = TransformJobStatus

BASE: dict[str, Any] = {
    "TransformJobName": "batch-1",
    "ModelName": "model-1",
    "TransformInput": {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    },
    "TransformOutput": {"S3OutputPath": "s3://bucket/out/", "AssembleWith": "Line", "Accept": "text/csv"},
    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
}


def body(path: str | None = None, value: Any = None, *, drop: bool = False) -> dict[str, Any]:
    """BASE with the dotted ``path`` set to ``value`` (or removed)."""
    out = copy.deepcopy(BASE)
    if path is None:
        return out
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    if drop:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def error_of(b: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_create_transform_request(b)
    return info.value


def test_a_valid_request_is_kept_with_sagemakers_defaults() -> None:
    wire = parse_create_transform_request(body()).to_wire()
    assert wire["MaxPayloadInMB"] == 6
    assert wire["TransformInput"]["CompressionType"] == "None"
    assert wire["TransformInput"]["SplitType"] == "Line"
    assert wire["TransformOutput"] == BASE["TransformOutput"]
    assert "BatchStrategy" not in wire and "DataProcessing" not in wire
    full = body("BatchStrategy", "MultiRecord")
    full.update(
        MaxConcurrentTransforms=4,
        MaxPayloadInMB=20,
        Environment={"A_B": "1"},
        ModelClientConfig={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        DataProcessing={"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    full["TransformInput"]["CompressionType"] = "Gzip"
    full["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    assert parse_create_transform_request(full).to_wire() == full


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("TransformJobName", "bad_name", "TransformJobName", "letters, digits and hyphens"),
        ("TransformJobName", "x" * 64, "TransformJobName", "1-63 characters"),
        ("ModelName", "-m", "ModelName", "start and end with a letter or digit"),
        ("TransformInput.SplitType", "RecordIO", "TransformInput.SplitType", "use one of None, Line"),
        ("TransformInput.SplitType", "TFRecord", "TransformInput.SplitType", "use one of None, Line"),
        ("TransformInput.CompressionType", "Zip", "TransformInput.CompressionType", "'None' or 'Gzip'"),
        (
            "TransformInput.DataSource.S3DataSource.S3DataType",
            "AugmentedManifestFile",
            "TransformInput.DataSource.S3DataSource.S3DataType",
            "use one of S3Prefix, ManifestFile",
        ),
        (
            "TransformInput.DataSource.S3DataSource.S3Uri",
            "/local/path",
            "TransformInput.DataSource.S3DataSource.S3Uri",
            "s3://bucket/prefix",
        ),
        ("TransformOutput.S3OutputPath", "https://x/y", "TransformOutput.S3OutputPath", "s3://bucket/prefix"),
        ("TransformOutput.AssembleWith", "RecordIO", "TransformOutput.AssembleWith", "'None' or 'Line'"),
        ("TransformResources.InstanceCount", 0, "TransformResources.InstanceCount", "greater than or equal to 1"),
        ("BatchStrategy", "Batched", "BatchStrategy", "'SingleRecord' or 'MultiRecord'"),
        ("MaxPayloadInMB", 101, "MaxPayloadInMB", "less than or equal to 100"),
        ("MaxPayloadInMB", -1, "MaxPayloadInMB", "greater than or equal to 0"),
        ("MaxConcurrentTransforms", -2, "MaxConcurrentTransforms", "greater than or equal to 0"),
        ("Environment", {"1BAD": "x"}, "Environment", "must match"),
        ("DataProcessing", {"InputFilter": "$[1:]"}, "DataProcessing", "only the default"),
        ("DataProcessing", {"JoinSource": "Input"}, "DataProcessing", "leave DataProcessing out"),
        ("ModelClientConfig", {"InvocationsMaxRetries": 9}, "ModelClientConfig.InvocationsMaxRetries", "3"),
        ("Unknown", 1, "Unknown", "not a known field"),
    ],
)
def test_each_bad_field_is_named_with_the_fix(path: str, value: Any, field: str, words: str) -> None:
    err = error_of(body(path, value))
    assert err.field == field
    assert err.message.startswith(f"{field}: ") and words in err.message, err.message


@pytest.mark.parametrize(
    "path", ["TransformJobName", "ModelName", "TransformInput", "TransformOutput", "TransformResources"]
)
def test_required_fields_are_named(path: str) -> None:
    err = error_of(body(path, drop=True))
    assert err.field == path and "Field required" in err.message


def test_payload_times_concurrency_is_limited_and_the_body_must_be_an_object() -> None:
    b = body("MaxConcurrentTransforms", 20)
    b["MaxPayloadInMB"] = 6
    err = error_of(b)
    assert err.field == "MaxConcurrentTransforms" and "100 MB" in err.message
    assert error_of([1, 2]).field == "(body)"


def test_status_table_ends_in_terminal_states_only_through_allowed_steps() -> None:
    assert set(ALLOWED) == set(T)
    for status in TERMINAL:
        assert ALLOWED[status] == frozenset()
    assert T.STOPPING in ALLOWED[T.IN_PROGRESS] and T.COMPLETED not in ALLOWED[T.STOPPING]
    assert allowed_predecessors(T.STOPPED) == {T.IN_PROGRESS, T.STOPPING}
    assert allowed_predecessors(T.COMPLETED) == {T.IN_PROGRESS}


def test_the_job_completes_when_every_instance_completed() -> None:
    running = {"algo-1": (N.COMPLETED, None), "algo-2": (N.IN_PROGRESS, None)}
    assert transform_move(T.IN_PROGRESS, running, 2).status is None
    done = {"algo-1": (N.COMPLETED, None), "algo-2": (N.COMPLETED, None)}
    assert transform_move(T.IN_PROGRESS, done, 2).status == T.COMPLETED
    assert transform_move(T.IN_PROGRESS, {"algo-1": (N.COMPLETED, None)}, 2).status is None


def test_one_failed_instance_fails_the_job_naming_its_host() -> None:
    one = transform_move(T.IN_PROGRESS, {"algo-1": (N.FAILED, "ClientError: bad record")}, 1)
    assert (one.status, one.failure_reason) == (T.FAILED, "ClientError: bad record")
    two = transform_move(T.IN_PROGRESS, {"algo-1": (N.IN_PROGRESS, None), "algo-2": (N.FAILED, "ClientError: x")}, 2)
    assert (two.status, two.failure_reason) == (T.FAILED, "ClientError: host algo-2: x")


def test_a_stop_ends_once_every_instance_has_ended_and_terminal_jobs_never_move() -> None:
    half = {"algo-1": (N.STOPPED, None), "algo-2": (N.IN_PROGRESS, None)}
    assert transform_move(T.STOPPING, half, 2).status is None
    ended = {"algo-1": (N.STOPPED, None), "algo-2": (N.COMPLETED, None)}
    assert transform_move(T.STOPPING, ended, 2).status == T.STOPPED
    assert transform_move(T.IN_PROGRESS, {"algo-1": (N.STOPPED, None)}, 1).status == T.STOPPED
    for status in TERMINAL:
        assert transform_move(status, {"algo-1": (N.FAILED, "x")}, 1).status is None
