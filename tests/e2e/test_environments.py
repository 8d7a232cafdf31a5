"""End to end: jobs run in their image's uv environment, built once per node and reused; GPUs per job.

Every test server of the session shares one environments directory (the ``envs_dir`` fixture), so the
scikit-learn image is built at most once per test session.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError, ValidationError
from trainforge.estimator import Estimator
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn

SHOW_ENV = """
import sys, sklearn, pandas
print("executable", sys.executable)
print("versions", sklearn.__version__, pandas.__version__)
"""


def job_lines(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name, limit=10000)["events"]]


def transitions(session: trainforge.Session, name: str) -> list[tuple[str, str]]:
    d = session.describe_training_job(name)
    return [(t["Status"], t.get("StatusMessage", "")) for t in d["SecondaryStatusTransitions"]]


def sklearn_estimator(session: trainforge.Session, src: Path) -> SKLearn:
    return SKLearn(
        entry_point="train.py",
        source_dir=str(src),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )


def env_dirs(envs_dir: Path, image: str) -> list[Path]:
    found = []
    for meta in envs_dir.glob("*/trainforge-env.json"):
        if json.loads(meta.read_text())["image"] == image:
            found.append(meta.parent)
    return found


def test_sklearn_job_runs_in_its_image_environment_and_the_next_reuses_it(
    session: trainforge.Session, make_source: Any, envs_dir: Path
) -> None:
    src = make_source({"train.py": SHOW_ENV})
    first = sklearn_estimator(session, src)
    first.fit()
    lines = job_lines(session, first.latest_training_job.name)
    assert "versions 1.2.2 2.0.3" in lines, lines  # the image's pins, not the server's scikit-learn
    [env] = env_dirs(envs_dir, "trainforge/sklearn:1.2-1")
    assert f"executable {env}/bin/python" in lines
    assert sys.executable != f"{env}/bin/python"

    second = sklearn_estimator(session, src)
    second.fit()
    name = second.latest_training_job.name
    lines = job_lines(session, name)
    assert f"Reusing training environment trainforge/sklearn:1.2-1 ({env})" in lines
    assert not any(line.startswith("Preparing the training environment") for line in lines), lines
    assert ("Downloading", "Reusing training environment trainforge/sklearn:1.2-1") in transitions(session, name)
    assert f"executable {env}/bin/python" in lines
    assert env_dirs(envs_dir, "trainforge/sklearn:1.2-1") == [env]


def test_two_jobs_needing_a_new_environment_at_once_build_it_once(
    session: trainforge.Session, make_source: Any, envs_dir: Path
) -> None:
    # A requirements.txt no other test uses (the comment is part of the key): its layer is new to the session.
    requirements = f"# {uuid.uuid4().hex}\nsix==1.17.0\n"
    script = "import six, sys\nprint('six', six.__version__, sys.executable)\n"
    src = make_source({"requirements.txt": requirements, "train.py": script})
    ests = [
        Estimator(
            image_uri="trainforge/python:3.11",
            entry_point="train.py",
            source_dir=str(src),
            role=trainforge.get_execution_role(),
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=session,
        )
        for _ in range(2)
    ]
    for est in ests:
        est.fit(wait=False)
    for est in ests:
        est.latest_training_job.wait()
    logs = [job_lines(session, est.latest_training_job.name) for est in ests]
    label = "trainforge/python:3.11 + requirements.txt"
    prefix = f"Preparing the training environment {label} with uv into "
    built = [(i, x[len(prefix) :]) for i, lines in enumerate(logs) for x in lines if x.startswith(prefix)]
    assert len(built) == 1, logs
    index, layer = built[0]
    other = logs[1 - index]
    assert any(x.startswith(f"Reusing training environment {label} ({layer})") for x in other), other
    assert all(f"six 1.17.0 {layer}/bin/python" in lines for lines in logs), logs
    assert Path(layer) in env_dirs(envs_dir, label)


def test_requirements_txt_is_layered_on_the_sklearn_image(
    session: trainforge.Session, make_source: Any, envs_dir: Path
) -> None:
    src = make_source(
        {
            # scikit-learn unpinned: already satisfied by the image, as pip in a SageMaker container sees it.
            "requirements.txt": "scikit-learn\ntomli-w==1.2.0\n",
            "train.py": SHOW_ENV + "import tomli_w\nprint('tomli_w', tomli_w.__version__)\n",
        }
    )
    est = sklearn_estimator(session, src)
    est.fit()
    lines = job_lines(session, est.latest_training_job.name)
    assert "versions 1.2.2 2.0.3" in lines and "tomli_w 1.2.0" in lines, lines
    [layer] = env_dirs(envs_dir, "trainforge/sklearn:1.2-1 + requirements.txt")
    assert f"executable {layer}/bin/python" in lines
    [base] = env_dirs(envs_dir, "trainforge/sklearn:1.2-1")
    assert not list(base.glob("lib/python*/site-packages/tomli_w")), "the layer never writes into the image env"


def test_requirements_that_cannot_resolve_fail_the_job_naming_the_package(
    session: trainforge.Session, make_source: Any
) -> None:
    src = make_source(
        {"requirements.txt": "trainforge-no-such-package-zz9==1.0\n", "train.py": "print('never runs')\n"}
    )
    est = Estimator(
        image_uri="trainforge/python:3.11",
        entry_point="train.py",
        source_dir=str(src),
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )
    with pytest.raises(UnexpectedStatusError) as info:
        est.fit()
    reason = info.value.failure_reason or ""
    assert reason.startswith("AlgorithmError: InstallRequirementsError: "), reason
    assert "trainforge-no-such-package-zz9" in reason
    statuses = [s for s, _ in transitions(session, est.latest_training_job.name)]
    assert "Training" not in statuses and statuses[-1] == "Failed"


def test_an_unknown_image_is_rejected_at_submit(server: ServerProcess, session: trainforge.Session) -> None:
    est = Estimator(
        image_uri="trainforge/sklearn:0.1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )
    with pytest.raises(ValidationError) as info:
        est.fit(wait=False)
    assert info.value.field == "AlgorithmSpecification.TrainingImage"
    assert "trainforge/sklearn:0.1" in info.value.message and "trainforge/sklearn:1.2-1" in info.value.message
    body = {
        "TrainingJobName": "bad-image",
        "RoleArn": trainforge.get_execution_role(),
        # Not a catalogue name, and not a container image reference either (upper case, a space): refused at submit
        "AlgorithmSpecification": {"TrainingImage": "NVCR.io/Nvidia/PyTorch 24.01", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    with server.client() as client:
        response = client.post("/v1/training-jobs", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "AlgorithmSpecification.TrainingImage" in error["message"]
    assert session.list_training_jobs()["TrainingJobSummaries"] == []


GPU_SCRIPT = """
import os, time
print("gpus", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), os.environ["SM_NUM_GPUS"], flush=True)
deadline = time.monotonic() + 120
while not os.path.exists(os.environ["RELEASE_FILE"]) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


