"""End to end: a real full disk under the jobs root (a small tmpfs mounted on ``<home>/jobs``) while staging data
and while packaging the model. The job fails with SageMaker's ``Insufficient disk space`` reason, no partial
artifact appears, and the server goes on serving: the next job completes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainforge
from tests.support.disk import small_disk
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from trainforge.errors import UnexpectedStatusError
from trainforge.estimator import Estimator
from trainforge.inputs import TrainingInput
from trainforge.settings import Settings

DISK_MIB = 8
MiB = 2**20

BIG_MODEL = """
import os
with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.bin"), "wb") as f:
    f.write(os.urandom(5 * 2**20))  # fits the disk once, not twice (the file:// output path is on it too)
print("model written", flush=True)
"""

FILLS_THE_DISK = """
import os
n = 0
try:
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "huge.bin"), "wb") as f:
        while True:
            f.write(os.urandom(2**20))
            f.flush()
            n += 1
except OSError as exc:
    print(f"wrote {n} MiB, then: {exc}", flush=True)
for i in range(50):
    print("after the disk filled up, line", i, flush=True)
raise SystemExit(f"the disk filled up after {n} MiB")
"""

SMALL = """
import os
print("training on", sorted(os.listdir(os.environ.get("SM_CHANNEL_TRAIN", "/nonexistent")))
      if "SM_CHANNEL_TRAIN" in os.environ else "no data", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("small")
"""


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """A server whose jobs root is an 8 MiB file system (its database and object store are not)."""
    home = tmp_path_factory.mktemp("diskfull")
    with small_disk(home / "jobs", DISK_MIB):
        env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
        srv = ServerProcess(home, extra_env=env).start()
        try:
            yield srv
        finally:
            srv.kill()
            kill_supervisors(home)


@pytest.fixture
def fs_session(full_server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=full_server.home))


def failed(est: Estimator, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the estimator to its end, which must be Failed; its description."""
    with pytest.raises(UnexpectedStatusError):
        est.fit(inputs, logs="None")
    assert est.latest_training_job is not None
    d: dict[str, Any] = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Failed"
    return d


def test_a_channel_bigger_than_the_disk_fails_the_job_while_downloading(
    full_server: ServerProcess, fs_session: trainforge.Session, make_source: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"part-{i}.bin").write_bytes(os.urandom(4 * MiB))
    prefix = fs_session.upload_data(str(data), key_prefix="diskfull/data")
    # A manifest channel is always copied (a plain prefix of the local store is bound into the sandbox instead).
    manifest = f"s3://trainforge-default/diskfull/{tmp_path.name}.manifest"
    entries = [{"prefix": prefix + "/"}, "part-0.bin", "part-1.bin", "part-2.bin"]
    fs_session.object_store.put_bytes(manifest, json.dumps(entries).encode())
    est = script_estimator(fs_session, make_source({"train.py": SMALL}))
    d = failed(est, {"train": TrainingInput(manifest, s3_data_type="ManifestFile")})
    reason = d["FailureReason"]
    assert reason.startswith("ClientError: Data download failed:Insufficient disk space. No space left on device")
    assert f"staging channel 'train' from {manifest}" in reason and "TRAINFORGE_HOME" in reason
    statuses = [t["Status"] for t in d["SecondaryStatusTransitions"]]
    assert "Downloading" in statuses and "Training" not in statuses
    name = d["TrainingJobName"]
    assert list((full_server.home / "jobs" / name / "algo-1" / "opt/ml/input/data/train").iterdir()) == []
    assert not fs_session.object_store.exists(f"s3://trainforge-default/{name}/output/model.tar.gz")


def test_a_model_bigger_than_the_free_space_fails_the_upload_without_an_artifact(
    full_server: ServerProcess, fs_session: trainforge.Session, make_source: Any
) -> None:
    # model.tar.gz streams into its destination: a file:// output path on the full disk is where it cannot fit.
    out = full_server.home / "jobs" / "out"
    est = script_estimator(fs_session, make_source({"train.py": BIG_MODEL}), output_path=f"file://{out}")
    d = failed(est)
    reason = d["FailureReason"]
    assert reason.startswith("ClientError: Artifact upload failed:Insufficient disk space. No space left on device")
    assert "packaging model.tar.gz" in reason
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]][-2:] == ["Uploading", "Failed"]
    name = d["TrainingJobName"]
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no partial archive, no temporary file
    assert not list((full_server.home / "jobs" / name / "algo-1" / "tmp").iterdir())


def test_code_that_fills_the_disk_fails_with_its_own_error_and_every_line(
    full_server: ServerProcess, fs_session: trainforge.Session, make_source: Any
) -> None:
    est = script_estimator(fs_session, make_source({"train.py": FILLS_THE_DISK}))
    d = failed(est)
    name = d["TrainingJobName"]
    try:
        assert d["FailureReason"].startswith("AlgorithmError: ")
        assert "the disk filled up after" in d["FailureReason"]
        lines = [e["message"] for e in fs_session.client.logs(name)["events"]]
        assert "after the disk filled up, line 49" in lines
    finally:
        (full_server.home / "jobs" / name / "algo-1" / "opt/ml/model/huge.bin").unlink(missing_ok=True)


def test_the_server_serves_on_and_the_next_job_completes(
    full_server: ServerProcess, fs_session: trainforge.Session, make_source: Any
) -> None:
    assert httpx.get(full_server.url + "/health", timeout=5).status_code == 200
    est = script_estimator(fs_session, make_source({"train.py": SMALL}))
    est.fit(logs="None")
    assert est.latest_training_job is not None
    d = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Completed"
    assert fs_session.object_store.exists(d["ModelArtifacts"]["S3ModelArtifacts"])
    listed = fs_session.client.list_training_jobs(max_results=10)["TrainingJobSummaries"]
    assert [s["TrainingJobStatus"] for s in listed].count("Failed") == 3
