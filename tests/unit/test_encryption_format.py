"""The chunked AES-GCM object format and the server's key directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainforge.errors import StorageError
from trainforge.storage.encryption import (
    MAGIC,
    TAG,
    KeyDirectory,
    decrypt_bytes,
    encrypt_bytes,
    job_kms_key_id,
    parse_header,
)

KEY = bytes(range(32))
CHUNK = 64


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_round_trip_and_sizes(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt_bytes(data, KEY, "k", chunk_size=CHUNK)
    header = parse_header(blob)
    assert header is not None and header.key_id == "k" and header.chunk_size == CHUNK
    assert header.plaintext_size(len(blob)) == size
    assert len(blob) == header.size + size + TAG * (size // CHUNK + 1)
    assert decrypt_bytes(blob, KEY) == data
    # A plaintext too short to be told from chance (one random byte is in most ciphertexts) is not checked.
    assert len(data) < 8 or data not in blob


def test_same_content_encrypts_differently_each_time() -> None:
    assert encrypt_bytes(b"same", KEY, "k") != encrypt_bytes(b"same", KEY, "k")


def test_wrong_key_fails() -> None:
    blob = encrypt_bytes(b"secret", KEY, "k")
    with pytest.raises(StorageError, match="cannot decrypt"):
        decrypt_bytes(blob, bytes(32))


@pytest.mark.parametrize("where", ["header", "body", "tag"])
def test_any_changed_byte_fails(where: str) -> None:
    blob = bytearray(encrypt_bytes(os.urandom(3 * CHUNK), KEY, "key-1", chunk_size=CHUNK))
    header = parse_header(bytes(blob))
    assert header is not None
    index = {"header": header.size - 1, "body": header.size + 5, "tag": len(blob) - 1}[where]
    blob[index] ^= 0x40
    with pytest.raises(StorageError):
        decrypt_bytes(bytes(blob), KEY)


def test_cut_reordered_or_extended_objects_fail() -> None:
    blob = encrypt_bytes(os.urandom(3 * CHUNK + 5), KEY, "k", chunk_size=CHUNK)
    header = parse_header(blob)
    assert header is not None
    body = blob[header.size :]
    block = CHUNK + TAG
    chunks = [body[i : i + block] for i in range(0, len(body), block)]
    with pytest.raises(StorageError):  # the last chunk dropped: the object ends on a full chunk
        decrypt_bytes(header.raw + b"".join(chunks[:-1]), KEY)
    with pytest.raises(StorageError):  # two chunks swapped
        decrypt_bytes(header.raw + chunks[1] + chunks[0] + b"".join(chunks[2:]), KEY)
    with pytest.raises(StorageError):  # bytes appended
        decrypt_bytes(blob + b"x", KEY)
    with pytest.raises(StorageError):  # cut inside the header
        decrypt_bytes(blob[: len(MAGIC) + 3], KEY)


def test_plaintext_is_not_encrypted() -> None:
    assert parse_header(b"\x1f\x8b\x08 a gzip file") is None


def test_key_directory_creates_one_private_key_per_key_id(tmp_path: Path) -> None:
    keys = KeyDirectory(tmp_path / "kms")
    with pytest.raises(StorageError, match="not held"):
        keys.data_key("alias/a", uri="s3://b/k", for_write=False)
    first = keys.data_key("alias/a", for_write=True)
    assert keys.data_key("alias/a") == first and len(first) == 32
    assert keys.data_key("alias/b", for_write=True) != first
    assert keys.path("alias/a").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "kms").stat().st_mode & 0o777 == 0o700
    assert "alias" not in keys.path("alias/a").name  # file names are hashes: any key id is a safe name


def test_job_key_id_prefers_the_output_key() -> None:
    spec = {"OutputDataConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": "out"}, "ResourceConfig": {}}
    assert job_kms_key_id(spec) == "out"
    spec = {"OutputDataConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": ""}, "ResourceConfig": {"VolumeKmsKeyId": "v"}}
    assert job_kms_key_id(spec) == "v"
    assert job_kms_key_id({"OutputDataConfig": {}, "ResourceConfig": {}}) is None
