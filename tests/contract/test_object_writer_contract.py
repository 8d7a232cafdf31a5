"""Streaming writes into every object store (local, local encrypted at rest, S3 on a real moto server): what
``object_writer`` and the artifacts streamed through it promise, whatever the store."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.test_object_store_contract import LARGE, MiB, s3_store
from trainforge.archives import open_archive
from trainforge.errors import ValidationError
from trainforge.runtime.lineage import tree_content_sha256
from trainforge.runtime.packaging import publish_artifacts
from trainforge.storage import KeyDirectory, LocalObjectStore, ObjectStore
from trainforge.storage.writer import object_writer

ODD = MiB + 7  # writes that never line up with the store's parts


@pytest.fixture(params=["local", "local-encrypted", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    if request.param == "local-encrypted":
        yield LocalObjectStore(tmp_path / "objects", keyring=KeyDirectory(tmp_path / "kms")).with_encryption("k-1")
        return
    s3 = s3_store(request.getfixturevalue("s3_server"))
    s3.ensure_bucket("bkt")
    for obj in list(s3.list("s3://bkt/")):
        s3.delete(obj.uri)
    yield s3


def local_files(tmp_path: Path) -> list[str]:
    """Every file under the local stores' root (none for S3): temporary files would show here."""
    root = tmp_path / "objects"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_streamed_object_appears_whole_and_only_at_the_end(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(LARGE)  # above the S3 store's multipart threshold: uploaded in parts while it is written
    with object_writer(store, "s3://bkt/big/stream.bin") as out:
        for start in range(0, LARGE, ODD):
            out.write(data[start : start + ODD])
            if start >= LARGE // 2:
                assert not store.exists("s3://bkt/big/stream.bin")
    assert store.get_bytes("s3://bkt/big/stream.bin") == data
    assert [(o.key, o.size) for o in store.list("s3://bkt/")] == [("big/stream.bin", LARGE)]
    assert local_files(tmp_path) in ([], ["bkt/big/stream.bin"])


def test_an_exception_in_the_block_stores_nothing(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the producer failed"), object_writer(store, "s3://bkt/half.bin") as out:
        for _ in range(12):
            out.write(os.urandom(ODD))
        raise RuntimeError("the producer failed")
    assert not store.exists("s3://bkt/half.bin")
    assert list(store.list("s3://bkt/")) == []
    assert local_files(tmp_path) == []
    client = getattr(store, "client", None)  # S3: the multipart upload begun for it was aborted, not left behind
    assert client is None or not client.list_multipart_uploads(Bucket="bkt").get("Uploads")


def test_the_stores_own_error_is_raised_not_a_broken_pipe(store: ObjectStore) -> None:
    with pytest.raises(ValidationError, match="names a prefix"), object_writer(store, "s3://bkt/a/prefix/") as out:
        for _ in range(40):  # more than the pipe holds: the writes must fail rather than wait forever
            out.write(os.urandom(ODD))


def test_artifacts_stream_into_the_store_with_their_content_hash(store: ObjectStore, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(12 * MiB))
    (model / "sub" / "config.json").write_text("{}")
    os.symlink("weights.bin", model / "latest")
    artifacts = publish_artifacts(
        store, output_path="s3://bkt/out", job_name="j", model_dir=model, output_data_dir=tmp_path / "none"
    )
    assert [(a.kind, a.uri, a.entries) for a in artifacts] == [
        ("model", "s3://bkt/out/j/output/model.tar.gz", 3),
        ("output", "s3://bkt/out/j/output/output.tar.gz", 0),
    ]
    assert artifacts[0].content_sha256 == tree_content_sha256(model)
    fetched = tmp_path / "model.tar.gz"
    store.download_file(artifacts[0].uri, fetched)
    with tarfile.open(fetched, "r:gz") as tar:  # the stdlib reads the streamed archive
        assert tar.getnames() == ["latest", "sub", "sub/config.json", "weights.bin"]
        handle = tar.extractfile("weights.bin")
        assert handle is not None and handle.read() == (model / "weights.bin").read_bytes()
    with open_archive(fetched) as tar:
        assert tar.getmember("latest").linkname == "weights.bin"
    assert len(local_files(tmp_path)) in (0, 2)  # the two archives, no temporary file