def test_gpu_jobs_get_their_own_gpus_and_wait_for_a_free_one(
    tf_home: Path, envs_dir: Path, make_source: Any, tmp_path: Path
) -> None:
    env = {"TRAINFORGE_LOCAL_GPUS": "2", "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_STOP_GRACE_SECONDS": "5"}
    env["TRAINFORGE_SANDBOX"] = "off"  # the jobs wait for a file this test creates on the host (a sandbox hides it)
    server = ServerProcess(tf_home, extra_env=env).start()
    release = tmp_path / "release"
    try:
        session = trainforge.Session(settings=Settings(home=tf_home))
        src = make_source({"train.py": GPU_SCRIPT})

        def estimator(instance_type: str) -> Estimator:
            return Estimator(
                image_uri="trainforge/python:current",
                entry_point="train.py",
                source_dir=str(src),
                role=trainforge.get_execution_role(),
                instance_type=instance_type,
                instance_count=1,
                environment={"RELEASE_FILE": str(release)},
                sagemaker_session=session,
            )

        gpu_jobs = [estimator("ml.g5.xlarge") for _ in range(3)]
        cpu_job = estimator("ml.m5.large")
        for est in [*gpu_jobs, cpu_job]:
            est.fit(wait=False)
        names = [est.latest_training_job.name for est in gpu_jobs]

        def gpu_line(name: str) -> str | None:
            return next((x for x in job_lines(session, name) if x.startswith("gpus ")), None)

        def pending_one() -> list[str] | None:
            states = [session.describe_training_job(n)["SecondaryStatus"] for n in names]
            printed = [gpu_line(n) for n in names]
            return states if states.count("Pending") == 1 and sum(p is not None for p in printed) == 2 else None

        states = wait_for(pending_one, timeout=60, what="two GPU jobs running and one pending")
        waiting = names[states.index("Pending")]
        running = [n for n in names if n != waiting]
        seen = sorted(gpu_line(n) or "" for n in running)
        assert seen == ["gpus 0 1", "gpus 1 1"]
        message = session.describe_training_job(waiting)["SecondaryStatusTransitions"][-1]["StatusMessage"]
        assert message == "Waiting for GPUs: 2 of 2 GPUs on this machine are in use and ml.g5.xlarge needs 1"
        cpu_name = cpu_job.latest_training_job.name
        assert wait_for(lambda: gpu_line(cpu_name), what="the CPU job's line") == "gpus unset 0"

        release.write_text("go")
        for name in names:
            wait_for(
                lambda n=name: session.describe_training_job(n)["TrainingJobStatus"] == "Completed",  # type: ignore[misc]
                timeout=90,
                what=f"{name} to complete",
            )
        assert gpu_line(waiting) in ("gpus 0 1", "gpus 1 1")
    finally:
        release.write_text("go")
        server.kill()
