"""End to end: roles on a shared server. A user whose role reaches one prefix cannot stage a channel or write a
model outside it (the job fails before Training, naming the URI), cannot pass a role not granted to them, and
gets their default role from get_execution_role(); an admin's SageMaker-style RoleArn keeps working.

One server for the module; users and roles are made with the CLI as an admin would."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.errors import ValidationError
from trainforge.estimator import Estimator
from trainforge.settings import Settings

BUCKET = "trainforge-default"
TRAIN = """
import glob, os
rows = []
for path in sorted(glob.glob(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*.csv"))):
    rows += open(path).read().split()
print(f"training on {len(rows)} rows")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write(f"rows={len(rows)}")
"""


def cli(srv: ServerProcess, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(srv.env)
    if token is not None:
        env.update({"TRAINFORGE_ENDPOINT": srv.url, "TRAINFORGE_TOKEN": token})
    return subprocess.run(
        [sys.executable, "-m", "trainforge.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def cli_json(srv: ServerProcess, *args: str) -> Any:
    done = cli(srv, *args, "--output", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("roles") / "home"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    server = ServerProcess(home, extra_env=env).start()
    try:
        yield server
    finally:
        server.kill()
        kill_supervisors(home)


@pytest.fixture(scope="module")
def alice_token(srv: ServerProcess) -> str:
    """User alice, with role AliceRole: read s3://<bucket>/alice/, write s3://<bucket>/alice/out/."""
    token = str(cli_json(srv, "users", "create", "alice")["Token"])
    role = cli_json(
        srv,
        "roles",
        "create",
        "AliceRole",
        "--read",
        f"s3://{BUCKET}/alice/",
        "--write",
        f"s3://{BUCKET}/alice/out/",
    )
    assert role["Read"] == [f"s3://{BUCKET}/alice/"] and role["Arn"].endswith(":role/AliceRole")
    assert cli_json(srv, "roles", "grant", "AliceRole", "alice")["Default"] is True  # her first role
    return token


@pytest.fixture(scope="module")
def admin(srv: ServerProcess) -> trainforge.Session:
    session = trainforge.Session(settings=Settings(home=srv.home))
    session.upload_string_as_file_body("1\n2\n3\n", BUCKET, "alice/data/a.csv")
    session.upload_string_as_file_body("4\n5\n", BUCKET, "bob/data/b.csv")
    return session


@pytest.fixture(scope="module")
def alice(srv: ServerProcess, alice_token: str, admin: trainforge.Session) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=srv.home, endpoint=srv.url, token=alice_token))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    (root / "train.py").write_text(TRAIN)
    return root


def estimator(session: trainforge.Session, source: Path, *, role: str, output_path: str, **kw: Any) -> Estimator:
    return Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(source),
        role=role,
        instance_type="ml.m5.large",
        instance_count=1,
        output_path=output_path,
        sagemaker_session=session,
        **kw,
    )


def run(est: Estimator, inputs: dict[str, str]) -> dict[str, Any]:
    """Submit, wait for the end, return the describe answer."""
    est.fit(inputs, wait=False, logs=False)
    job = est.latest_training_job
    assert job is not None
    session = est.sagemaker_session
    wait_for(
        lambda: session.describe_training_job(job.name)["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"),
        timeout=180,
        what=f"job {job.name} to end",
    )
    desc: dict[str, Any] = session.client.describe_training_job(job.name)
    return desc


def statuses(desc: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in desc["SecondaryStatusTransitions"]]


def test_get_execution_role_returns_the_callers_default_role(
    alice: trainforge.Session, admin: trainforge.Session
) -> None:
    assert trainforge.get_execution_role(alice) == "arn:aws:iam::000000000000:role/AliceRole"
    assert trainforge.get_execution_role(admin) == "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"


