"""End to end on S3: a real server with ``TRAINFORGE_STORAGE=s3`` on a real S3-compatible server (moto), real
supervisors, the SDK as a user calls it with their own ``AWS_*`` credentials."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.s3 import S3Server, free_port
from tests.support.server import ServerProcess, kill_supervisors
from trainforge.errors import UnexpectedStatusError
from trainforge.inputs import TrainingInput
from trainforge.settings import Settings

TRAIN = """
import glob, os
rows = []
for path in sorted(glob.glob(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*.csv"))):
    rows += open(path).read().split()
print(f"training on {len(rows)} rows from S3")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write(f"rows={len(rows)}")
"""


def s3_env(s3: S3Server, envs_dir: Path) -> dict[str, str]:
    return {
        "TRAINFORGE_STORAGE": "s3",
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        **s3.env,
    }


@pytest.fixture
def s3_srv(tf_home: Path, envs_dir: Path, s3_server: S3Server) -> Iterator[ServerProcess]:
    """A running server whose object store is the moto server."""
    srv = ServerProcess(tf_home, extra_env=s3_env(s3_server, envs_dir)).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(tf_home)


@pytest.fixture
def s3_session(s3_srv: ServerProcess, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> trainforge.Session:
    """The SDK of a user whose own environment holds the S3 credentials (as with SageMaker)."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return trainforge.Session(settings=Settings(home=s3_srv.home))


def raw_s3(s3: S3Server) -> Any:
    """A plain boto3 client on the moto server: checks what landed there without going through trainforge."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
    )


def console_client(srv: ServerProcess) -> httpx.Client:
    """An HTTP client signed into the console with the API token."""
    client = httpx.Client(base_url=srv.url, timeout=30)
    r = client.post("/console/login", data={"token": srv.token, "next": "/console/jobs"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def test_a_job_reads_its_channel_from_s3_and_its_model_lands_in_the_bucket(
    s3_srv: ServerProcess, s3_session: trainforge.Session, s3_server: S3Server, make_source: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1\n2\n3\n")
    (data / "b.csv").write_text("4\n")
    uri = s3_session.upload_data(str(data), key_prefix="e2e-s3/train")
    assert uri == "s3://trainforge-default/e2e-s3/train"
    est = script_estimator(s3_session, make_source({"train.py": TRAIN}))
    est.fit({"train": TrainingInput(uri, content_type="text/csv")}, logs=False)

    name = est.latest_training_job.name
    assert est.model_data == f"s3://trainforge-default/{name}/output/model.tar.gz"
    model = raw_s3(s3_server).get_object(Bucket="trainforge-default", Key=f"{name}/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(model["Body"].read())) as tar:
        member = tar.extractfile("model.txt")
        assert member is not None and member.read() == b"rows=4"
    logs = s3_srv.client().get(f"/v1/training-jobs/{name}/logs").text
    assert "training on 4 rows from S3" in logs
    assert not (s3_srv.home / "storage").exists()

    # The SDK's config names the endpoint but never the server's secrets.
    with s3_srv.client() as api:
        config = api.get("/v1/config")
    storage = config.json()["storage"]
    assert storage["kind"] == "s3" and storage["endpoint_url"] == s3_server.endpoint
    assert "credentials" not in storage and s3_server.secret_access_key not in config.text

    # The console lists the model archive with its size and streams it from the bucket.
    console = console_client(s3_srv)
    try:
        page = console.get(f"/console/jobs/{name}")
        assert page.status_code == 200
        assert '/artifacts/model" download>model.tar.gz</a>' in page.text  # a link: the store found the object
        download = console.get(f"/console/jobs/{name}/artifacts/model")
        assert download.status_code == 200
        assert (
            download.content
            == raw_s3(s3_server)
            .get_object(Bucket="trainforge-default", Key=f"{name}/output/model.tar.gz")["Body"]
            .read()
        )
        assert f'filename="{name}-model.tar.gz"' in download.headers["content-disposition"]
        source = console.get(f"/console/jobs/{name}/artifacts/source")
        assert source.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(source.content)) as tar:
            assert "train.py" in tar.getnames()
        assert console.get(f"/console/jobs/{name}/artifacts/..%2F..%2Ftoken").status_code == 404
    finally:
        console.close()


def test_a_channel_in_a_missing_bucket_fails_before_training(s3_session: trainforge.Session, make_source: Any) -> None:
    est = script_estimator(s3_session, make_source({"train.py": "print('never runs')\n"}))
    with pytest.raises(UnexpectedStatusError):
        est.fit({"train": "s3://no-such-bucket-e2e/train/"}, logs=False)
    d = est.latest_training_job.describe()
    assert "bucket 'no-such-bucket-e2e' does not exist" in d["FailureReason"]
    assert "Training" not in [t["Status"] for t in d["SecondaryStatusTransitions"]]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:{port}"}, "AWS_ENDPOINT_URL_S3"),
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000"}, "AWS_ACCESS_KEY_ID"),
    ],
)
def test_a_server_on_a_wrong_s3_setting_does_not_start_and_says_which(
    tf_home: Path, envs_dir: Path, s3_server: S3Server, override: dict[str, str], setting: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORGE_", "AWS_"))}
    env.update(s3_env(s3_server, envs_dir), TRAINFORGE_HOME=str(tf_home))
    env.update({k: v.format(port=free_port()) for k, v in override.items()})
    # python -m trainforge.server: one line, no traceback, exit 2.
    run = subprocess.run(
        [sys.executable, "-m", "trainforge.server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {setting}: ") and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    # trainforge server start (what Session() runs too): the same line reaches the user.
    start = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "server", "start"], env=env, capture_output=True, text=True, timeout=60
    )
    assert start.returncode != 0 and "Traceback" not in start.stderr
    assert f"while starting: {setting}: " in start.stderr
    assert not (tf_home / "storage").exists() and not (tf_home / "server.json").exists()
