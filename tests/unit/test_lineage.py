"""Lineage pieces: code fingerprint, data manifest, model content hash, the recorder, and the comparisons a rerun
and ``jobs diff`` make (real files and a real local object store)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.contract.test_object_store_contract import s3_store
from tests.support.s3 import S3Server
from trainforge.cli.lineage import diff_lines, job_diff, lineage_lines
from trainforge.errors import ValidationError
from trainforge.runtime.channels import SourceObject, stage_channel
from trainforge.runtime.lineage import (
    LineageRecorder,
    archive_content_sha256,
    channel_manifest,
    code_fingerprint,
    current_manifest,
    manifest_entry,
    tree_content_sha256,
)
from trainforge.runtime.packaging import make_archive, publish_artifacts
from trainforge.runtime.sourcecode import fetch_source
from trainforge.service.rerun import rerun_name
from trainforge.spec.fields import NAME_RE
from trainforge.spec.job import ChannelSpec
from trainforge.spec.lineage import check_lineage, job_lineage, manifest_changes, mapping_changes
from trainforge.storage import LocalObjectStore


def channel(uri: str, *, name: str = "train", data_type: str = "S3Prefix") -> ChannelSpec:
    return ChannelSpec.model_validate(
        {"ChannelName": name, "DataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": data_type}}}
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    s = LocalObjectStore(tmp_path / "store")
    s.put_bytes("s3://bkt/data/train/a.csv", b"1,2\n3,4\n")
    s.put_bytes("s3://bkt/data/train/sub/b.csv", b"5,6\n")
    s.put_bytes("s3://bkt/other/z", b"z")
    return s


# ------------------------------------------------------------------------------------------------ code, data


def test_code_fingerprint_is_the_sha256_of_the_archive_as_fetched(store: LocalObjectStore, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"print"))
    uri = "s3://bkt/job/source/sourcedir.tar.gz"
    store.put_bytes(uri, buf.getvalue())
    seen: list[dict[str, object]] = []
    fetch_source(
        store, uri, tmp_path / "code", tmp_path / "tmp", on_archive=lambda u, p: seen.append(code_fingerprint(u, p))
    )
    assert seen == [{"Uri": uri, "Sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "Size": len(buf.getvalue())}]
    assert (tmp_path / "code" / "train.py").read_bytes() == b"print"
    # A directory source has no archive: nothing is fingerprinted.
    seen.clear()
    fetch_source(
        store,
        f"file://{tmp_path / 'code'}",
        tmp_path / "code2",
        tmp_path / "tmp",
        on_archive=lambda u, p: seen.append({}),
    )
    assert seen == []


def test_data_manifest_lists_every_object_with_size_and_content_hash(store: LocalObjectStore, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    staged = stage_channel(store, channel("s3://bkt/data/train/"), dest, host_index=0, host_count=1, input_mode="File")
    manifest = channel_manifest(store, staged.listed)
    assert manifest == [
        {"Key": "s3://bkt/data/train/a.csv", "Size": 8, "ETag": hashlib.sha256(b"1,2\n3,4\n").hexdigest()},
        {"Key": "s3://bkt/data/train/sub/b.csv", "Size": 4, "ETag": hashlib.sha256(b"5,6\n").hexdigest()},
    ]
    # The server lists the same source the same way.
    assert current_manifest(store, "s3://bkt/data/train/") == manifest
    # Sharded over two hosts, each host still records the whole channel.
    dest2 = tmp_path / "d2"
    dest2.mkdir()
    sharded = ChannelSpec.model_validate(
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3Uri": "s3://bkt/data/train/",
                    "S3DataType": "S3Prefix",
                    "S3DataDistributionType": "ShardedByS3Key",
                }
            },
        }
    )
    part = stage_channel(store, sharded, dest2, host_index=1, host_count=2, input_mode="File")
    assert part.files == 1 and channel_manifest(store, part.listed) == manifest


def test_a_stores_etag_is_used_as_it_is(store: LocalObjectStore) -> None:
    obj = SourceObject("s3://bkt/other/z", "z", 1, etag="9e3669d19b675bd57058fd4664205d2a")
    assert manifest_entry(store, obj) == {
        "Key": "s3://bkt/other/z",
        "Size": 1,
        "ETag": "9e3669d19b675bd57058fd4664205d2a",
    }


def test_file_and_manifest_file_channels(store: LocalObjectStore, tmp_path: Path) -> None:
    local = tmp_path / "local.csv"
    local.write_bytes(b"abc")
    assert current_manifest(store, f"file://{local}") == [
        {"Key": f"file://{local}", "Size": 3, "ETag": hashlib.sha256(b"abc").hexdigest()}
    ]
    store.put_bytes("s3://bkt/m.json", b'[{"prefix": "s3://bkt/data/train/"}, "a.csv"]')
    assert current_manifest(store, "s3://bkt/m.json", "ManifestFile") == [
        {"Key": "s3://bkt/data/train/a.csv", "Size": 8, "ETag": hashlib.sha256(b"1,2\n3,4\n").hexdigest()}
    ]


def test_manifest_changes_name_each_added_removed_and_changed_key() -> None:
    before = [{"Key": "s3://b/a", "Size": 1, "ETag": "x"}, {"Key": "s3://b/b", "Size": 2, "ETag": "y"}]
    assert manifest_changes(before, list(before)) == []
    after = [{"Key": "s3://b/a", "Size": 3, "ETag": "z"}, {"Key": "s3://b/c", "Size": 2, "ETag": "y"}]
    assert manifest_changes(before, after) == [
        "changed s3://b/a (Size 1 -> 3, ETag x -> z)",
        "removed s3://b/b",
        "added s3://b/c",
    ]


# ------------------------------------------------------------------------------------------------ model content


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "model.txt").write_text("weights")
    (root / "sub" / "more.bin").write_bytes(b"\x00\x01")
    os.symlink("model.txt", root / "link")


def test_model_content_hash_ignores_mtimes_and_agrees_with_the_directory(tmp_path: Path) -> None:
    _tree(tmp_path / "m")
    make_archive(tmp_path / "m", tmp_path / "one.tar.gz")
    time.sleep(1.1)
    for path in (tmp_path / "m").rglob("*"):
        os.utime(path, follow_symlinks=False)
    make_archive(tmp_path / "m", tmp_path / "two.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() != (tmp_path / "two.tar.gz").read_bytes()
    one = archive_content_sha256(tmp_path / "one.tar.gz")
    assert one == archive_content_sha256(tmp_path / "two.tar.gz") == tree_content_sha256(tmp_path / "m")
    (tmp_path / "m" / "sub" / "more.bin").write_bytes(b"\x00\x02")
    assert tree_content_sha256(tmp_path / "m") != one


def test_publish_artifacts_carries_the_models_content_hash(store: LocalObjectStore, tmp_path: Path) -> None:
    _tree(tmp_path / "model")
    (tmp_path / "data").mkdir()
    artifacts = publish_artifacts(
        store,
        output_path="s3://bkt/out",
        job_name="j",
        model_dir=tmp_path / "model",
        output_data_dir=tmp_path / "data",
        tmp_dir=tmp_path / "tmp",
    )
    model = artifacts[0]
    assert model.kind == "model" and model.content_sha256 == tree_content_sha256(tmp_path / "model")
    store.download_file(model.uri, tmp_path / "got.tar.gz")
    assert archive_content_sha256(tmp_path / "got.tar.gz") == model.content_sha256
    assert artifacts[1].content_sha256 is None
    flat = publish_artifacts(
        store,
        output_path="s3://bkt/out",
        job_name="k",
        model_dir=tmp_path / "model",
        output_data_dir=tmp_path / "data",
        tmp_dir=tmp_path / "tmp",
        compressed=False,
    )
    assert flat[0].content_sha256 == model.content_sha256


# ------------------------------------------------------------------------------------------------ shape


def test_recorder_payload_and_check() -> None:
    rec = LineageRecorder()
    assert not rec.known
    rec.set_code({"Uri": "s3://b/s.tar.gz", "Sha256": "ab", "Size": 3})
    rec.add_channel("train", [{"Key": "s3://b/k", "Size": 1, "ETag": "e"}])
    payload = rec.payload()
    assert payload == {
        "Environment": None,
        "Code": {"Uri": "s3://b/s.tar.gz", "Sha256": "ab", "Size": 3},
        "Data": {"train": [{"Key": "s3://b/k", "Size": 1, "ETag": "e"}]},
        "Container": None,
    }
    rec.set_container("repo/img:1", "sha256:" + "0" * 64)
    rec.set_model_content("cd")
    payload = rec.payload()
    assert payload["Container"] == {"Image": "repo/img:1", "Digest": "sha256:" + "0" * 64}
    assert payload["Environment"]["Fingerprint"] == "sha256:" + "0" * 64
    assert payload["Output"] == {"ModelContentSha256": "cd"}
    assert check_lineage(payload) is payload
    with pytest.raises(ValidationError, match="lineage: must be a JSON object"):
        check_lineage([1])
    with pytest.raises(ValidationError, match="unknown part"):
        check_lineage({"Environment": None, "Secrets": {}})
    with pytest.raises(ValidationError, match=r"lineage\.Code: must be a JSON object or null") as info:
        check_lineage({"Code": "abc"})
    assert info.value.field == "lineage.Code"


def test_job_lineage_is_the_leaders_with_hosts_that_differ() -> None:
    def host(fp: str) -> dict[str, object]:
        return {"Environment": {"Fingerprint": fp}, "Code": None, "Data": {}, "Container": None}

    assert job_lineage({}) is None
    same = job_lineage({"algo-1": host("a"), "algo-2": host("a")})
    assert same == host("a")
    mixed = job_lineage({"algo-2": host("b"), "algo-1": host("a"), "algo-3": host("a")})
    assert mixed is not None
    assert mixed["Environment"] == {"Fingerprint": "a"}
    assert mixed["Hosts"] == [{"Host": "algo-2", "Environment": {"Fingerprint": "b"}}]


def test_rerun_names_are_valid_and_count_on() -> None:
    assert rerun_name("train", 1) == "train-rerun-1"
    assert rerun_name("train-rerun-1", 2) == "train-rerun-2"
    long = "a" * 63
    for n in (1, 12, 345):
        name = rerun_name(long, n)
        assert len(name) <= 63 and NAME_RE.match(name) and name.endswith(f"-rerun-{n}")
    assert NAME_RE.match(rerun_name("a" * 54 + "-b" * 4, 7))


# ------------------------------------------------------------------------------------------------ jobs diff


def _desc(
    name: str, hp: dict[str, str], dists: dict[str, str], etag: str, model: str, loss: float
) -> dict[str, object]:
    return {
        "TrainingJobName": name,
        "HyperParameters": hp,
        "AlgorithmSpecification": {"TrainingImage": "trainforge/sklearn:1.2-1"},
        "FinalMetricDataList": [{"MetricName": "loss", "Value": loss}],
        "Lineage": {
            "Environment": {
                "Image": "trainforge/sklearn:1.2-1",
                "Python": "3.11.7",
                "LockSha256": "l",
                "Distributions": dists,
                "Fingerprint": hashlib.sha256(repr(dists).encode()).hexdigest(),
            },
            "Code": {"Uri": "s3://b/src.tar.gz", "Sha256": "c", "Size": 10},
            "Data": {"train": [{"Key": "s3://b/t.csv", "Size": 5, "ETag": etag}]},
            "Container": None,
            "Output": {"ModelContentSha256": model},
        },
    }


def test_diff_of_two_jobs_shows_each_difference() -> None:
    a = _desc("a", {"lr": "0.1", "seed": "1"}, {"numpy": "1.26.4", "six": "1.16.0"}, "e1", "m1", 0.5)
    b = _desc("b", {"lr": "0.2", "seed": "1", "depth": "3"}, {"numpy": "1.26.5", "pandas": "2.2.0"}, "e2", "m2", 0.4)
    diff = job_diff(a, b)
    d = diff["Differences"]
    assert d["HyperParameters"] == {"Added": {"depth": "3"}, "Changed": {"lr": ["0.1", "0.2"]}}
    assert d["Environment"]["Distributions"] == {
        "Added": {"pandas": "2.2.0"},
        "Removed": {"six": "1.16.0"},
        "Changed": {"numpy": ["1.26.4", "1.26.5"]},
    }
    assert d["Data"] == {"train": ["changed s3://b/t.csv (ETag e1 -> e2)"]}
    assert d["FinalMetrics"] == {"Changed": {"loss": [0.5, 0.4]}}
    assert d["Model"] == {"ModelContentSha256": {"A": "m1", "B": "m2"}}
    assert diff["Same"] == ["Image", "Code"] and diff["Unknown"] == []
    text = "\n".join(diff_lines(diff))
    assert "~ lr: 0.1 -> 0.2" in text and "+ depth = 3" in text and "- six = 1.16.0" in text
    same = job_diff(a, {**a, "TrainingJobName": "a2"})
    assert same["Differences"] == {} and same["Same"] == list(
        ("HyperParameters", "Image", "Environment", "Code", "Data", "FinalMetrics", "Model")
    )
    old = job_diff(a, {k: v for k, v in a.items() if k != "Lineage"})
    assert old["Unknown"] == ["Environment", "Code", "Data", "Model"]


def test_lineage_text_names_each_part() -> None:
    a = _desc("a", {}, {"numpy": "1.26.4"}, "e1", "m1", 0.5)
    text = "\n".join(lineage_lines("a", a["Lineage"]))  # type: ignore[arg-type]
    for part in (
        "trainforge/sklearn:1.2-1",
        "3.11.7",
        "Distributions:  1",
        "s3://b/src.tar.gz",
        "train: 1 object(s), 5 bytes",
        "m1",
    ):
        assert part in text
    assert "recorded no lineage" in lineage_lines("x", None)[0]
    assert mapping_changes({"a": 1}, {"a": 1}) == {}


def test_on_s3_the_manifest_uses_the_stores_etag(s3_server: S3Server) -> None:
    """Listing and info on S3 carry the object's ETag, and the data manifest takes it as it is (no content read)."""
    store = s3_store(s3_server)
    store.ensure_bucket("lineage")
    store.put_bytes("s3://lineage/train/a.csv", b"1,2\n")
    [listed] = list(store.list("s3://lineage/train/"))
    assert listed.etag == hashlib.md5(b"1,2\n").hexdigest()  # a single-part upload's ETag is its MD5
    assert store.info("s3://lineage/train/a.csv").etag == listed.etag
    assert current_manifest(store, "s3://lineage/train/") == [
        {"Key": "s3://lineage/train/a.csv", "Size": 4, "ETag": listed.etag}
    ]
