"""Property tests of job-spec validation through the real API app (in-process, scheduler off, SQLite store).

Valid CreateTrainingJob requests are drawn from strategies shaped on :mod:`trainforge.spec.job`'s models; every one
must be accepted, and DescribeTrainingJob must give back every value the request set byte-identical (JSON
canonicalised; the server may add SageMaker's defaults beside them, never change what was sent). Invalid requests
are valid ones with one field broken; every one must be answered 400 ``ValidationException`` naming that field,
never a 500.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from trainforge.server.app import create_app
from trainforge.settings import Settings
from trainforge.spec.job import JOB_NAME_RE

TOKEN = "spec-properties-token"
SETTINGS = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_names = itertools.count()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(Settings(home=tmp_path_factory.mktemp("spec-props") / "home", token=TOKEN), start_scheduler=False)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


# ----------------------------------------------------------------------------------------------- strategies

ALNUM = string.ascii_letters + string.digits
text = st.text(max_size=40)  # any Unicode, control characters included
job_name = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from(ALNUM),
    st.text(alphabet=ALNUM + "-", max_size=30).map(lambda s: s.rstrip("-")),
)
bucket = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=3, max_size=20).filter(
    lambda b: b[0] != "-"
)
key = st.text(alphabet=ALNUM + "-_./", max_size=30)
s3_uri = st.builds(lambda b, k: f"s3://{b}/{k}", bucket, key)
role_arn = st.builds(
    lambda acct, name: f"arn:aws:iam::{acct}:role/{name}",
    st.text(alphabet=string.digits, min_size=12, max_size=12),
    st.text(alphabet=ALNUM + "+=,.@_-", min_size=1, max_size=30),
)
tag_text = st.text(alphabet=ALNUM + " _.:/=+-@", max_size=30)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` or absent (``None`` marks a key left out)."""
    return st.none() | strategy


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


algorithm = st.builds(
    lambda image, mode, metrics, entry, args: drop_none(
        {
            "TrainingImage": image,
            "TrainingInputMode": mode,
            "MetricDefinitions": metrics,
            "ContainerEntrypoint": entry,
            "ContainerArguments": args,
        }
    ),
    st.sampled_from(["trainforge/python:current", "trainforge/python:3.11", "trainforge/sklearn:1.2-1"]),
    optional(st.sampled_from(["File", "FastFile"])),  # Pipe is refused here (not available yet)
    optional(
        st.lists(
            st.fixed_dictionaries(
                {"Name": st.text(min_size=1, max_size=20), "Regex": st.sampled_from(["loss=(\\S+)", "acc: ([0-9.]+)"])}
            ),
            max_size=3,
        )
    ),
    optional(st.lists(st.text(max_size=20), min_size=1, max_size=3)),
    optional(st.lists(st.text(max_size=20), min_size=1, max_size=3)),
)
channel_names = st.lists(st.text(alphabet=ALNUM + ".-_", min_size=1, max_size=12), min_size=1, max_size=3, unique=True)


