"""The launch contract: supervisor.json round trip, privacy, errors; the job-root layout."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from trainforge.errors import ValidationError
from trainforge.runtime.launch import (
    InstanceInfo,
    SupervisorConfig,
    SupervisorResult,
    read_config,
    read_result,
    supervisor_command,
    write_config,
    write_result,
)
from trainforge.runtime.layout import JobPaths, build_tree
from trainforge.spec.job import CreateTrainingJobRequest

SPEC = {
    "TrainingJobName": "my-job",
    "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
    "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
    "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "HyperParameters": {"epochs": "10", "sagemaker_program": '"train.py"'},
    "InputDataConfig": [
        {
            "ChannelName": "train",
            "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/train/"}},
        }
    ],
    "CheckpointConfig": {"S3Uri": "s3://bkt/ckpt"},
}


def config() -> SupervisorConfig:
    return SupervisorConfig(
        job_name="my-job",
        host="algo-1",
        hosts=["algo-1"],
        spec=SPEC,
        server_url="http://127.0.0.1:1",
        server_file=None,
        agent_token="secret",
        storage={"kind": "local", "root": "/tmp/store"},
        instance=InstanceInfo(type="ml.m5.large", vcpus=2, memory_gib=8.0, gpus=0, effective_vcpus=2),
        python=sys.executable,
    )


def test_round_trip_and_mode(tmp_path: Path) -> None:
    path = write_config(tmp_path, config())
    assert path == tmp_path / "supervisor.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_config(path) == config()
    data = json.loads(path.read_text())
    # Every field is written (optional ones too); the foundation's keys keep their names.
    assert set(data) == set(SupervisorConfig.model_fields)
    assert set(data) >= {
        "job_name", "host", "hosts", "spec", "server_url", "server_file", "agent_token", "storage", "region",
        "account_id", "stop_grace_seconds", "instance", "python", "envs_root", "env_reuse_server", "gpu_ids",
    }  # fmt: skip
    assert supervisor_command(config(), tmp_path) == [
        sys.executable, "-m", "trainforge.runtime.supervisor", str(tmp_path / "supervisor.json"),
    ]  # fmt: skip


def test_bad_config_names_field(tmp_path: Path) -> None:
    data = config().model_dump(mode="json")
    del data["agent_token"]
    (tmp_path / "supervisor.json").write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="agent_token"):
        read_config(tmp_path / "supervisor.json")
    with pytest.raises(ValidationError):
        read_config(tmp_path / "missing.json")


def test_result_file(tmp_path: Path) -> None:
    assert read_result(tmp_path) is None
    write_result(tmp_path, SupervisorResult(job_name="j", host="algo-1", status="Completed", delivered=True))
    result = read_result(tmp_path)
    assert result is not None and result.status == "Completed"


def test_build_tree(tmp_path: Path) -> None:
    paths = JobPaths.at(tmp_path)
    build_tree(paths, CreateTrainingJobRequest.model_validate(SPEC), "algo-1", ["algo-1"])
    for sub in ("input/config", "input/data/train", "code", "model", "output/data", "output/intermediate"):
        assert (tmp_path / "opt/ml" / sub).is_dir(), sub
    assert (tmp_path / "opt/ml/checkpoints").is_dir()
    config_dir = tmp_path / "opt/ml/input/config"
    assert json.loads((config_dir / "hyperparameters.json").read_text()) == SPEC["HyperParameters"]
    assert json.loads((config_dir / "inputdataconfig.json").read_text()) == {
        "train": {
            "ContentType": "text/csv",
            "RecordWrapperType": "None",
            "S3DistributionType": "FullyReplicated",
            "TrainingInputMode": "File",
        }
    }
    assert json.loads((config_dir / "resourceconfig.json").read_text()) == {
        "current_host": "algo-1",
        "current_instance_type": "ml.m5.large",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": "ml.m5.large", "hosts": ["algo-1"]}
        ],
        "network_interface_name": "eth0",
    }
    assert json.loads((config_dir / "checkpointconfig.json").read_text()) == {
        "LocalPath": str(tmp_path.resolve() / "opt/ml/checkpoints"),
        "S3Uri": "s3://bkt/ckpt",
    }
    assert paths.map_container_path("/opt/ml/input/data/x") == str(tmp_path.resolve() / "opt/ml/input/data/x")
    assert paths.map_container_path("/opt/mlx") == "/opt/mlx"


def test_a_config_written_before_environments_and_gpus_still_loads(tmp_path: Path) -> None:
    old = {
        "job_name": "j",
        "host": "algo-1",
        "hosts": ["algo-1"],
        "spec": SPEC,
        "server_url": "http://127.0.0.1:1",
        "agent_token": "t",
        "storage": {"kind": "local", "root": str(tmp_path)},
        "instance": {"type": "ml.m5.large", "vcpus": 2, "memory_gib": 8, "effective_vcpus": 2},
        "python": sys.executable,
    }
    (tmp_path / "supervisor.json").write_text(json.dumps(old))
    cfg = read_config(tmp_path / "supervisor.json")
    assert (cfg.envs_root, cfg.env_reuse_server, cfg.gpu_ids) == (None, "never", None)
