"""The sandbox user code runs in, through a real server: SageMaker's own ``/opt/ml`` paths, read-only zero-copy
channels, no view of the server's home, no network with ``enable_network_isolation``, memory held to the instance
type (the machine's memory is set to 1 GiB here, so a job may use 1 GiB), and the job log's first line saying all
of it. A server started with ``TRAINFORGE_SANDBOX=off`` runs the code unsandboxed and says so.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors, running_server
from tests.support.wait import wait_for
from trainforge.errors import ValidationError
from trainforge.inputs import TrainingInput
from trainforge.runtime.sandbox import probe
from trainforge.settings import Settings

pytestmark = pytest.mark.skipif(not probe().available, reason=f"bubblewrap does not work here: {probe().reason}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One sandboxing server for the module; the machine's memory says 1 GiB, so every job is limited to 1 GiB."""
    home = tmp_path_factory.mktemp("sandbox-home")
    env = {
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_LOCAL_MEMORY_GIB": "1",
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
    }
    with running_server(home, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def job_log(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name, limit=10000)["events"]]


def model_files(session: trainforge.Session, uri: str) -> dict[str, bytes]:
    data = session.object_store.get_bytes(uri)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


PROBE = """
import argparse, os, socket
parser = argparse.ArgumentParser()
parser.add_argument("--token-path")
parser.add_argument("--port", type=int)
args = parser.parse_args()
channel_file = "/opt/ml/input/data/train/data.csv"
print("channel inode", os.stat(channel_file).st_ino)
print("channel data", open(channel_file).read().strip())
try:
    with open(channel_file, "a") as out:
        out.write("scribbled")
    print("channel write: allowed")
except OSError as exc:
    print("channel write: refused", type(exc).__name__)
try:
    open("/opt/ml/input/data/train/new.csv", "w").close()
    print("channel new file: allowed")
except OSError as exc:
    print("channel new file: refused", exc.errno)
try:
    print("token: read", len(open(args.token_path).read()))
except OSError as exc:
    print("token: refused", type(exc).__name__)
try:
    socket.create_connection(("127.0.0.1", args.port), timeout=3).close()
    print("network: reachable")
except OSError as exc:
    print("network: unreachable", type(exc).__name__)
with open("/opt/ml/model/x", "w") as out:
    out.write("written at a hard-coded path")
"""


def probe_estimator(session: trainforge.Session, server: ServerProcess, tmp_path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "train.py").write_text(PROBE)
    hps = {"token-path": str(server.home / "token"), "port": server.url.rsplit(":", 1)[1]}
    return script_estimator(session, src, hyperparameters=hps, **kwargs)