@st.composite
def channels(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for name in draw(channel_names):
        source = drop_none(
            {
                "S3Uri": draw(s3_uri),
                "S3DataType": draw(optional(st.just("S3Prefix"))),
                "S3DataDistributionType": draw(optional(st.sampled_from(["FullyReplicated", "ShardedByS3Key"]))),
            }
        )
        channel = drop_none(
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": source},
                "ContentType": draw(optional(st.text(max_size=20))),
                "CompressionType": draw(optional(st.sampled_from(["None", "Gzip"]))),
                "InputMode": draw(optional(st.sampled_from(["File", "FastFile"]))),
            }
        )
        out.append(channel)
    return out


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A CreateTrainingJob request every rule of ``CreateTrainingJobRequest`` accepts (the name made unique)."""
    runtime = draw(st.integers(1, 28 * 86400))
    request = drop_none(
        {
            "TrainingJobName": f"{draw(job_name)[:50]}-{next(_names)}",
            "RoleArn": draw(role_arn),
            "AlgorithmSpecification": draw(algorithm),
            "OutputDataConfig": drop_none(
                {"S3OutputPath": draw(s3_uri), "CompressionType": draw(optional(st.just("GZIP")))}
            ),
            "ResourceConfig": drop_none(
                {
                    "InstanceType": draw(st.sampled_from(["ml.m5.large", "ml.c5.xlarge", "local"])),
                    "InstanceCount": draw(optional(st.integers(1, 2))),
                    "VolumeSizeInGB": draw(optional(st.integers(0, 500))),
                }
            ),
            "StoppingCondition": draw(
                optional(
                    st.builds(
                        lambda wait: drop_none({"MaxRuntimeInSeconds": runtime, "MaxWaitTimeInSeconds": wait}),
                        optional(st.integers(runtime, runtime + 86400)),
                    )
                )
            ),
            "HyperParameters": draw(optional(st.dictionaries(st.text(min_size=1, max_size=20), text, max_size=5))),
            "Environment": draw(
                optional(
                    st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True), text, max_size=5)
                )
            ),
            "InputDataConfig": draw(optional(channels())),
            "Tags": draw(
                optional(st.lists(st.fixed_dictionaries({"Key": tag_text.filter(bool), "Value": tag_text}), max_size=3))
            ),
            "EnableNetworkIsolation": draw(optional(st.booleans())),
            "CheckpointConfig": draw(
                optional(
                    st.builds(
                        lambda u, p: drop_none({"S3Uri": u, "LocalPath": p}),
                        s3_uri,
                        optional(st.just("/opt/ml/checkpoints")),
                    )
                )
            ),
            "RetryStrategy": draw(optional(st.builds(lambda n: {"MaximumRetryAttempts": n}, st.integers(1, 30)))),
        }
    )
    if request.get("EnableNetworkIsolation") and request["ResourceConfig"].get("InstanceCount", 1) > 1:
        request["ResourceConfig"]["InstanceCount"] = 1  # isolated hosts cannot rendezvous: one host only
    return request


# A mutation breaks exactly one field: (top-level field it breaks, how).
NOT_A_STRING: st.SearchStrategy[Any] = st.sampled_from([0, 1.5, True, [], {}, None])
MUTATIONS: list[tuple[str, Any]] = [
    ("TrainingJobName", st.sampled_from(["", "-a", "a-", "a_b", "x" * 64, "名前"]) | NOT_A_STRING),
    (
        "RoleArn",
        st.sampled_from(["", "role", "arn:aws:iam::12:role/x", "arn:aws:iam::000000000000:user/x"]) | NOT_A_STRING,
    ),
    (
        "AlgorithmSpecification",
        st.sampled_from(
            [
                {},
                {"TrainingImage": "i", "AlgorithmName": "a"},
                {"TrainingImage": "i", "TrainingInputMode": "Tape"},
                {"TrainingImage": "i", "Bogus": 1},
                "image",
            ]
        ),
    ),
    (
        "OutputDataConfig",
        st.sampled_from([{}, {"S3OutputPath": "http://x/y"}, {"S3OutputPath": "s3://"}, {"S3OutputPath": 3}]),
    ),
    (
        "ResourceConfig",
        st.sampled_from(
            [
                {},
                {"InstanceType": "ml.m5.large", "InstanceCount": 0},
                {"InstanceType": "ml.m5.large", "VolumeSizeInGB": -1},
                {"InstanceType": "ml.m5.large", "KeepAlivePeriodInSeconds": 21601},
            ]
        ),
    ),
    (
        "StoppingCondition",
        st.sampled_from(
            [
                {"MaxRuntimeInSeconds": 0},
                {"MaxRuntimeInSeconds": 28 * 86400 + 1},
                {"MaxRuntimeInSeconds": 100, "MaxWaitTimeInSeconds": 99},
                {"MaxRuntimeInSeconds": "1"},
            ]
        ),
    ),
    (
        "HyperParameters",
        st.sampled_from([{"a": 1}, {"": "x"}, {"k": "v" * 2501}, {f"k{i}": "v" for i in range(101)}, ["a"]]),
    ),
    ("Environment", st.sampled_from([{"1A": "x"}, {"A-B": "x"}, {"A": "v" * 513}, {"A": 1}])),
    (
        "InputDataConfig",
        st.sampled_from(
            [
                [],
                [{"ChannelName": "a b", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/k"}}}],
                [{"ChannelName": "a", "DataSource": {}}],
                [{"ChannelName": "a", "DataSource": {"S3DataSource": {"S3Uri": "ftp://x"}}}],
                [{"ChannelName": "a", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/k"}}}] * 2,
            ]
        ),
    ),
    ("Tags", st.sampled_from([[{"Key": ""}], [{"Key": "a", "Value": "#"}], [{"Key": "a"}] * 51, [{"Value": "v"}]])),
    ("RetryStrategy", st.sampled_from([{"MaximumRetryAttempts": 0}, {"MaximumRetryAttempts": 31}, {}])),
    ("EnableNetworkIsolation", st.sampled_from(["yes", 1, []])),
    ("CheckpointConfig", st.sampled_from([{}, {"S3Uri": "/local"}, {"S3Uri": "s3://b/k", "LocalPath": 5}])),
    ("NoSuchField", st.sampled_from([1, "x", {}])),
]


@st.composite
def invalid_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid request with one top-level field replaced by a broken value (or a required one removed)."""
    request = draw(valid_requests())
    field, values = draw(st.sampled_from(MUTATIONS))
    if draw(st.integers(0, 9)) == 0 and field in ("RoleArn", "AlgorithmSpecification", "OutputDataConfig"):
        del request[field]  # a required field missing
    else:
        request[field] = draw(values)
    return field, request


