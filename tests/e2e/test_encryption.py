"""End to end: encryption at rest. On S3 every object a job with ``output_kms_key`` writes carries SSE-KMS with
that key (checked with the S3 API); on the local store such objects are unreadable on disk, while the SDK, the
console and a later job (a channel) read them back through the server's keys."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainforge
from tests.support.s3 import S3Server
from tests.support.server import ServerProcess, kill_supervisors, running_server
from trainforge.estimator import Estimator
from trainforge.settings import Settings
from trainforge.storage import LocalObjectStore

BUCKET = "trainforge-default"
KEY = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRAIN = """
import glob, os, tarfile
for path in sorted(glob.glob(os.path.join(os.environ.get("SM_CHANNEL_TRAIN", "/nonexistent"), "*"))):
    if path.endswith(".tar.gz"):
        with tarfile.open(path) as tar:
            print("channel model members:", sorted(tar.getnames()))
    else:
        print("channel file:", os.path.basename(path), open(path).read().strip())
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write("the secret model")
os.makedirs("/opt/ml/checkpoints", exist_ok=True)
with open("/opt/ml/checkpoints/step-1.txt", "w") as out:
    out.write("checkpoint one")
"""


def estimator(session: trainforge.Session, source: Path, output_path: str, **kw: Any) -> Estimator:
    return Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(source),
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        output_path=output_path,
        sagemaker_session=session,
        **kw,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    (root / "train.py").write_text(TRAIN)
    return root


def fit(est: Estimator, inputs: Any) -> dict[str, Any]:
    est.fit(inputs, logs=False)
    assert est.latest_training_job is not None
    desc: dict[str, Any] = est.sagemaker_session.client.describe_training_job(est.latest_training_job.name)
    return desc


def log_text(session: trainforge.Session, name: str) -> str:
    return "\n".join(line["message"] for line in session.client.logs(name, limit=10000)["events"])


# -- local store ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_srv(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("enc") / "home"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as srv:
        yield srv


def test_local_objects_written_with_a_key_are_unreadable_on_disk_and_read_back_through_the_server(
    local_srv: ServerProcess, source: Path, tmp_path: Path
) -> None:
    session = trainforge.Session(settings=Settings(home=local_srv.home))
    root = Path(session.config["storage"]["root"])
    est = estimator(
        session, source, f"s3://{BUCKET}/enc/out", output_kms_key=KEY, checkpoint_s3_uri=f"s3://{BUCKET}/enc/ckpt"
    )
    desc = fit(est, None)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["OutputDataConfig"]["KmsKeyId"] == KEY
    model_uri = desc["ModelArtifacts"]["S3ModelArtifacts"]
    key = model_uri[len(f"s3://{BUCKET}/") :]

    # On disk: neither a gzip stream nor a tarball, and no plaintext.
    on_disk = root / BUCKET / key
    raw = on_disk.read_bytes()
    assert not raw.startswith(b"\x1f\x8b")
    with pytest.raises(tarfile.TarError):
        tarfile.open(on_disk).close()
    checkpoint = root / BUCKET / "enc" / "ckpt" / "step-1.txt"
    assert b"checkpoint one" not in checkpoint.read_bytes()
    assert LocalObjectStore(root).encryption_key_id(f"s3://{BUCKET}/enc/ckpt/step-1.txt") == KEY
    assert not any(KEY.encode() in p.read_bytes() for p in (local_srv.home / "kms").iterdir())  # keys, not ids

    # The SDK reads it back (keys from the server), as estimator.model_data consumers do.
    downloaded = session.download_data(tmp_path / "dl", BUCKET, key)
    with tarfile.open(downloaded[0]) as tar:
        member = tar.extractfile("model.txt")
        assert member is not None and member.read() == b"the secret model"
    assert session.read_s3_file(BUCKET, "enc/ckpt/step-1.txt") == "checkpoint one"

    # The console's artifact download decrypts too.
    with httpx.Client(base_url=local_srv.url, timeout=30) as console:
        login = console.post("/console/login", data={"token": local_srv.token, "next": "/console/jobs"})
        assert login.status_code in (200, 303), login.text
        got = console.get(f"/console/jobs/{desc['TrainingJobName']}/artifacts/model")
        assert got.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(got.content)) as tar:
            assert "model.txt" in tar.getnames()

    # A later job stages the encrypted model as a channel (its supervisor gets the key from the server) and
    # writes under its volume key.
    second = estimator(session, source, f"s3://{BUCKET}/enc/out2", volume_kms_key="alias/volume-key")
    desc2 = fit(second, {"train": model_uri})
    assert desc2["TrainingJobStatus"] == "Completed", desc2.get("FailureReason")
    assert desc2["ResourceConfig"]["VolumeKmsKeyId"] == "alias/volume-key"
    assert "channel model members: ['model.txt']" in log_text(session, desc2["TrainingJobName"])
    model2 = desc2["ModelArtifacts"]["S3ModelArtifacts"]
    assert LocalObjectStore(root).encryption_key_id(model2) == "alias/volume-key"


def test_a_user_without_a_role_on_the_object_gets_no_key(local_srv: ServerProcess) -> None:
    admin = trainforge.Session(settings=Settings(home=local_srv.home))
    with local_srv.client() as api:
        made = api.post("/v1/users", json={"UserName": "carol"})
        assert made.status_code == 200, made.text
        carol_token = made.json()["Token"]
    uri = next(iter(admin.object_store.list(f"s3://{BUCKET}/enc/ckpt/"))).uri
    with httpx.Client(base_url=local_srv.url, headers={"Authorization": f"Bearer {carol_token}"}) as carol:
        refused = carol.post("/v1/data-keys", json={"uri": uri})
    assert refused.status_code == 403, refused.text
    assert "access denied" in refused.json()["error"]["message"]


# -- S3 ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def s3_session(
    tf_home: Path, envs_dir: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[trainforge.Session]:
    env = {
        "TRAINFORGE_STORAGE": "s3",
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        **s3_server.env,
    }
    srv = ServerProcess(tf_home, extra_env=env).start()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield trainforge.Session(settings=Settings(home=srv.home))
    finally:
        srv.kill()
        kill_supervisors(tf_home)


def test_s3_objects_written_with_a_key_carry_sse_kms(
    s3_session: trainforge.Session, s3_server: S3Server, source: Path
) -> None:
    import boto3

    est = estimator(
        s3_session, source, f"s3://{BUCKET}/sse/out", output_kms_key=KEY, checkpoint_s3_uri=f"s3://{BUCKET}/sse/ckpt"
    )
    desc = fit(est, None)
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["OutputDataConfig"]["KmsKeyId"] == KEY
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        region_name=s3_server.region,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
    )
    model_key = desc["ModelArtifacts"]["S3ModelArtifacts"][len(f"s3://{BUCKET}/") :]
    for key in (model_key, "sse/ckpt/step-1.txt"):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", (key, head)
        assert head["SSEKMSKeyId"] == KEY or head["SSEKMSKeyId"].endswith(KEY.rsplit("/", 1)[-1]), head
    body = s3.get_object(Bucket=BUCKET, Key=model_key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert "model.txt" in tar.getnames()