def test_code_sees_opt_ml_read_only_zero_copy_channels_and_not_the_home(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"1,2,3\n")
    session.upload_data(str(data), key_prefix="sandbox-data")
    stored = server.home / "storage" / "trainforge-default" / "sandbox-data" / "data.csv"
    assert stored.read_bytes() == b"1,2,3\n"

    est = probe_estimator(session, server, tmp_path)
    est.fit({"train": TrainingInput("s3://trainforge-default/sandbox-data/")}, wait=True, logs=False)
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    log = job_log(session, job["TrainingJobName"])
    first = log[0]
    assert first.startswith("[trainforge] sandbox: bubblewrap (mount, pid, ipc namespaces; network: host);"), first
    assert "memory limit 1 GiB" in first and "2 CPUs (" in first
    assert "Channel 'train': 1 file(s), 6 bytes, bound read-only (no copy)" in log
    assert f"channel inode {stored.stat().st_ino}" in log  # the store's own file, not a copy
    assert "channel data 1,2,3" in log
    assert any(line.startswith("channel write: refused ") for line in log), log  # the object is 0444 too
    assert "channel new file: refused 30" in log  # EROFS: the mount itself is read-only
    assert stored.read_bytes() == b"1,2,3\n"
    assert "token: refused FileNotFoundError" in log
    assert "network: reachable" in log
    files = model_files(session, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert files == {"x": b"written at a hard-coded path"}


def test_network_isolation_leaves_the_code_without_network(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path
) -> None:
    data = tmp_path / "data.csv"
    data.write_bytes(b"4,5,6\n")
    session.upload_data(str(data), key_prefix="isolated-data")
    est = probe_estimator(session, server, tmp_path, enable_network_isolation=True)
    est.fit({"train": TrainingInput("s3://trainforge-default/isolated-data/")}, wait=True, logs=False)
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    log = job_log(session, job["TrainingJobName"])
    assert log[0].startswith("[trainforge] sandbox: bubblewrap (mount, pid, ipc namespaces; network: none);")
    assert "network: unreachable ConnectionRefusedError" in log
    assert "channel data 4,5,6" in log
    # staging and the upload still happened, outside the sandbox
    assert model_files(session, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"x": b"written at a hard-coded path"}
    # the hosts of an isolated multi-host job could never rendezvous: refused at submit
    two_hosts = probe_estimator(session, server, tmp_path, enable_network_isolation=True)
    two_hosts.instance_count = 2
    with pytest.raises(ValidationError, match="EnableNetworkIsolation") as refused:
        two_hosts.fit(wait=False)
    assert "InstanceCount" in str(refused.value)


HOG = """
import time
chunks = []
print("allocating", flush=True)
for i in range(64):  # 64 x 64 MiB = 4 GiB, far past the 1 GiB limit
    chunks.append(b"\\x01" * (64 << 20))
print("allocated 4 GiB: the limit did not hold", flush=True)
"""

SMALL = """
import time
time.sleep(3)
print("small job done")
"""


def test_a_job_past_its_memory_fails_with_out_of_memory_and_harms_nothing(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path
) -> None:
    (tmp_path / "hog").mkdir()
    (tmp_path / "hog" / "train.py").write_text(HOG)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "train.py").write_text(SMALL)
    hog = script_estimator(session, tmp_path / "hog")
    small = script_estimator(session, tmp_path / "small")
    hog.fit(wait=False)
    small.fit(wait=False)
    hog_name = hog.latest_training_job.name
    small_name = small.latest_training_job.name

    def ended(name: str) -> bool:
        return session.client.describe_training_job(name)["TrainingJobStatus"] in ("Completed", "Failed", "Stopped")

    wait_for(lambda: ended(hog_name) and ended(small_name), timeout=180)
    job = session.client.describe_training_job(hog_name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        "OutOfMemoryError: Please use an instance type with more memory, or reduce the size of job data"
    ), job["FailureReason"]
    assert "1 GiB" in job["FailureReason"]
    assert "the limit did not hold" not in "\n".join(job_log(session, hog_name))
    assert session.client.describe_training_job(small_name)["TrainingJobStatus"] == "Completed"
    assert server.client().get("/health").status_code == 200  # the server is unharmed


def test_a_server_with_the_sandbox_off_runs_unsandboxed_and_says_so(
    tmp_path_factory: pytest.TempPathFactory, envs_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path_factory.mktemp("sandbox-off-home")
    env = {"TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_SANDBOX": "off"}
    srv = ServerProcess(home, extra_env=env).start()
    try:
        session = trainforge.Session(settings=Settings(home=home))
        (tmp_path / "train.py").write_text("import os\nprint('model dir', os.environ['SM_MODEL_DIR'])\n")
        est = script_estimator(session, tmp_path)
        est.fit(wait=True, logs=False)
        job = est.latest_training_job.describe()
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        log = job_log(session, job["TrainingJobName"])
        assert log[0].startswith("[trainforge] sandbox: off (TRAINFORGE_SANDBOX=off); the code runs unsandboxed")
        model_dir = next(line for line in log if line.startswith("model dir "))
        assert model_dir.endswith("opt/ml/model") and model_dir != "model dir /opt/ml/model"
        assert os.path.isdir(model_dir.removeprefix("model dir "))
    finally:
        srv.kill()
        kill_supervisors(home)
