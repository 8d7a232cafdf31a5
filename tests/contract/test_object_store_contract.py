"""One contract suite for object stores: the local directory store and the S3 store (on a real moto server)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3 import S3Server, free_port
from trainforge.errors import NotFoundError, StorageError, ValidationError
from trainforge.storage import KeyDirectory, LocalObjectStore, ObjectStore, open_store

MiB = 1024 * 1024
LARGE = 40 * MiB
PART = 5 * MiB
THRESHOLD = 8 * MiB


def s3_store(server: S3Server, **overrides: Any) -> Any:
    """An S3 store on ``server`` with small parts, so a 40 MiB object takes the multipart and ranged paths."""
    from trainforge.storage.s3 import S3ObjectStore
    from trainforge.storage.s3_settings import S3Credentials, S3Settings

    values: dict[str, Any] = {
        "endpoint_url": server.endpoint,
        "region": server.region,
        "credentials": S3Credentials(server.access_key_id, server.secret_access_key),
        "multipart_threshold": THRESHOLD,
        "part_size": PART,
        "max_concurrency": 4,
    }
    values.update(overrides)
    return S3ObjectStore(settings=S3Settings(**values))


@pytest.fixture(params=["local", "local-encrypted", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    if request.param == "local-encrypted":  # every object written encrypted at rest; the contract is unchanged
        yield LocalObjectStore(tmp_path / "objects", keyring=KeyDirectory(tmp_path / "kms")).with_encryption("k-1")
        return
    s3 = s3_store(request.getfixturevalue("s3_server"))
    s3.ensure_bucket("bkt")
    for obj in list(s3.list("s3://bkt/")):  # the server lives for the session: start each test with an empty bucket
        s3.delete(obj.uri)
    yield s3


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
    assert store.exists("s3://bkt/other/h.csv") and not store.exists("s3://bkt/other/nope")
    with pytest.raises(NotFoundError):
        store.get_bytes("s3://bkt/missing")


def test_list_is_in_key_order(store: ObjectStore) -> None:
    keys = ["b/2", "a", "b/10", "a-b", "b/1", "c/z", "B"]
    for key in keys:
        store.put_bytes(f"s3://bkt/o/{key}", key.encode())
    assert [o.key for o in store.list("s3://bkt/o/")] == sorted(f"o/{k}" for k in keys)
    assert [o.size for o in store.list("s3://bkt/o/b/")] == [3, 4, 3]


def test_info_and_read_chunks(store: ObjectStore) -> None:
    store.put_bytes("s3://bkt/a/k.bin", b"0123456789" * 100)
    info = store.info("s3://bkt/a/k.bin")
    assert (info.uri, info.size) == ("s3://bkt/a/k.bin", 1000) and info.mtime > 0
    assert b"".join(store.read_chunks("s3://bkt/a/k.bin", chunk_size=64)) == b"0123456789" * 100
    with pytest.raises(NotFoundError):
        store.info("s3://bkt/a/none")
    with pytest.raises(NotFoundError):
        store.read_chunks("s3://bkt/a/none")  # raised by the call itself, before any iteration


@pytest.mark.parametrize(
    "uri", ["s3://bkt/../escape", "s3://bkt/a/../../escape", "s3://bkt//abs", "s3://../x", "/no/scheme"]
)
def test_keys_that_escape_are_rejected(store: ObjectStore, uri: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        store.put_bytes(uri, b"x")
    with pytest.raises(ValidationError):
        store.get_bytes(uri)
    assert not (tmp_path / "escape").exists()


def test_a_prefix_is_not_an_object(store: ObjectStore) -> None:
    with pytest.raises(ValidationError):
        store.put_bytes("s3://bkt/dir/", b"x")
    with pytest.raises(ValidationError):
        store.get_bytes("s3://bkt")


def test_a_downloaded_copy_never_changes_the_stored_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes("s3://bkt/k.txt", b"original")
    dest = tmp_path / "copy.txt"
    store.download_file("s3://bkt/k.txt", dest)
    dest.write_bytes(b"changed by the job")
    assert store.get_bytes("s3://bkt/k.txt") == b"original"
    with pytest.raises(NotFoundError):
        store.download_file("s3://bkt/none.txt", tmp_path / "none.txt")


def test_replacing_an_object_is_whole(store: ObjectStore) -> None:
    store.put_bytes("s3://bkt/k", b"a" * 1000)
    store.put_bytes("s3://bkt/k", b"b")
    assert store.get_bytes("s3://bkt/k") == b"b"
    assert [o.size for o in store.list("s3://bkt/")] == [1]


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put_bytes("s3://bkt/gone", b"x")
    store.delete("s3://bkt/gone")
    store.delete("s3://bkt/gone")
    assert not store.exists("s3://bkt/gone")


def test_ensure_bucket_is_idempotent(store: ObjectStore) -> None:
    store.ensure_bucket("made-here")
    store.ensure_bucket("made-here")
    store.put_bytes("s3://made-here/k", b"x")
    assert [o.key for o in store.list("s3://made-here/")] == ["k"]


class _Unseekable(io.RawIOBase):
    """A stream that can only be read forward (like a socket or a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_large_objects_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(LARGE)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    info = store.put_file("s3://bkt/big/file.bin", src)
    assert info.size == LARGE
    store.put_stream("s3://bkt/big/stream.bin", io.BufferedReader(_Unseekable(data)))
    dest = tmp_path / "out" / "big.bin"
    store.download_file("s3://bkt/big/file.bin", dest)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert store.get_bytes("s3://bkt/big/stream.bin") == data
    assert b"".join(store.read_chunks("s3://bkt/big/file.bin")) == data
    assert [o.size for o in store.list("s3://bkt/big/")] == [LARGE, LARGE]


# -- the S3 store's own paths: multipart, ranged downloads, buckets, credentials -----------------------------


def test_s3_large_objects_go_up_in_parts_and_come_down_in_ranges(s3_server: S3Server, tmp_path: Path) -> None:
    store = s3_store(s3_server)
    store.ensure_bucket("bkt-large")
    data = os.urandom(LARGE)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    store.client.meta.events.register("provide-client-params.s3.*", record)
    store.put_file("s3://bkt-large/f.bin", src)
    parts = [p for name, p in calls if name == "UploadPart"]
    assert len(parts) == LARGE // PART
    assert {name for name, _ in calls} >= {"CreateMultipartUpload", "CompleteMultipartUpload"}
    calls.clear()
    store.download_file("s3://bkt-large/f.bin", tmp_path / "back.bin")
    ranges = [p["Range"] for name, p in calls if name == "GetObject"]
    assert len(ranges) == LARGE // PART and "bytes=0-5242879" in ranges
    assert (tmp_path / "back.bin").read_bytes() == data
    calls.clear()
    store.put_bytes("s3://bkt-large/small", b"x" * 1000)
    assert [name for name, _ in calls] == ["PutObject"]


def test_s3_a_missing_bucket_says_so(s3_server: S3Server, tmp_path: Path) -> None:
    store = s3_store(s3_server)
    said = "bucket 'no-such-bucket' does not exist"
    with pytest.raises(NotFoundError, match=said):
        list(store.list("s3://no-such-bucket/data/"))
    with pytest.raises(NotFoundError, match=said):
        store.get_bytes("s3://no-such-bucket/k")
    with pytest.raises(NotFoundError, match=said):
        store.download_file("s3://no-such-bucket/k", tmp_path / "k")
    with pytest.raises(NotFoundError, match=said):
        store.info("s3://no-such-bucket/k")
    with pytest.raises(NotFoundError, match=said):
        store.put_bytes("s3://no-such-bucket/k", b"x")
    assert not store.exists("s3://no-such-bucket/k")
    store.delete("s3://no-such-bucket/k")


def test_local_buckets_are_folders_made_by_the_first_put(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    assert list(store.list("s3://nobucket/x")) == []
    with pytest.raises(NotFoundError, match="no object at"):
        store.get_bytes("s3://nobucket/k")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"access_key_id": "AKIAUNKNOWNKEY000000"}, "AWS_ACCESS_KEY_ID"),
        ({"secret_access_key": "not-the-secret"}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_s3_bad_credentials(s3_server: S3Server, override: dict[str, str], field: str) -> None:
    from trainforge.storage.s3_settings import S3Credentials

    creds = {"access_key_id": s3_server.access_key_id, "secret_access_key": s3_server.secret_access_key, **override}
    store = s3_store(s3_server, credentials=S3Credentials(**creds))
    with pytest.raises(ValidationError) as startup:
        store.ensure_bucket("bkt")
    assert startup.value.field == field and field in startup.value.message
    with pytest.raises(StorageError, match="rejected the credentials"):
        store.get_bytes("s3://bkt/k")


def test_s3_unreachable_endpoint_names_the_setting(s3_server: S3Server) -> None:
    store = s3_store(s3_server, endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValidationError) as startup:
        store.ensure_bucket("bkt")
    assert startup.value.field == "AWS_ENDPOINT_URL_S3"
    assert "cannot reach the S3 endpoint" in startup.value.message


def test_open_store_from_configs(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_store({"kind": "local", "root": str(tmp_path / "objects")})
    assert isinstance(local, LocalObjectStore)
    with_credentials = s3_store(s3_server).config(credentials=True)
    assert with_credentials["credentials"]["secret_access_key"] == s3_server.secret_access_key
    store = open_store(with_credentials)
    store.ensure_bucket("bkt-config")
    store.put_bytes("s3://bkt-config/k", b"v")
    # Without credentials (what GET /v1/config hands an SDK): this process's own AWS_* environment signs.
    without = s3_store(s3_server).config(credentials=False)
    assert "credentials" not in without and without["endpoint_url"] == s3_server.endpoint
    assert without["addressing_style"] == "path"
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")  # the server's config wins for the endpoint
    assert open_store(without).get_bytes("s3://bkt-config/k") == b"v"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageError, match="rejected the credentials"):
        open_store(without).get_bytes("s3://bkt-config/k")
    with pytest.raises(ValidationError, match="unknown object store kind"):
        open_store({"kind": "ftp"})


# -- encryption at rest: the local store's own format, S3's SSE-KMS ------------------------------------------


def test_local_encrypted_objects_are_unreadable_on_disk_and_read_back_with_the_key(tmp_path: Path) -> None:
    keys = KeyDirectory(tmp_path / "kms")
    plain_store = LocalObjectStore(tmp_path / "objects", keyring=keys)
    enc = plain_store.with_encryption("alias/team-a")
    data = b"\x1f\x8b secret model bytes " * 1000
    src = tmp_path / "m.bin"
    src.write_bytes(data)
    assert enc.put_file("s3://bkt/m/file", src).size == len(data)
    enc.put_bytes("s3://bkt/m/bytes", data)
    enc.put_stream("s3://bkt/m/stream", io.BufferedReader(_Unseekable(data)))
    for key in ("file", "bytes", "stream"):
        on_disk = (tmp_path / "objects" / "bkt" / "m" / key).read_bytes()
        assert b"secret model bytes" not in on_disk and not on_disk.startswith(b"\x1f\x8b")
        assert plain_store.get_bytes(f"s3://bkt/m/{key}") == data  # any store with the keyring reads it
    assert plain_store.encryption_key_id("s3://bkt/m/file") == "alias/team-a"
    assert [o.size for o in plain_store.list("s3://bkt/m/")] == [len(data)] * 3
    plain_store.put_bytes("s3://bkt/m/plain", b"p")  # the plain store still writes plaintext
    assert plain_store.encryption_key_id("s3://bkt/m/plain") is None
    key_file = keys.path("alias/team-a")
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(list((tmp_path / "kms").iterdir())) == 1
    without_keys = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(StorageError, match="alias/team-a"):
        without_keys.get_bytes("s3://bkt/m/file")
    with pytest.raises(StorageError, match="alias/team-a"):
        without_keys.download_file("s3://bkt/m/file", tmp_path / "out")
    other_server = LocalObjectStore(tmp_path / "objects", keyring=KeyDirectory(tmp_path / "other-kms"))
    with pytest.raises(StorageError, match="not held by this server"):
        other_server.get_bytes("s3://bkt/m/file")


def test_local_encrypted_object_changed_on_disk_fails_to_read(tmp_path: Path) -> None:
    keys = KeyDirectory(tmp_path / "kms")
    enc = LocalObjectStore(tmp_path / "objects", keyring=keys).with_encryption("k")
    enc.put_bytes("s3://bkt/x", b"a" * 5000)
    path = tmp_path / "objects" / "bkt" / "x"
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 1
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="cannot decrypt"):
        enc.get_bytes("s3://bkt/x")
    with pytest.raises(StorageError):
        b"".join(enc.read_chunks("s3://bkt/x"))


def test_s3_with_encryption_puts_every_object_with_sse_kms(s3_server: S3Server, tmp_path: Path) -> None:
    store = s3_store(s3_server)
    store.ensure_bucket("bkt-sse")
    enc = store.with_encryption("alias/trainforge-test")
    data = os.urandom(LARGE // 2)  # above the multipart threshold: the multipart path carries it too
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    enc.put_file("s3://bkt-sse/big", src)
    enc.put_bytes("s3://bkt-sse/small", b"x")
    enc.put_stream("s3://bkt-sse/stream", io.BytesIO(b"y" * 100))
    store.put_bytes("s3://bkt-sse/plain", b"z")
    for key in ("big", "small", "stream"):
        head = store.client.head_object(Bucket="bkt-sse", Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"].endswith("alias/trainforge-test"), head["SSEKMSKeyId"]
    assert "SSEKMSKeyId" not in store.client.head_object(Bucket="bkt-sse", Key="plain")
    assert store.get_bytes("s3://bkt-sse/big") == data and store.get_bytes("s3://bkt-sse/small") == b"x"
