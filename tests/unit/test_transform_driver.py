"""The batch driver: listing, sharing, splitting, batching and assembling (pure), and one run of
:class:`TransformDriver` over a local object store through a real model server."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.model_server import ModelServer, model_server
from trainforge.runtime.serving import transform
from trainforge.runtime.serving.transform import InputFile, TransformDriver, TransformFailed
from trainforge.storage.local import LocalObjectStore

MB = 1024 * 1024


def test_line_split_drops_empty_lines_and_none_keeps_the_file_whole() -> None:
    data = b"1,2\r\n\n3,4\n5,6"
    assert transform.split_records(data, "Line") == [b"1,2", b"3,4", b"5,6"]
    assert transform.split_records(data, "None") == [data]
    assert transform.split_records(data, None) == [data]
    assert transform.split_records(b"", "None") == []
    with pytest.raises(TransformFailed, match="SplitType RecordIO is not supported"):
        transform.split_records(data, "RecordIO")


def test_single_record_sends_one_record_per_request() -> None:
    records = [b"a", b"bb", b"ccc"]
    assert transform.batches(records, "SingleRecord", 6 * MB, "Line") == [[b"a"], [b"bb"], [b"ccc"]]
    assert transform.batches(records, None, 6 * MB, "Line") == [[b"a"], [b"bb"], [b"ccc"]]


def test_multi_record_fills_each_request_up_to_the_payload_limit() -> None:
    records = [b"aaaa", b"bbbb", b"cccc", b"dd"]
    # 4 + 1 + 4 = 9 bytes fit 10; a third record (+5) does not
    groups = transform.batches(records, "MultiRecord", 10, "Line")
    assert groups == [[b"aaaa", b"bbbb"], [b"cccc", b"dd"]]
    assert [len(transform.request_body(g, "Line")) for g in groups] == [9, 7]
    assert transform.batches(records, "MultiRecord", 0, "Line") == [records]  # 0: no limit
    with pytest.raises(TransformFailed, match="a record of 11 bytes is over MaxPayloadInMB"):
        transform.batches([b"x" * 11], "MultiRecord", 10, "None")


def test_answers_are_assembled_in_order_per_assemble_with() -> None:
    answers = [b"1", b"2\n", b"3\n4"]
    assert transform.assemble(answers, "Line") == b"1\n2\n3\n4\n"
    assert transform.assemble(answers, "None") == b"12\n3\n4"
    assert transform.assemble(answers, None) == b"12\n3\n4"


def test_output_keys_are_relative_to_the_input_prefix() -> None:
    assert transform.relative_key("s3://b/in/", "s3://b/in/sub/a.csv") == "sub/a.csv"
    assert transform.relative_key("s3://b/in/data", "s3://b/in/data-1.csv") == "data-1.csv"
    assert transform.output_uri("s3://b/out/", "sub/a.csv") == "s3://b/out/sub/a.csv.out"
    assert transform.output_uri("s3://b/out", "a.csv") == "s3://b/out/a.csv.out"


def test_manifest_and_host_share() -> None:
    files = transform.manifest_files(json.dumps([{"prefix": "s3://b/p"}, "x.csv", "d/y.csv", "z.csv"]))
    assert files == [
        InputFile("s3://b/p/x.csv", "x.csv"),
        InputFile("s3://b/p/d/y.csv", "d/y.csv"),
        InputFile("s3://b/p/z.csv", "z.csv"),
    ]
    assert [f.relative for f in transform.host_share(files, 0, 2)] == ["x.csv", "z.csv"]
    assert [f.relative for f in transform.host_share(files, 1, 2)] == ["d/y.csv"]
    with pytest.raises(TransformFailed, match="must be a JSON list starting with"):
        transform.manifest_files('["x.csv"]')


# ----------------------------------------------------------------------------------- through a model server

SCRIPT = """
import json
def model_fn(model_dir):
    return None
def input_fn(data, content_type):
    return [line.split(",") for line in data.splitlines()]
def predict_fn(rows, model):
    if any(r[0] == "bad" for r in rows):
        raise ValueError("row starts with 'bad'")
    return [sum(float(v) for v in r) for r in rows]
def output_fn(prediction, accept):
    return "\\n".join(str(v) for v in prediction), "text/csv"
"""


@pytest.fixture(scope="module")
def summing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """A model server answering one sum per CSV line."""
    model_dir = tmp_path_factory.mktemp("sum-model")
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(SCRIPT)
    with model_server(model_dir, "generic", env={"SAGEMAKER_PROGRAM": "inference.py"}) as server:
        yield server


def driver(store: LocalObjectStore, server: ModelServer, lines: list[str], **overrides: Any) -> TransformDriver:
    request: dict[str, Any] = {
        "TransformJobName": "t",
        "BatchStrategy": "MultiRecord",
        "MaxConcurrentTransforms": 3,
        "MaxPayloadInMB": 1,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://bkt/out", "AssembleWith": "Line"},
    }
    request.update(overrides)
    return TransformDriver(
        store=store,
        request=request,
        address=server.address,
        host_index=0,
        host_count=1,
        say=lines.append,
        should_stop=lambda: False,
    )


def test_driver_writes_one_out_file_per_input_in_order(tmp_path: Path, summing_server: ModelServer) -> None:
    store = LocalObjectStore(tmp_path / "store")
    for i in range(3):
        store.put_bytes(f"s3://bkt/in/f{i}.csv", "".join(f"{i},{j}\n" for j in range(50)).encode())
    store.put_bytes("s3://bkt/gz/sub/g.csv.gz", gzip.compress(b"1,1\n2,2\n"))
    lines: list[str] = []
    summary = driver(store, summing_server, lines, BatchStrategy="SingleRecord").run()
    assert summary == "Transformed 150 record(s) of 3 file(s) into s3://bkt/out"
    for i in range(3):
        out = store.get_bytes(f"s3://bkt/out/f{i}.csv.out").decode().splitlines()
        assert out == [str(float(i + j)) for j in range(50)]
    gz_driver = driver(
        store,
        summing_server,
        lines,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/gz/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            "CompressionType": "Gzip",
        },
    )
    gz_driver.run()
    assert store.get_bytes("s3://bkt/out/sub/g.csv.gz.out") == b"2.0\n4.0\n"


def test_multi_record_batches_and_a_rejected_record_fails_naming_the_file(
    tmp_path: Path, summing_server: ModelServer
) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("s3://bkt/in/a.csv", b"1,2\n3,4\n")
    lines: list[str] = []
    driver(store, summing_server, lines).run()
    assert store.get_bytes("s3://bkt/out/a.csv.out") == b"3.0\n7.0\n"
    assert any("2 record(s) in 1 request(s)" in line for line in lines)
    store.put_bytes("s3://bkt/in/b.csv", b"1,1\nbad,1\n")
    with pytest.raises(TransformFailed) as failed:
        driver(store, summing_server, lines).run()
    reason = failed.value.reason
    assert reason.startswith("ClientError: ")
    assert "s3://bkt/in/b.csv" in reason and "500" in reason and "row starts with 'bad'" in reason


def test_a_transform_job_sets_its_environment_and_limits_for_the_model_server() -> None:
    from trainforge.runtime.serving.supervisor import transform_environment

    env = transform_environment({"Environment": {"A": "1"}, "MaxPayloadInMB": 20, "MaxConcurrentTransforms": 4})
    assert env == {
        "A": "1",
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
    }
    assert transform_environment({})["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "6"
    assert transform_environment({"MaxPayloadInMB": 0})["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "100"