# ----------------------------------------------------------------------------------------------- properties


def canonical(value: Any) -> bytes:
    """JSON bytes with sorted keys and no insignificant whitespace: equal values, equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def described_as_sent(sent: Any, described: Any, path: str) -> None:
    """Every value in ``sent`` is in ``described`` at the same place, byte-identical; objects may have more keys
    (defaults the server fills in), lists the same items in the same order."""
    if isinstance(sent, dict):
        assert isinstance(described, dict), f"{path}: described as {described!r}"
        for key, value in sent.items():
            assert key in described, f"{path}.{key}: missing from the description"
            described_as_sent(value, described[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert isinstance(described, list) and len(described) == len(sent), f"{path}: described as {described!r}"
        for i, (a, b) in enumerate(zip(sent, described, strict=True)):
            described_as_sent(a, b, f"{path}[{i}]")
    else:
        assert canonical(described) == canonical(sent), f"{path}: sent {sent!r}, described {described!r}"


@SETTINGS
@given(valid_requests())
def test_every_accepted_spec_is_described_as_sent(api: TestClient, request: dict[str, Any]) -> None:
    reply = api.post("/v1/training-jobs", json=request)
    assert reply.status_code == 200, reply.text
    described = api.get(f"/v1/training-jobs/{request['TrainingJobName']}", params={"ShowSecrets": "true"})
    assert described.status_code == 200, described.text
    body = described.json()
    for field, value in request.items():
        described_as_sent(value, body.get(field), field)
    # maps of strings carry no defaults: the whole field is byte-identical
    for field in ("HyperParameters", "Environment"):
        if field in request:
            assert canonical(body[field]) == canonical(request[field])
    # resubmitting the identical request is the same job, not a second one
    again = api.post("/v1/training-jobs", json=request)
    assert again.status_code == 200 and again.json() == reply.json()


@SETTINGS
@given(invalid_requests())
def test_every_rejected_spec_is_a_400_naming_the_field(api: TestClient, case: tuple[str, dict[str, Any]]) -> None:
    field, request = case
    reply = api.post("/v1/training-jobs", json=request)
    assert reply.status_code == 400, (field, reply.status_code, reply.text)
    error = reply.json()["error"]
    assert error["code"] == "ValidationException"
    named = [p["field"] for p in error["details"].get("problems", [])] or [error["details"]["field"]]
    assert any(n == field or n.startswith((f"{field}.", f"{field}[")) for n in named), (field, error)
    assert error["message"].startswith(named[0])
    # nothing was recorded (under a name that could be looked up)
    name = request.get("TrainingJobName")
    if isinstance(name, str) and JOB_NAME_RE.match(name):
        assert api.get(f"/v1/training-jobs/{name}").status_code == 404
