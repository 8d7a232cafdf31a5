"""Bring-your-own container images through a real server, real supervisors and a real Docker engine (issue #12 item
1): a job whose ``image_uri`` is a container image runs as SageMaker runs it, ``docker run <image> train`` with the
job's ``/opt/ml`` bound, its output streamed, its model packaged, its failure file read, its stop delivered as
``docker stop`` and its network cut by ``enable_network_isolation``. Each test derives its image from the session's
test images with ``docker build`` (FROM + COPY), so nothing needs a registry.
"""

from __future__ import annotations

import io
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.docker import DockerEngine
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError, ValidationError
from trainforge.estimator import Estimator
from trainforge.inputs import TrainingInput
from trainforge.job import TrainingJob
from trainforge.runtime.container import JOB_LABEL
from trainforge.settings import Settings

GRACE_S = 5


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, envs_dir: Path, docker_engine: DockerEngine
) -> Iterator[ServerProcess]:
    """One server for the module, its supervisors talking to the test engine; every job is limited to 2 GiB."""
    home = tmp_path_factory.mktemp("containers-home")
    env = {
        **docker_engine.env,
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_LOCAL_MEMORY_GIB": "2",
        "TRAINFORGE_STOP_GRACE_SECONDS": str(GRACE_S),
    }
    with running_server(home, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def build_image(engine: DockerEngine, tmp_path: Path, tag: str, base: str, files: dict[str, str]) -> str:
    """``docker build`` of ``FROM base`` plus each file copied to its absolute path, executable."""
    context = tmp_path / f"ctx-{tag.replace('/', '-').replace(':', '-')}"
    context.mkdir()
    lines = [f"FROM {base}"]
    for i, (target, text) in enumerate(files.items()):
        (context / f"f{i}").write_text(textwrap.dedent(text).lstrip())
        (context / f"f{i}").chmod(0o755)
        lines.append(f"COPY f{i} {target}")
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    engine.docker("build", "-q", "-t", tag, str(context), timeout=300)
    return tag


def estimator(session: trainforge.Session, image: str, **kwargs: Any) -> Estimator:
    return Estimator(
        image_uri=image,
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
        **kwargs,
    )


def latest(est: Estimator) -> TrainingJob:
    job = est.latest_training_job
    assert job is not None
    return job


def job_log(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name, limit=10000)["events"]]


def model_files(session: trainforge.Session, uri: str) -> dict[str, bytes]:
    data = session.object_store.get_bytes(uri)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def containers_of(engine: DockerEngine, job_name: str) -> list[str]:
    out = engine.docker("ps", "-a", "--filter", f"label={JOB_LABEL}={job_name}", "--format", "{{.Names}}")
    return out.stdout.split()


CUSTOM_TRAIN = """
#!/bin/sh
echo "custom train starting"
echo "host $SM_CURRENT_HOST job $TRAINING_JOB_NAME region $AWS_REGION"
echo "hyperparameters $(cat /opt/ml/input/config/hyperparameters.json | tr -d ' \\n')"
echo "data $(cat /opt/ml/input/data/train/data.csv)"
echo "supervisor env ${DOCKER_HOST:-absent} ${MY_SETTING:-unset}"
if echo x >> /opt/ml/input/data/train/data.csv 2>/dev/null
then echo "channel: writable"
else echo "channel: read-only"
fi
echo "model of $TRAINING_JOB_NAME" > /opt/ml/model/model.txt
echo "custom train done" >&2
"""


