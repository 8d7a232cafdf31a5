"""End to end: the SDK exactly as a user calls it, a real server process, real supervisor processes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_iris

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError, ValidationError
from trainforge.inputs import TrainingInput
from trainforge.runtime.sandbox import probe
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn
from trainforge.storage import ObjectStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def store_of(server: ServerProcess) -> ObjectStore:
    """The server's object store as the SDK opens it (a local directory, or S3 on a team deployment)."""
    return trainforge.Session(settings=Settings(home=server.home)).object_store


def read_tar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_sklearn_estimator_trains_a_real_model(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    df.to_csv(tmp_path / "iris.csv", index=False)
    uri = session.upload_data(str(tmp_path / "iris.csv"), key_prefix="iris")
    assert uri == "s3://trainforge-default/iris/iris.csv"
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(EXAMPLES / "sklearn_iris" / "src"),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"C": 0.5},
        sagemaker_session=session,
    )
    est.fit({"train": TrainingInput(uri, content_type="text/csv")})
    out = capsys.readouterr().out
    assert "training on 150 rows, 4 features, C=0.5" in out
    assert out.index("Uploading - Uploading generated training model") < out.index("Uploaded s3://")
    assert "Training - Training image download completed. Training in progress." in out
    assert "Completed - Training job completed" in out
    assert "Training seconds:" in out

    name = est.latest_training_job.name
    assert est.model_data == f"s3://trainforge-default/{name}/output/model.tar.gz"
    files = read_tar(store_of(server).get_bytes(est.model_data))
    assert list(files) == ["model.joblib"]
    (tmp_path / "model.joblib").write_bytes(files["model.joblib"])
    model = joblib.load(tmp_path / "model.joblib")
    assert model.score(df.drop(columns=["species"]), df["species"]) > 0.9

    d = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Completed"
    assert [t["Status"] for t in d["SecondaryStatusTransitions"]][-4:] == [
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert d["HyperParameters"]["C"] == "0.5"
    assert d["HyperParameters"]["sagemaker_program"] == '"train.py"'
    assert d["TrainingTimeInSeconds"] >= 1
    assert store_of(server).exists(f"s3://trainforge-default/{name}/source/sourcedir.tar.gz")

    attached = SKLearn.attach(name, sagemaker_session=session)
    assert attached.model_data == est.model_data


def test_failing_script_fails_the_job_with_its_exception(session: trainforge.Session, make_source: Any) -> None:
    src = make_source(
        {
            "train.py": """
        import sys
        print("about to fail")
        raise ValueError("the learning rate is negative")
    """
        }
    )
    est = script_estimator(session, src)
    with pytest.raises(UnexpectedStatusError) as info:
        est.fit()
    reason = info.value.failure_reason or ""
    assert reason.startswith("AlgorithmError: ")
    assert "ValueError: the learning rate is negative" in reason
    assert "ValueError: the learning rate is negative" in str(info.value)
    d = est.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Failed" and d["FailureReason"] == reason and len(reason) <= 1024


def test_failure_file_becomes_the_failure_reason(session: trainforge.Session, make_source: Any) -> None:
    src = make_source(
        {
            "train.py": """
        import os, sys
        with open("/".join([os.environ["SM_OUTPUT_DIR"], "failure"]), "w") as f:
            f.write("bad data: " + "x" * 2000)
        sys.exit(3)
    """
        }
    )
    est = script_estimator(session, src, instance_type="local")
    with pytest.raises(UnexpectedStatusError):
        est.fit(logs="None")
    reason = est.latest_training_job.describe()["FailureReason"]
    assert reason.startswith("AlgorithmError: bad data: xxx") and len(reason) == 1024


STOPPABLE = """
    import os, signal, sys, time
    def on_term(signum, frame):
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "saved-on-sigterm.txt"), "w") as f:
            f.write("checkpoint")
        print("got SIGTERM, saved", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("looping", flush=True)
    while True:
        time.sleep(0.1)
"""


def test_stop_a_looping_script_keeps_what_it_saved(
    server: ServerProcess, session: trainforge.Session, make_source: Any
) -> None:
    src = make_source({"train.py": STOPPABLE})
    est = script_estimator(session, src)
    est.fit(wait=False)
    job = est.latest_training_job
    wait_for(
        lambda: any(e["message"] == "looping" for e in session.client.logs(job.name)["events"]),
        what="the script to start",
    )
    job.stop()
    wait_for(lambda: job.describe()["TrainingJobStatus"] == "Stopped", timeout=60, what="Stopped")
    d = job.describe()
    assert d["SecondaryStatus"] == "Stopped"
    assert "Stopping" in [t["Status"] for t in d["SecondaryStatusTransitions"]]
    files = read_tar(store_of(server).get_bytes(est.model_data))
    assert files == {"saved-on-sigterm.txt": b"checkpoint"}


def test_max_runtime_stops_the_job(server: ServerProcess, session: trainforge.Session, make_source: Any) -> None:
    src = make_source({"train.py": STOPPABLE})
    est = script_estimator(session, src, max_run=3)
    est.fit(logs="None")
    d = est.latest_training_job.describe()
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert read_tar(store_of(server).get_bytes(est.model_data)) == {"saved-on-sigterm.txt": b"checkpoint"}


def test_entry_point_missing_is_an_sdk_error_before_upload(
    server: ServerProcess, session: trainforge.Session, make_source: Any
) -> None:
    src = make_source({"other.py": "print(1)\n"})
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(src),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )
    with pytest.raises(ValidationError) as info:
        est.fit()
    assert "train.py" in str(info.value)
    assert list(store_of(server).list("s3://trainforge-default/")) == []
    assert session.list_training_jobs()["TrainingJobSummaries"] == []


