"""The torchrun launch a supervisor makes for ``sagemaker_torch_distributed_enabled`` (reference §1.8)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any

import pytest

from trainforge.runtime import distributed, toolkit
from trainforge.runtime.failure import JobFailed
from trainforge.runtime.layout import input_data_config, resource_config
from trainforge.spec.job import CreateTrainingJobRequest

BASE = Path("/jobs/pt/opt/ml")
PY = "/envs/abc/bin/python"


def train_env(hps: dict[str, str], *, host: str, hosts: list[str], num_gpus: int = 0) -> dict[str, Any]:
    request = CreateTrainingJobRequest.model_validate(
        {
            "TrainingJobName": "pt-1",
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "AlgorithmSpecification": {"TrainingImage": "trainforge/pytorch:2.13-cpu", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": len(hosts), "VolumeSizeInGB": 30},
            "HyperParameters": {"sagemaker_program": '"train.py"', "epochs": "3", **hps},
        }
    )
    return toolkit.training_env(
        job_name="pt-1",
        base_dir=BASE,
        hyperparameters=request.HyperParameters,
        input_data_config=input_data_config(request),
        resource_config=resource_config(request, host, hosts),
        num_cpus=2,
        num_gpus=num_gpus,
    )


TORCH_HPS = {"sagemaker_torch_distributed_enabled": "true", "sagemaker_instance_type": '"ml.m5.large"'}


def test_flags_that_ask_for_torchrun() -> None:
    assert distributed.torchrun_enabled({"sagemaker_torch_distributed_enabled": True})
    assert distributed.torchrun_enabled({"sagemaker_pytorch_ddp_enabled": True})
    assert distributed.torchrun_enabled({"sagemaker_torch_distributed_enabled": "True"})  # str()-encoded
    assert not distributed.torchrun_enabled({"sagemaker_torch_distributed_enabled": False})
    assert not distributed.torchrun_enabled({"sagemaker_mpi_enabled": True})
    assert not distributed.torchrun_enabled({})


def test_single_host_command_and_rendezvous_env() -> None:
    env = train_env(TORCH_HPS, host="algo-1", hosts=["algo-1"])
    assert env["additional_framework_parameters"]["sagemaker_torch_distributed_enabled"] is True
    assert env["distribution_instance_groups"] == ["homogeneousCluster"]
    launch = distributed.torchrun_launch(env, master_port=7777)
    cmd = launch.command(
        PY, toolkit.EntryPointType.PYTHON_PROGRAM, "train.py", toolkit.to_cmd_args(env["hyperparameters"])
    )
    assert cmd == [
        PY, "-m", "torch.distributed.run", "--nnodes", "1", "--node_rank", "0", "--nproc_per_node", "1",
        "--master_addr", "127.0.0.1", "--master_port", "7777", "train.py", "--epochs", "3",
    ]  # fmt: skip
    assert launch.env() == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "7777", "WORLD_SIZE": "1"}


def test_multi_host_rank_master_and_one_process_per_gpu() -> None:
    hosts = ["algo-2", "algo-1", "algo-3"]
    env = train_env(TORCH_HPS, host="algo-3", hosts=hosts, num_gpus=4)
    launch = distributed.torchrun_launch(env)
    assert (launch.nnodes, launch.node_rank, launch.nproc_per_node) == (3, 2, 4)
    assert launch.master_addr == "algo-1"  # the first host, resolvable on a multi-host backend
    assert launch.master_port == distributed.MASTER_PORT  # fixed: every host must agree on it
    assert launch.env() == {"MASTER_ADDR": "algo-1", "MASTER_PORT": "7777", "WORLD_SIZE": "12"}
    first = distributed.torchrun_launch(train_env(TORCH_HPS, host="algo-1", hosts=hosts, num_gpus=4))
    assert first.node_rank == 0


def test_pytorch_ddp_flag_runs_torchrun_too() -> None:
    env = train_env({"sagemaker_pytorch_ddp_enabled": "true"}, host="algo-1", hosts=["algo-1"], num_gpus=2)
    assert distributed.torchrun_enabled(env["additional_framework_parameters"])
    assert distributed.torchrun_launch(env, master_port=7777).nproc_per_node == 2


def test_single_host_takes_a_free_port_when_7777_is_busy() -> None:
    env = train_env(TORCH_HPS, host="algo-1", hosts=["algo-1"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        with contextlib.suppress(OSError):  # if something else holds 7777 already, the launch must avoid it too
            busy.bind(("127.0.0.1", distributed.MASTER_PORT))
            busy.listen()
        assert not distributed.port_is_free(distributed.MASTER_PORT)
        port = distributed.torchrun_launch(env).master_port
        assert port != distributed.MASTER_PORT
        assert distributed.port_is_free(port)


def test_packages_and_commands_are_refused_like_the_toolkit() -> None:
    launch = distributed.torchrun_launch(train_env(TORCH_HPS, host="algo-1", hosts=["algo-1"]), master_port=7777)
    with pytest.raises(JobFailed, match=r"^AlgorithmError: Python packages are not supported for torch_distributed"):
        launch.command(PY, toolkit.EntryPointType.PYTHON_PACKAGE, "train.py", [])
    with pytest.raises(JobFailed, match=r"Unsupported entry point type for torch_distributed: run\.sh"):
        launch.command(PY, toolkit.EntryPointType.COMMAND, "run.sh", [])


def test_a_host_outside_the_distribution_hosts_fails() -> None:
    env = train_env(TORCH_HPS, host="algo-1", hosts=["algo-1"])
    env["distribution_hosts"] = ["algo-2"]
    with pytest.raises(JobFailed, match="algo-1 is not one of the distribution hosts"):
        distributed.torchrun_launch(env)


def test_a_rendezvous_port_block_is_free_and_below_the_ephemeral_range() -> None:
    import socket

    from trainforge.runtime.distributed import RENDEZVOUS_PORTS, _ephemeral_range, free_port_block

    first = free_port_block()
    assert first + RENDEZVOUS_PORTS <= _ephemeral_range()[0]
    for port in range(first, first + RENDEZVOUS_PORTS):  # every port of the block binds
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
