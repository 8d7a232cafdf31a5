"""``trainforge images build`` / ``list`` against a real engine (issue #12 item 2): the container image of a
catalogue image has the locked environment as a venv at /opt/trainforge/venv, trainforge's helper modules at
/opt/trainforge/image_files and the labels a supervisor recognises it by; a server with
TRAINFORGE_CATALOGUE_CONTAINERS=on then runs the catalogue image's jobs in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import trainforge
from tests.support.docker import DockerEngine, TestImages
from tests.support.server import running_server
from trainforge.estimator import Estimator
from trainforge.runtime.container import CATALOGUE_LABEL, LOCK_LABEL
from trainforge.runtime.locks import lock_for
from trainforge.settings import Settings
from trainforge.spec.images import CATALOGUE

NAME = "trainforge/python:3.11"


def cli(engine: DockerEngine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainforge.cli", *args],
        env={**os.environ, **engine.env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def built(docker_engine: DockerEngine, test_images: TestImages) -> Iterator[dict[str, object]]:
    """``trainforge images build trainforge/python:3.11 --base <the test python image>`` (its lock is empty: no
    network needed), once for the module; the image is removed afterwards."""
    docker_engine.docker("rmi", "-f", NAME)
    done = cli(docker_engine, "images", "build", NAME, "--base", test_images["python"], "--output", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        yield {"result": json.loads(done.stdout), "log": done.stderr}
    finally:
        docker_engine.docker("rmi", "-f", NAME)


def test_build_makes_the_catalogue_container_image(docker_engine: DockerEngine, built: dict[str, object]) -> None:
    lock = lock_for(CATALOGUE[NAME])
    assert lock is not None
    result = built["result"]
    assert isinstance(result, dict)
    (row,) = result["Images"]
    assert row["Name"] == NAME and row["LockSha256"] == lock.sha256
    assert f"Building {NAME} on tftest/python:3.11" in str(built["log"])

    inspect = json.loads(docker_engine.docker("image", "inspect", NAME).stdout)[0]
    assert inspect["Id"] == row["ImageId"]
    labels = inspect["Config"]["Labels"]
    assert labels[CATALOGUE_LABEL] == NAME and labels[LOCK_LABEL] == lock.sha256
    assert inspect["Config"]["Env"][0].startswith("PATH=/opt/trainforge/venv/bin:")

    probe = (
        "import sys, sagemaker_containers, trainforge_serving; "
        "print(sys.executable, sys.prefix, sagemaker_containers.__file__)"
    )
    out = docker_engine.docker(
        "run", "--rm", "--network", "none", "-e", "PYTHONPATH=/opt/trainforge/image_files", NAME, "python", "-c", probe
    )
    assert out.stdout.split() == [
        "/opt/trainforge/venv/bin/python",
        "/opt/trainforge/venv",
        "/opt/trainforge/image_files/sagemaker_containers/__init__.py",
    ]
    shipped = docker_engine.docker("run", "--rm", NAME, "sh", "-c", "cat /opt/trainforge/lock.txt").stdout
    assert shipped == lock.text
    walk = "import os; print(sorted(d for d, _, _ in os.walk('/opt/trainforge/image_files') if '__pycache__' in d))"
    caches = docker_engine.docker("run", "--rm", NAME, "python", "-B", "-c", walk)
    assert caches.stdout.strip() == "[]"  # the build context carries sources only


def test_list_shows_each_catalogue_image_its_lock_and_the_build(
    docker_engine: DockerEngine, built: dict[str, object]
) -> None:
    done = cli(docker_engine, "images", "list", "--output", "json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    rows = {row["Name"]: row for row in listing["Images"]}
    assert list(rows) == list(CATALOGUE)
    assert listing["Engine"] == {"Available": True, "Reason": None}
    lock = lock_for(CATALOGUE[NAME])
    assert lock is not None
    image_id = json.loads(docker_engine.docker("image", "inspect", NAME).stdout)[0]["Id"]
    assert rows[NAME]["LockSha256"] == lock.sha256
    assert rows[NAME]["Container"] == {"Digest": image_id, "LockSha256": lock.sha256, "Stale": False}
    assert rows[NAME]["Status"] == "built"
    assert rows["trainforge/python:current"]["LockSha256"] is None
    assert rows["trainforge/python:current"]["Status"].startswith("n/a")
    text = cli(docker_engine, "images", "list")
    line = next(x for x in text.stdout.splitlines() if x.startswith(NAME + " "))
    assert line.split()[1:4] == [lock.sha256[:12], "built", image_id]


def test_a_build_that_cannot_run_says_why_in_one_line(docker_engine: DockerEngine, tmp_path: Path) -> None:
    missing_base = cli(docker_engine, "images", "build", NAME, "--base", "tftest/absent:1")
    assert missing_base.returncode == 1
    error = missing_base.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {NAME}: the base image tftest/absent:1 is not in the engine"), error
    assert "--base" in error

    no_engine = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "images", "build", NAME],
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_engine.returncode == 1
    (line,) = no_engine.stderr.strip().splitlines()
    assert line.startswith(
        f"error: no container engine to build images in: no engine answers at DOCKER_HOST=unix://{tmp_path}/none.sock"
    )
    assert line.endswith("start dockerd or point DOCKER_HOST at one")


def test_a_server_with_catalogue_containers_runs_the_job_in_the_built_image(
    tmp_path: Path, envs_dir: Path, docker_engine: DockerEngine, built: dict[str, object]
) -> None:
    """The built image is what a supervisor picks for ``image_uri=trainforge/python:3.11`` (runtime side: H1's
    container executor)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "where.py").write_text("import sys\nprint('executable', sys.executable)\n")
    env = {**docker_engine.env, "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_CATALOGUE_CONTAINERS": "on"}
    with running_server(tmp_path / "home", env) as srv:
        session = trainforge.Session(settings=Settings(home=srv.home))
        est = Estimator(
            image_uri=NAME,
            entry_point="where.py",
            source_dir=str(src),
            role=trainforge.get_execution_role(),
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=session,
        )
        est.fit(wait=True, logs=False)
        job = est.latest_training_job
        assert job is not None
        described = job.describe()
        assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
        lines = [e["message"] for e in session.client.logs(job.name, limit=10000)["events"]]
    # The record names the build that ran and the lock it was built from (its label)
    lock = lock_for(CATALOGUE[NAME])
    assert lock is not None
    environment = described["Lineage"]["Environment"]
    assert environment["Image"] == NAME and environment["Fingerprint"].startswith("sha256:"), environment
    assert environment["LockSha256"] == lock.sha256
    assert described["Lineage"]["Container"]["Digest"] == environment["Fingerprint"]
    assert "executable /opt/trainforge/venv/bin/python" in lines, lines[-20:]
    assert lines[0].startswith(f"[trainforge] executor: container {NAME} (docker "), lines[0]
