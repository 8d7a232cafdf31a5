"""Checkpoint sync (reference §7.2) and full-disk failures, against a real local object store and a real small
file system (a tmpfs that fills up)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from tests.support.disk import small_disk
from tests.support.wait import wait_for
from trainforge.runtime.channels import stage_channel
from trainforge.runtime.checkpoints import CheckpointSync, restore, save
from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.failure import DiskPhase, JobFailed, disk_full, is_disk_full, is_disk_full_reason
from trainforge.runtime.packaging import publish_artifacts
from trainforge.runtime.stopping import StopSignal
from trainforge.spec.images import Image
from trainforge.spec.job import ChannelSpec
from trainforge.storage import LocalObjectStore
from trainforge.storage.encryption import MAGIC, KeyDirectory
from trainforge.storage.scoped import Grants, ScopedObjectStore

URI = "s3://bkt/ckpt"
MiB = 2**20


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "store")


def stored(store: LocalObjectStore, uri: str = URI) -> dict[str, bytes]:
    """The objects under ``uri`` by relative key, with their content."""
    prefix = uri.rstrip("/") + "/"
    return {o.uri[len(prefix) :]: store.get_bytes(o.uri) for o in store.list(prefix)}


class Log:
    """Collects what the sync says, as the supervisor's job log would."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, message: str, stream: str) -> None:
        self.lines.append((stream, message))

    def errors(self) -> list[str]:
        return [m for s, m in self.lines if s == "stderr"]