def test_channel_without_objects_fails_before_training(session: trainforge.Session, make_source: Any) -> None:
    src = make_source({"train.py": "print('never runs')\n"})
    est = script_estimator(session, src)
    with pytest.raises(UnexpectedStatusError):
        est.fit({"train": "s3://trainforge-default/nothing/here/"})
    d = est.latest_training_job.describe()
    assert "s3://trainforge-default/nothing/here/" in d["FailureReason"]
    assert "Training" not in [t["Status"] for t in d["SecondaryStatusTransitions"]]


def test_a_script_cannot_change_a_stored_object_through_its_input(
    server: ServerProcess, session: trainforge.Session, make_source: Any, tmp_path: Path
) -> None:
    (tmp_path / "data.csv").write_text("1,2,3\n")
    uri = session.upload_data(str(tmp_path / "data.csv"), key_prefix="immutable")
    src = make_source(
        {
            "train.py": """
        import os
        path = os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv")
        with open(path, "w") as f:
            f.write("overwritten by the job")
        print("wrote", open(path).read())
    """
        }
    )
    est = script_estimator(session, src)
    if probe().available:  # sandboxed, the channel is a read-only mount: the write fails the job
        with pytest.raises(UnexpectedStatusError, match=r"Read-only file system|Permission denied"):
            est.fit({"train": uri})
    else:  # unsandboxed, the script writes its own copy
        est.fit({"train": uri})
    assert store_of(server).get_bytes(uri) == b"1,2,3\n"


def test_requirements_are_installed_for_the_job_only(session: trainforge.Session, make_source: Any) -> None:
    src = make_source(
        {
            "requirements.txt": "./tfhelperpkg\n",
            "tfhelperpkg/pyproject.toml": """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "tfhelperpkg"
            version = "0.1"
        """,
            "tfhelperpkg/tfhelperpkg/__init__.py": "GREETING = 'hello from an isolated dependency'\n",
            "train.py": """
            import os, sys
            os.chdir("/")
            import tfhelperpkg
            print(tfhelperpkg.GREETING, "at", tfhelperpkg.__file__)
        """,
        }
    )
    est = script_estimator(session, src)
    est.fit()
    lines = [e["message"] for e in session.client.logs(est.latest_training_job.name, limit=10000)["events"]]
    assert any(line.startswith("hello from an isolated dependency") for line in lines), lines
    with pytest.raises(ImportError):
        __import__("tfhelperpkg")


def test_shell_entry_point_and_hyperparameter_arguments(session: trainforge.Session, make_source: Any) -> None:
    src = make_source(
        {
            "run.sh": """
        #!/bin/sh
        echo "args: $@"
        echo "host: $SM_CURRENT_HOST hps: $SM_HPS"
    """
        }
    )
    est = script_estimator(session, src, entry_point="run.sh", hyperparameters={"epochs": 3, "lr": 0.1})
    est.fit()
    lines = [e["message"] for e in session.client.logs(est.latest_training_job.name, limit=10000)["events"]]
    assert "args: --epochs 3 --lr 0.1" in lines
    assert 'host: algo-1 hps: {"epochs":3,"lr":0.1}' in lines