def test_custom_image_with_its_own_train_runs_to_completed(
    server: ServerProcess,
    session: trainforge.Session,
    docker_engine: DockerEngine,
    test_images: dict[str, str],
    tmp_path: Path,
) -> None:
    image = build_image(
        docker_engine, tmp_path, "tftest/custom:1", test_images["busybox"], {"/usr/bin/train": CUSTOM_TRAIN}
    )
    data = tmp_path / "data.csv"
    data.write_bytes(b"1,2,3\n")
    train = session.upload_data(str(data), key_prefix="containers/custom")
    est = estimator(session, image, hyperparameters={"epochs": 3}, environment={"MY_SETTING": "on"})
    est.fit({"train": TrainingInput(train)}, wait=True, logs=False)
    job = latest(est).describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    name = job["TrainingJobName"]
    log = job_log(session, name)
    assert log[0].startswith(f"[trainforge] executor: container {image} (docker "), log[0]
    assert "network: host" in log[0] and "memory limit 2 GiB" in log[0], log[0]
    digest = docker_engine.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    assert f"Container image {image} ({digest})" in log
    assert "custom train starting" in log and "custom train done" in log
    assert f"host algo-1 job {name} region local" in log
    assert 'hyperparameters {"epochs":"3"}' in log
    assert "data 1,2,3" in log
    assert "supervisor env absent on" in log  # the contract's environment and the user's, not the supervisor's
    assert "channel: read-only" in log
    assert log.index("custom train starting") < log.index("custom train done")
    assert model_files(session, job["ModelArtifacts"]["S3ModelArtifacts"]) == {
        "model.txt": f"model of {name}\n".encode()
    }
    assert containers_of(docker_engine, name) == []


SCRIPT = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning-rate", type=float)
args = parser.parse_args()
print(f"script mode: epochs={args.epochs} learning_rate={args.learning_rate} cwd={os.getcwd()}")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write(f"{args.epochs} {args.learning_rate}")
"""


def test_toolkit_image_runs_an_unmodified_script_mode_script(
    server: ServerProcess, session: trainforge.Session, test_images: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    est = estimator(
        session,
        test_images["toolkit"],
        entry_point="train.py",
        source_dir=str(src),
        hyperparameters={"epochs": 4, "learning-rate": 0.25},
    )
    est.fit(wait=True, logs=False)
    job = latest(est).describe()
    log = job_log(session, job["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed", (job.get("FailureReason"), log[-30:])
    assert "script mode: epochs=4 learning_rate=0.25 cwd=/opt/ml/code" in log
    assert model_files(session, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"model.txt": b"4 0.25"}


FAILING = """
#!/bin/sh
echo "about to fail"
printf 'ValueError: the data has no label column' > /opt/ml/output/failure
exit 1
"""


def test_failure_file_gives_sagemakers_failure_reason(
    server: ServerProcess,
    session: trainforge.Session,
    docker_engine: DockerEngine,
    test_images: dict[str, str],
    tmp_path: Path,
) -> None:
    image = build_image(docker_engine, tmp_path, "tftest/failing:1", test_images["busybox"], {"/opt/fail.sh": FAILING})
    est = estimator(session, image, container_entry_point=["/bin/sh", "/opt/fail.sh"])
    with pytest.raises(UnexpectedStatusError):
        est.fit(wait=True, logs=False)
    job = latest(est).describe()
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: ValueError: the data has no label column"
    assert "about to fail" in job_log(session, job["TrainingJobName"])
    assert containers_of(docker_engine, job["TrainingJobName"]) == []


TRAPPING = """
#!/bin/sh
trap 'echo "got SIGTERM"; echo saved > /opt/ml/model/at-stop.txt; exit 0' TERM
echo "waiting for a stop"
while true; do sleep 0.2; done
"""


def test_stop_reaches_the_container_within_the_grace_period(
    server: ServerProcess,
    session: trainforge.Session,
    docker_engine: DockerEngine,
    test_images: dict[str, str],
    tmp_path: Path,
) -> None:
    image = build_image(
        docker_engine, tmp_path, "tftest/trapping:1", test_images["busybox"], {"/usr/bin/train": TRAPPING}
    )
    est = estimator(session, image)
    est.fit(wait=False)
    name = latest(est).name
    wait_for(lambda: "waiting for a stop" in job_log(session, name), timeout=60, what="the container to start")
    assert len(containers_of(docker_engine, name)) == 1
    stopped_at = time.monotonic()
    latest(est).stop()
    wait_for(
        lambda: latest(est).describe()["TrainingJobStatus"] == "Stopped",
        timeout=GRACE_S + 30,
        what="the job to end Stopped",
    )
    assert time.monotonic() - stopped_at < GRACE_S + 20
    job = latest(est).describe()
    assert "got SIGTERM" in job_log(session, name)
    assert model_files(session, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"at-stop.txt": b"saved\n"}
    assert containers_of(docker_engine, name) == []


CONNECT = """
#!/usr/bin/python3
import json, socket
port = int(json.load(open("/opt/ml/input/config/hyperparameters.json"))["port"])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    print("network: reachable")
except OSError as exc:
    print("network: unreachable", type(exc).__name__)
