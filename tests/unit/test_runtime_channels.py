"""Channel staging: relative paths, sharding, file:// sources, failures, and copies (never links)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.runtime.channels import bindable_channel, relative_key, stage_channel
from trainforge.runtime.failure import JobFailed
from trainforge.spec.job import ChannelSpec
from trainforge.storage import LocalObjectStore


def channel(uri: str, *, name: str = "train", sharded: bool = False, data_type: str = "S3Prefix") -> ChannelSpec:
    return ChannelSpec.model_validate(
        {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3Uri": uri,
                    "S3DataType": data_type,
                    "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated",
                }
            },
        }
    )


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    s = LocalObjectStore(tmp_path / "store")
    for key in ("data/train/a.csv", "data/train/sub/b.csv", "data/train.csv", "data/trainx/c.csv", "other/z"):
        s.put_bytes(f"s3://bkt/{key}", key.encode())
    return s


def stage(store: LocalObjectStore, spec: ChannelSpec, dest: Path, index: int = 0, count: int = 1) -> dict[str, str]:
    dest.mkdir(parents=True)
    stage_channel(store, spec, dest, host_index=index, host_count=count, input_mode="File")
    return files_under(dest)


def test_relative_key_rules() -> None:
    assert relative_key("data/train/", "data/train/sub/b.csv") == "sub/b.csv"
    assert relative_key("data/train", "data/train/a.csv") == "a.csv"
    assert relative_key("data/train.csv", "data/train.csv") == "train.csv"
    assert relative_key("data/train", "data/trainx/c.csv") == "trainx/c.csv"
    assert relative_key("", "k/x") == "k/x"


def test_prefix_with_slash(store: LocalObjectStore, tmp_path: Path) -> None:
    assert stage(store, channel("s3://bkt/data/train/"), tmp_path / "d") == {
        "a.csv": "data/train/a.csv",
        "sub/b.csv": "data/train/sub/b.csv",
    }


def test_prefix_without_slash_and_exact_object(store: LocalObjectStore, tmp_path: Path) -> None:
    assert stage(store, channel("s3://bkt/data/train"), tmp_path / "d") == {
        "a.csv": "data/train/a.csv",
        "sub/b.csv": "data/train/sub/b.csv",
        "train.csv": "data/train.csv",
        "trainx/c.csv": "data/trainx/c.csv",
    }
    assert stage(store, channel("s3://bkt/data/train.csv"), tmp_path / "e") == {"train.csv": "data/train.csv"}


def test_sharded_by_key(store: LocalObjectStore, tmp_path: Path) -> None:
    spec = channel("s3://bkt/data/", sharded=True)
    shards = [stage(store, spec, tmp_path / f"h{i}", i, 3) for i in range(3)]
    # sorted keys: train.csv, train/a.csv, train/sub/b.csv, trainx/c.csv -> k % 3
    assert shards[0] == {"train.csv": "data/train.csv", "trainx/c.csv": "data/trainx/c.csv"}
    assert shards[1] == {"train/a.csv": "data/train/a.csv"}
    assert shards[2] == {"train/sub/b.csv": "data/train/sub/b.csv"}
    # FullyReplicated: everyone gets everything
    full = stage(store, channel("s3://bkt/data/"), tmp_path / "all", 1, 3)
    assert len(full) == 4


def test_empty_channel_fails_with_uri(store: LocalObjectStore, tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as info:
        stage(store, channel("s3://bkt/nothing/here"), tmp_path / "d")
    assert info.value.reason == "ClientError: channel 'train': no objects found under s3://bkt/nothing/here"


def test_dotdot_uri_is_rejected(store: LocalObjectStore, tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as info:
        stage(store, channel("s3://bkt/data/../other/"), tmp_path / "d")
    assert info.value.reason.startswith("ClientError: channel 'train': ")
    assert "'..'" in info.value.reason


def test_pipe_mode_is_rejected(store: LocalObjectStore, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(JobFailed, match="Pipe is not supported"):
        stage_channel(store, channel("s3://bkt/data/"), tmp_path / "d", host_index=0, host_count=1, input_mode="Pipe")


def test_file_uri_file_and_tree(tmp_path: Path, store: LocalObjectStore) -> None:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "x" / "1.txt").write_text("one")
    (src / "2.txt").write_text("two")
    assert stage(store, channel(f"file://{src}"), tmp_path / "d") == {"2.txt": "two", "x/1.txt": "one"}
    assert stage(store, channel(f"file://{src}/2.txt"), tmp_path / "e") == {"2.txt": "two"}
    with pytest.raises(JobFailed, match="no objects found"):
        stage(store, channel(f"file://{tmp_path}/missing"), tmp_path / "f")


def test_manifest_file(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes("s3://bkt/m.json", b'[{"prefix": "s3://bkt/data/"}, "train/a.csv", "trainx/c.csv"]')
    got = stage(store, channel("s3://bkt/m.json", data_type="ManifestFile"), tmp_path / "d")
    assert got == {"train/a.csv": "data/train/a.csv", "trainx/c.csv": "data/trainx/c.csv"}


def test_job_writing_its_input_never_changes_the_stored_object(store: LocalObjectStore, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    stage(store, channel("s3://bkt/data/train/"), dest)
    staged = dest / "a.csv"
    stored = store.root / "bkt" / "data" / "train" / "a.csv"
    assert os.stat(staged).st_ino != os.stat(stored).st_ino
    # A "job" (another process, same user) rewrites and appends to its input file.
    script = f"open({str(staged)!r}, 'w').write('changed by the job')"
    subprocess.run([sys.executable, "-c", script], check=True)
    assert staged.read_text() == "changed by the job"
    assert store.get_bytes("s3://bkt/data/train/a.csv") == b"data/train/a.csv"

    src = tmp_path / "local.txt"
    src.write_text("original")
    stage(store, channel(f"file://{src}"), tmp_path / "e")
    (tmp_path / "e" / "local.txt").write_text("changed")
    assert src.read_text() == "original"


def test_a_store_directory_channel_is_bindable_without_copying(tmp_path: Path) -> None:
    from trainforge.storage.encryption import MAGIC

    store = LocalObjectStore(tmp_path / "storage")
    storage = {"kind": "local", "root": str(store.root)}
    store.put_bytes("s3://b/p/a.csv", b"1,2\n")
    store.put_bytes("s3://b/p/sub/b.csv", b"3,4\n")
    bound = bindable_channel(store, storage, channel("s3://b/p/"), host_count=1, input_mode="File")
    assert bound is not None and bound.bound == store.root / "b" / "p"
    assert (bound.files, bound.bytes) == (2, 8)
    assert bindable_channel(store, storage, channel("s3://b/p"), host_count=1, input_mode="FastFile") is not None
    # a copy is needed: Pipe mode, a shard of several hosts, S3 storage, a prefix that also names a sibling
    assert bindable_channel(store, storage, channel("s3://b/p/"), host_count=1, input_mode="Pipe") is None
    sharded = channel("s3://b/p/", sharded=True)
    assert bindable_channel(store, storage, sharded, host_count=2, input_mode="File") is None
    assert bindable_channel(store, {"kind": "s3"}, channel("s3://b/p/"), host_count=1, input_mode="File") is None
    store.put_bytes("s3://b/p2/c.csv", b"5\n")
    assert bindable_channel(store, storage, channel("s3://b/p"), host_count=1, input_mode="File") is None
    assert bindable_channel(store, storage, channel("s3://b/none/"), host_count=1, input_mode="File") is None
    # an object encrypted at rest is ciphertext on disk: never bound
    (store.root / "b" / "p" / "enc.bin").write_bytes(MAGIC + b"rest")
    assert bindable_channel(store, storage, channel("s3://b/p/"), host_count=1, input_mode="File") is None