def job_lines(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name, limit=10000)["events"]]


def test_package_entry_point_runs_as_a_module_with_file_channel_and_capped_type(
    session: trainforge.Session, make_source: Any, tmp_path: Path
) -> None:
    data = tmp_path / "local-data"
    (data / "nested").mkdir(parents=True)
    (data / "a.csv").write_text("1\n")
    (data / "nested" / "b.csv").write_text("2\n")
    src = make_source(
        {
            "setup.py": "from setuptools import setup\nsetup(name='trainer', version='0.1', py_modules=['trainer'])\n",
            "trainer.py": """
            import os
            root = os.environ["SM_CHANNEL_TRAIN"]
            files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
            print("module", __name__, "files", files, "cpus", os.environ["SM_NUM_CPUS"])
        """,
        }
    )
    est = script_estimator(session, src, entry_point="trainer.py", instance_type="ml.m5.24xlarge")
    est.fit({"train": f"file://{data}"})
    lines = job_lines(session, est.latest_training_job.name)
    assert any("ml.m5.24xlarge has 96 vCPUs" in line and "capped" in line for line in lines), lines
    expected_cpus = str(min(96, __import__("os").cpu_count() or 1))
    assert f"module __main__ files ['a.csv', 'nested/b.csv'] cpus {expected_cpus}" in lines


def test_a_channel_uri_that_escapes_its_bucket_fails_the_job(session: trainforge.Session, make_source: Any) -> None:
    src = make_source({"train.py": "print('never runs')\n"})
    est = script_estimator(session, src)
    with pytest.raises(UnexpectedStatusError):
        est.fit({"train": "s3://trainforge-default/../../etc/"})
    reason = est.latest_training_job.describe()["FailureReason"]
    assert ".." in reason and "Training" not in [
        t["Status"] for t in est.latest_training_job.describe()["SecondaryStatusTransitions"]
    ]


def test_container_entrypoint_and_arguments_run_instead_of_a_script(
    server: ServerProcess, session: trainforge.Session
) -> None:
    """AlgorithmSpecification.ContainerEntrypoint/ContainerArguments (how SageMaker's @remote starts jobs)."""
    request = {
        "TrainingJobName": "entrypoint-job",
        "RoleArn": trainforge.get_execution_role(),
        "AlgorithmSpecification": {
            "TrainingImage": "trainforge/python:current",
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/sh", "-c"],
            "ContainerArguments": ['echo "model dir is $SM_MODEL_DIR" && echo weights > "$SM_MODEL_DIR/w.txt"'],
        },
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    session.create_training_job(request)
    wait_for(
        lambda: session.client.describe_training_job("entrypoint-job")["TrainingJobStatus"] == "Completed",
        what="Completed",
    )
    lines = job_lines(session, "entrypoint-job")
    assert any(line.startswith("model dir is ") and line.endswith("opt/ml/model") for line in lines), lines
    assert read_tar(store_of(server).get_bytes("s3://trainforge-default/entrypoint-job/output/model.tar.gz")) == {
        "w.txt": b"weights\n"
    }


def test_checkpoints_are_restored_into_the_next_job(
    server: ServerProcess, session: trainforge.Session, make_source: Any
) -> None:
    src = make_source(
        {
            "train.py": """
        import json, os
        cfg = json.load(open(os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "checkpointconfig.json")))
        path = os.path.join(cfg["LocalPath"], "epoch.txt")
        epoch = int(open(path).read()) + 1 if os.path.exists(path) else 1
        print("resuming at epoch", epoch)
        with open(path, "w") as f:
            f.write(str(epoch))
    """
        }
    )
    uri = "s3://trainforge-default/checkpoints/resume-test"
    for expected in (1, 2):
        est = script_estimator(session, src, checkpoint_s3_uri=uri)
        est.fit()
        assert f"resuming at epoch {expected}" in job_lines(session, est.latest_training_job.name)
    assert store_of(server).get_bytes(f"{uri}/epoch.txt") == b"2"
