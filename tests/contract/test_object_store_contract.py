"""One contract suite for object stores (the local directory store today; S3 joins it later)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from trainforge.errors import NotFoundError, ValidationError
from trainforge.storage import LocalObjectStore, ObjectStore


@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def test_put_get_list(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "f.csv"
    src.write_text("1,2\n")
    store.put_file("s3://bkt/data/train/f.csv", src)
    store.put_bytes("s3://bkt/data/train/sub/g.csv", b"3,4\n")
    store.put_stream("s3://bkt/data/trainer.csv", io.BytesIO(b"x"))
    store.put_bytes("s3://bkt/other/h.csv", b"")
    assert store.get_bytes("s3://bkt/data/train/f.csv") == b"1,2\n"
    assert [o.key for o in store.list("s3://bkt/data/train/")] == ["data/train/f.csv", "data/train/sub/g.csv"]
    assert [o.key for o in store.list("s3://bkt/data/train")] == [
        "data/train/f.csv",
        "data/train/sub/g.csv",
        "data/trainer.csv",
    ]
    assert [o.uri for o in store.list("s3://bkt/other")] == ["s3://bkt/other/h.csv"]
    assert list(store.list("s3://nobucket/x")) == []
    assert store.exists("s3://bkt/other/h.csv") and not store.exists("s3://bkt/other/nope")
    with pytest.raises(NotFoundError):
        store.get_bytes("s3://bkt/missing")


@pytest.mark.parametrize(
    "uri", ["s3://bkt/../escape", "s3://bkt/a/../../escape", "s3://bkt//abs", "s3://../x", "/no/scheme"]
)
def test_keys_that_escape_are_rejected(store: ObjectStore, uri: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        store.put_bytes(uri, b"x")
    assert not (tmp_path / "escape").exists()


def test_a_downloaded_copy_never_changes_the_stored_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("s3://bkt/k.txt", b"original")
    dest = tmp_path / "copy.txt"
    store.download_file("s3://bkt/k.txt", dest)
    dest.write_bytes(b"changed by the job")
    assert store.get_bytes("s3://bkt/k.txt") == b"original"


def test_replacing_an_object_is_whole(store: ObjectStore) -> None:
    store.put_bytes("s3://bkt/k", b"a" * 1000)
    store.put_bytes("s3://bkt/k", b"b")
    assert store.get_bytes("s3://bkt/k") == b"b"
    assert [o.size for o in store.list("s3://bkt/")] == [1]