def test_restored_files_are_not_uploaded_again(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes(f"{URI}/step-1.pt", b"one")
    store.put_bytes(f"{URI}/sub/opt.pt", b"opt")
    local = tmp_path / "ckpt"
    assert restore(store, URI, local) == 2
    assert (local / "sub" / "opt.pt").read_bytes() == b"opt"
    sync = CheckpointSync(store, local, URI, say=Log())
    assert sync.sync_once(final=True).uploaded == 0


def test_a_file_is_uploaded_once_settled_and_again_when_changed(store: LocalObjectStore, tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    local.mkdir()
    sync = CheckpointSync(store, local, URI, say=Log())
    (local / "step-1.pt").write_bytes(b"a" * 10)
    assert sync.sync_once(final=False).uploaded == 0  # first seen: maybe still being written
    assert stored(store) == {}
    assert sync.sync_once(final=False).uploaded == 1  # unchanged over one poll: shipped
    assert stored(store) == {"step-1.pt": b"a" * 10}
    assert sync.sync_once(final=False).uploaded == 0  # nothing new
    (local / "step-1.pt").write_bytes(b"b" * 20)
    sync.sync_once(final=False)
    assert stored(store) == {"step-1.pt": b"a" * 10}
    assert sync.sync_once(final=False).uploaded == 1
    assert stored(store) == {"step-1.pt": b"b" * 20}


def test_a_removed_file_is_deleted_from_the_store(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put_bytes(f"{URI}/old.pt", b"old")
    store.put_bytes("s3://bkt/ckpt-other/keep.pt", b"not ours")
    local = tmp_path / "ckpt"
    restore(store, URI, local)
    sync = CheckpointSync(store, local, URI, say=Log())
    (local / "new.pt").write_bytes(b"new")
    sync.sync_once(final=False)
    sync.sync_once(final=False)
    (local / "old.pt").unlink()
    (local / "new.pt").unlink()
    counts = sync.sync_once(final=False)
    assert (counts.deleted, counts.uploaded) == (2, 0)
    assert stored(store) == {}
    assert store.exists("s3://bkt/ckpt-other/keep.pt")


def test_finish_ships_unsettled_files_and_the_store_equals_the_directory(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    store.put_bytes(f"{URI}/gone.pt", b"x")
    local = tmp_path / "ckpt"
    restore(store, URI, local)
    sync = CheckpointSync(store, local, URI, say=Log())
    (local / "gone.pt").unlink()
    (local / "deep" / "er").mkdir(parents=True)
    (local / "deep" / "er" / "last.pt").write_bytes(b"last")
    os.symlink(local / "deep" / "er" / "last.pt", local / "link.pt")  # links are not checkpoints
    totals = sync.finish()
    assert (totals.uploaded, totals.deleted) == (1, 1)
    assert stored(store) == {"deep/er/last.pt": b"last"}
    assert save(store, local, URI) == 1  # the one-shot save stores every file again


def test_the_thread_uploads_while_running(store: LocalObjectStore, tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    local.mkdir()
    sync = CheckpointSync(store, local, URI, say=Log(), poll_seconds=0.05)
    sync.start()
    try:
        (local / "step-1.pt").write_bytes(b"1")
        wait_for(lambda: stored(store) == {"step-1.pt": b"1"}, what="step-1 stored by the thread")
        (local / "step-1.pt").unlink()
        (local / "step-2.pt").write_bytes(b"2")
        wait_for(lambda: stored(store) == {"step-2.pt": b"2"}, what="step-1 deleted, step-2 stored")
        assert sync.running
    finally:
        sync.stop()
    assert not sync.running


def test_store_errors_are_said_once_and_do_not_stop_the_sync(store: LocalObjectStore, tmp_path: Path) -> None:
    local = tmp_path / "ckpt"
    local.mkdir()
    readonly = ScopedObjectStore(store, Grants("reader", read=("s3://bkt/",), write=()))
    log = Log()
    sync = CheckpointSync(readonly, local, URI, say=log)
    (local / "a.pt").write_bytes(b"a")
    for _ in range(4):
        counts = sync.sync_once(final=False)
    assert counts.failed == 1
    assert len(log.errors()) == 1 and "cannot store checkpoint s3://bkt/ckpt/a.pt" in log.errors()[0]
    with pytest.raises(Exception, match=r"s3://bkt/ckpt/a\.pt"):
        sync.finish()
    assert stored(store) == {}


def test_checkpoints_are_encrypted_at_rest_with_the_jobs_key(tmp_path: Path) -> None:
    plain = LocalObjectStore(tmp_path / "store", keyring=KeyDirectory(tmp_path / "keys"))
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "w.pt").write_bytes(b"weights")
    CheckpointSync(plain.with_encryption("job-key"), local, URI, say=Log(), stored={}).finish()
    assert (tmp_path / "store" / "bkt" / "ckpt" / "w.pt").read_bytes().startswith(MAGIC)
    assert plain.get_bytes(f"{URI}/w.pt") == b"weights"


# ----------------------------------------------------------------------------------- a real full disk


def fill_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))  # incompressible: gzip does not make it fit


def test_a_real_enospc_is_recognised_through_wrapping(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 1) as disk:
        with pytest.raises(OSError) as info:
            fill_random(disk / "big", 2 * MiB)
        assert is_disk_full(info.value)
        try:
            try:
                raise info.value
            except OSError:
                raise RuntimeError("could not write s3://b/k") from None  # as the S3 store re-raises
        except RuntimeError as wrapped:
            assert is_disk_full(wrapped)
    assert not is_disk_full(PermissionError(13, "Permission denied"))
    reason = disk_full(DiskPhase.ENVIRONMENT, "building x", tmp_path).reason
    assert reason.startswith("InternalServerError: Environment build failed:Insufficient disk space.")
    assert is_disk_full_reason(reason) and "TRAINFORGE_ENVS_DIR" in reason


def test_a_channel_bigger_than_the_disk_fails_staging_and_frees_the_space(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    for i in range(3):
        store.put_bytes(f"s3://bkt/data/part-{i}", os.urandom(MiB))
    spec = ChannelSpec.model_validate(
        {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/data/", "S3DataType": "S3Prefix"}}}
    )
    with small_disk(tmp_path / "disk", 2) as disk:
        dest = disk / "input" / "data" / "train"
        dest.mkdir(parents=True)
        with pytest.raises(JobFailed) as info:
            stage_channel(store, spec, dest, host_index=0, host_count=1, input_mode="File")
        reason = info.value.reason
        assert reason.startswith("ClientError: Data download failed:Insufficient disk space. ")
        assert "staging channel 'train' from s3://bkt/data/, 3 object(s), 3145728 bytes" in reason
        assert "TRAINFORGE_HOME" in reason and "VolumeSizeInGB" in reason
        assert list(dest.iterdir()) == []  # the partial copy is gone: the job can still write its log


def test_a_model_bigger_than_the_free_space_fails_packaging_without_an_artifact(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    # Archives stream into their destination: a file:// output path on the job's own full disk is where it fails.
    with small_disk(tmp_path / "disk", 4) as disk:
        fill_random(disk / "model" / "weights.bin", 3 * MiB)
        with pytest.raises(JobFailed) as info:
            publish_artifacts(
                store,
                output_path=f"file://{disk / 'out'}",
                job_name="j",
                model_dir=disk / "model",
                output_data_dir=disk / "data",
                tmp_dir=disk / "tmp",
            )
        reason = info.value.reason
        assert reason.startswith("ClientError: Artifact upload failed:Insufficient disk space. ")
        assert "packaging model.tar.gz" in reason
        assert [p for p in (disk / "out").rglob("*") if p.is_file()] == []  # no partial archive, no temporary file
    assert list(store.list("s3://bkt/")) == []


def test_a_full_object_store_is_an_internal_error_and_stores_no_part(tmp_path: Path) -> None:
    fill_random(tmp_path / "model" / "weights.bin", 3 * MiB)
    with small_disk(tmp_path / "disk", 2) as disk:
        full = LocalObjectStore(disk / "storage")
        with pytest.raises(JobFailed) as info:
            publish_artifacts(
                full,
                output_path="s3://bkt/out",
                job_name="j",
                model_dir=tmp_path / "model",
                output_data_dir=tmp_path / "data",
                tmp_dir=tmp_path / "tmp",
            )
        reason = info.value.reason
        assert reason.startswith("InternalServerError: Artifact upload failed:Insufficient disk space. ")
        assert "s3://bkt/out/j/output/model.tar.gz" in reason
        assert list(full.list("s3://bkt/")) == []
        assert not any(p.is_file() for p in (disk / "storage").rglob("*"))  # no temporary file left either


def test_an_environment_build_on_a_full_disk_is_an_internal_error_and_leaves_no_half_environment(
    tmp_path: Path,
) -> None:
    image = Image("test/empty:1", "test", "1", (), python=".".join(platform.python_version().split(".")[:2]))
    with small_disk(tmp_path / "disk", 1) as disk:
        with pytest.raises(OSError):
            fill_random(disk / "filler", 2 * MiB)  # the disk is now full to the last block
        with pytest.raises(JobFailed) as info:
            prepare_environment(
                image,
                envs_root=disk / "envs",
                server_python=sys.executable,
                env={},
                sink=lambda stream, line: None,
                on_status=lambda message: None,
                stop=StopSignal(),
            )
        reason = info.value.reason
        assert reason.startswith("InternalServerError: Environment build failed:Insufficient disk space. ")
        assert "building the training environment test/empty:1" in reason and "TRAINFORGE_ENVS_DIR" in reason
        assert [p.name for p in (disk / "envs").iterdir() if not p.name.endswith(".lock")] == []
