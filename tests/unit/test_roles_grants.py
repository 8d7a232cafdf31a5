"""Role grants over object-store prefixes (S3/IAM semantics) and the store that enforces them."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainforge.errors import PermissionDeniedError, ValidationError
from trainforge.storage import LocalObjectStore
from trainforge.storage.scoped import Grants, ScopedObjectStore, normalize_prefix


def grants(read: list[str] = [], write: list[str] = []) -> Grants:  # noqa: B006 - never mutated
    return Grants.from_role({"name": "R", "read": read, "write": write})


@pytest.mark.parametrize(
    ("grant", "uri", "covered"),
    [
        ("s3://b/p/", "s3://b/p/x.csv", True),
        ("s3://b/p/", "s3://b/p/deep/x", True),
        ("s3://b/p/", "s3://b/p", False),  # listing "p" would include "pq/..."
        ("s3://b/p/", "s3://b/pq/x", False),
        ("s3://b/p", "s3://b/pq/x", True),  # a plain string prefix, as IAM's arn:aws:s3:::b/p*
        ("s3://b/p/", "s3://other/p/x", False),
        ("s3://b", "s3://b/anything", True),
        ("s3://b", "s3://b", True),
        ("s3://b", "s3://bb/x", False),
        ("s3://", "s3://any/key", True),
    ],
)
def test_prefix_coverage(grant: str, uri: str, covered: bool) -> None:
    assert grants(read=[grant]).can_read(uri) is covered
    assert grants(write=[grant]).can_write(uri) is covered


def test_write_implies_read_but_not_the_reverse() -> None:
    g = grants(read=["s3://b/in/"], write=["s3://b/out/"])
    assert g.can_read("s3://b/out/model.tar.gz") and g.can_read("s3://b/in/x")
    assert not g.can_write("s3://b/in/x")
    assert g.unrestricted is False and grants(write=["s3://"]).unrestricted


@pytest.mark.parametrize("bad", ["b/p/", "file:///tmp", "s3:/b", "s3:///key", "s3://b/../x", 5])
def test_bad_prefixes_name_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_prefix(bad, field="--read")  # type: ignore[arg-type]
    assert info.value.field == "--read" and "--read" in info.value.message


def test_normal_forms() -> None:
    assert normalize_prefix("s3://") == "s3://"
    assert normalize_prefix("s3://b") == "s3://b/"
    assert normalize_prefix("s3://b/p/") == "s3://b/p/"


def test_scoped_store_refuses_what_the_role_does_not_grant(tmp_path: Path) -> None:
    inner = LocalObjectStore(tmp_path)
    inner.put_bytes("s3://b/alice/in.csv", b"1")
    inner.put_bytes("s3://b/bob/in.csv", b"2")
    store = ScopedObjectStore(inner, grants(read=["s3://b/alice/"], write=["s3://b/alice/out/"]))
    assert store.get_bytes("s3://b/alice/in.csv") == b"1"
    assert [o.key for o in store.list("s3://b/alice/")] == ["alice/in.csv"]
    store.put_bytes("s3://b/alice/out/m", b"m")
    with pytest.raises(PermissionDeniedError, match=r"access denied to s3://b/bob/in.csv \(role 'R' has no read"):
        store.get_bytes("s3://b/bob/in.csv")
    with pytest.raises(PermissionDeniedError):
        store.list("s3://b/")  # refused on the call, before any iteration
    with pytest.raises(PermissionDeniedError, match="no write grant"):
        store.put_bytes("s3://b/alice/in2.csv", b"x")
    with pytest.raises(PermissionDeniedError):
        store.download_file("s3://b/bob/in.csv", tmp_path / "copy")
    with pytest.raises(PermissionDeniedError):
        store.delete("s3://b/bob/in.csv")
    assert inner.exists("s3://b/bob/in.csv") and not inner.exists("s3://b/alice/in2.csv")