def test_a_channel_outside_the_grant_fails_before_training(alice: trainforge.Session, source: Path) -> None:
    role = trainforge.get_execution_role(alice)
    est = estimator(
        alice, source, role=role, output_path=f"s3://{BUCKET}/alice/out", code_location=f"s3://{BUCKET}/alice/out"
    )
    desc = run(est, {"train": f"s3://{BUCKET}/bob/data"})
    assert desc["TrainingJobStatus"] == "Failed", desc
    reason = desc["FailureReason"]
    assert reason.startswith("ClientError: channel 'train': access denied to s3://trainforge-default/bob/data"), reason
    assert "AliceRole" in reason
    assert "Training" not in statuses(desc)


def test_an_output_path_outside_the_grant_fails_before_training(
    alice: trainforge.Session, admin: trainforge.Session, source: Path
) -> None:
    est = estimator(
        alice,
        source,
        role=trainforge.get_execution_role(alice),
        output_path=f"s3://{BUCKET}/bob/out",
        code_location=f"s3://{BUCKET}/alice/out",
    )
    desc = run(est, {"train": f"s3://{BUCKET}/alice/data"})
    assert desc["TrainingJobStatus"] == "Failed", desc
    reason = desc["FailureReason"]
    assert reason.startswith(
        "ClientError: OutputDataConfig.S3OutputPath: access denied to s3://trainforge-default/bob/out/"
    )
    assert "no write grant" in reason
    assert "Training" not in statuses(desc)
    assert admin.list_s3_files(BUCKET, "bob/out") == []


def test_a_job_within_the_grant_completes(alice: trainforge.Session, source: Path) -> None:
    est = estimator(
        alice,
        source,
        role=trainforge.get_execution_role(alice),
        output_path=f"s3://{BUCKET}/alice/out",
        code_location=f"s3://{BUCKET}/alice/out",
    )
    desc = run(est, {"train": f"s3://{BUCKET}/alice/data"})
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["ModelArtifacts"]["S3ModelArtifacts"].startswith(f"s3://{BUCKET}/alice/out/")


def test_a_user_cannot_pass_a_role_not_granted_to_them(alice: trainforge.Session, source: Path) -> None:
    est = estimator(
        alice,
        source,
        role="arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
        output_path=f"s3://{BUCKET}/alice/out",
        code_location=f"s3://{BUCKET}/alice/out",
    )
    with pytest.raises(ValidationError) as info:
        est.fit({"train": f"s3://{BUCKET}/alice/data"}, wait=False, logs=False)
    assert info.value.field == "RoleArn" or info.value.details.get("field") == "RoleArn"
    assert "AliceRole" in info.value.message and "trainforge roles grant" in info.value.message


def test_an_admin_passing_a_sagemaker_role_name_runs_with_the_default_role(
    admin: trainforge.Session, source: Path
) -> None:
    est = estimator(
        admin,
        source,
        role="arn:aws:iam::123456789012:role/service-role/SageMakerRole",
        output_path=f"s3://{BUCKET}/admin-out",
    )
    desc = run(est, {"train": f"s3://{BUCKET}/bob/data"})
    assert desc["TrainingJobStatus"] == "Completed", desc.get("FailureReason")


def test_roles_are_administered_by_admins_only(srv: ServerProcess, alice_token: str) -> None:
    denied = cli(srv, "roles", "list", token=alice_token)
    assert denied.returncode != 0 and "admin" in denied.stderr
    bad = cli(srv, "roles", "create", "Bad", "--read", "bucket/prefix/")
    assert bad.returncode == 2 and "--read" in bad.stderr and "s3://" in bad.stderr
    builtin = cli(srv, "roles", "delete", "TrainforgeExecutionRole")
    assert builtin.returncode == 2 and "built in" in builtin.stderr
    listed = {r["RoleName"]: r for r in cli_json(srv, "roles", "list")["Roles"]}
    assert listed["AliceRole"]["Users"] == ["alice"] and listed["AliceRole"]["DefaultFor"] == ["alice"]
    assert "admin" in listed["TrainforgeExecutionRole"]["DefaultFor"]
    assert cli(srv, "roles", "list").stdout.splitlines()[0].split()[:3] == ["NAME", "READ", "WRITE"]