"""


def test_network_isolation_blocks_the_containers_network(
    server: ServerProcess,
    session: trainforge.Session,
    docker_engine: DockerEngine,
    test_images: dict[str, str],
    tmp_path: Path,
) -> None:
    image = build_image(docker_engine, tmp_path, "tftest/connect:1", test_images["python"], {"/usr/bin/train": CONNECT})
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    seen: dict[bool, list[str]] = {}
    for isolated in (False, True):
        est = estimator(session, image, hyperparameters={"port": port}, enable_network_isolation=isolated)
        est.fit(wait=True, logs=False)
        job = latest(est).describe()
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        log = job_log(session, job["TrainingJobName"])
        assert f"network: {'none' if isolated else 'host'})" in log[0], log[0]
        seen[isolated] = [line for line in log if line.startswith("network: ")]
    assert seen[False] == ["network: reachable"], seen
    assert len(seen[True]) == 1 and seen[True][0].startswith("network: unreachable"), seen


def test_an_image_the_engine_cannot_get_fails_in_downloading_naming_it(
    server: ServerProcess, session: trainforge.Session
) -> None:
    image = "tftest/no-such-image:1"
    est = estimator(session, image)
    with pytest.raises(UnexpectedStatusError):
        est.fit(wait=True, logs=False)
    job = latest(est).describe()
    assert job["FailureReason"].startswith(f"ClientError: container image {image} is not in the node's engine")
    assert "docker pull" in job["FailureReason"] and "docker load" in job["FailureReason"]
    assert job["SecondaryStatusTransitions"][-2]["Status"] == "Downloading"


def test_containers_off_refuses_a_container_image_at_submit(
    tmp_path: Path, envs_dir: Path, docker_engine: DockerEngine
) -> None:
    env = {**docker_engine.env, "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_CONTAINERS": "off"}
    with running_server(tmp_path / "home", env) as srv:
        session = trainforge.Session(settings=Settings(home=srv.home))
        with pytest.raises(ValidationError) as refused:
            estimator(session, "tftest/custom:1").fit(wait=False)
    assert refused.value.field == "AlgorithmSpecification.TrainingImage", refused.value
    assert "TRAINFORGE_CONTAINERS=off" in refused.value.message


WHERE = """
import os, sys
print("catalogue container:", sys.executable, os.getcwd(), os.environ["SM_MODEL_DIR"])
"""


def test_catalogue_image_runs_in_its_built_container_else_in_its_environment(
    tmp_path: Path, envs_dir: Path, docker_engine: DockerEngine, test_images: dict[str, str]
) -> None:
    name = "trainforge/python:3.11"
    env = {**docker_engine.env, "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_CATALOGUE_CONTAINERS": "on"}
    src = tmp_path / "src"
    src.mkdir()
    (src / "where.py").write_text(WHERE)
    docker_engine.docker("rmi", "-f", name)
    with running_server(tmp_path / "home", env) as srv:
        session = trainforge.Session(settings=Settings(home=srv.home))

        def run() -> list[str]:
            est = estimator(session, name, entry_point="where.py", source_dir=str(src))
            est.fit(wait=True, logs=False)
            job = latest(est).describe()
            assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
            return job_log(session, job["TrainingJobName"])

        fallback = run()  # no build of the image in the engine: its uv environment, said in the log
        assert any(line.startswith(f"[trainforge] catalogue container image {name}: not used") for line in fallback)
        assert not any("/opt/trainforge/venv/bin/python" in line for line in fallback)

        # what `trainforge images build` makes (convention 3): a real venv at /opt/trainforge/venv, the label
        context = tmp_path / "ctx"
        context.mkdir()
        (context / "Dockerfile").write_text(
            f"FROM {test_images['python']}\n"
            "RUN python3 -m venv /opt/trainforge/venv\n"
            f"LABEL ai.trainforge.catalogue-image={name}\n"
        )
        docker_engine.docker("build", "-q", "--network", "host", "-t", name, str(context), timeout=300)
        inside = run()
        assert inside[0].startswith(f"[trainforge] executor: container {name} (docker "), inside[0]
        assert "catalogue container: /opt/trainforge/venv/bin/python /opt/ml/code /opt/ml/model" in inside
    docker_engine.docker("rmi", "-f", name)
