"""The toolkit's environment and argument rules, checked against the verified example of reference §1.5/§1.6."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainforge.runtime import toolkit
from trainforge.runtime.layout import input_data_config, resource_config
from trainforge.spec.job import CreateTrainingJobRequest

BASE = Path("/jobs/j1/opt/ml")

FRAMEWORK_HPS = {  # SKLearn & co. JSON-encode every value (reference §2.3)
    "epochs": "10",
    "lr": "0.1",
    "name": '"abc"',
    "flag": "true",
    "cfg": '{"a": 1}',
    "batch-size": "32",
    "sagemaker_program": '"train.py"',
    "sagemaker_submit_directory": '"s3://sagemaker-us-east-1-123456789012/sk-job-1/source/sourcedir.tar.gz"',
    "sagemaker_container_log_level": "20",
    "sagemaker_job_name": '"sk-job-1"',
    "sagemaker_region": '"us-east-1"',
}

EXPECTED_ARGS = ["--batch-size", "32", "--cfg", "a=1", "--epochs", "10", "--flag", "True", "--lr", "0.1"]
EXPECTED_ARGS += ["--name", "abc"]


def spec(hps: dict[str, str], count: int = 2) -> CreateTrainingJobRequest:
    return CreateTrainingJobRequest.model_validate(
        {
            "TrainingJobName": "sk-job-1",
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "AlgorithmSpecification": {"TrainingImage": "sklearn:1.2-1", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 30},
            "HyperParameters": hps,
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "ContentType": "text/csv",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/train/"}},
                },
                {
                    "ChannelName": "test",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/test/"}},
                },
            ],
        }
    )


def env_for(hps: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    request = spec(hps)
    train_env = toolkit.training_env(
        job_name="sk-job-1",
        base_dir=BASE,
        hyperparameters=request.HyperParameters,
        input_data_config=input_data_config(request),
        resource_config=resource_config(request, "algo-1", ["algo-2", "algo-1"]),
        num_cpus=2,
        num_gpus=0,
    )
    return train_env, toolkit.env_vars(train_env)


def test_verified_example_env_vars() -> None:
    _, env = env_for(FRAMEWORK_HPS)
    assert env["SM_CHANNELS"] == '["test","train"]'
    assert env["SM_CHANNEL_TEST"] == str(BASE / "input/data/test")
    assert env["SM_CHANNEL_TRAIN"] == str(BASE / "input/data/train")
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_CURRENT_INSTANCE_GROUP"] == "homogeneousCluster"
    assert json.loads(env["SM_CURRENT_INSTANCE_GROUP_HOSTS"]) == ["algo-1", "algo-2"]
    assert env["SM_CURRENT_INSTANCE_TYPE"] == "ml.m5.large"
    assert env["SM_DISTRIBUTION_INSTANCE_GROUPS"] == "[]"
    assert env["SM_FRAMEWORK_MODULE"] == ""
    assert env["SM_FRAMEWORK_PARAMS"] == "{}"
    assert env["SM_HOSTS"] == '["algo-1","algo-2"]'
    assert env["SM_HPS"] == '{"batch-size":32,"cfg":{"a":1},"epochs":10,"flag":true,"lr":0.1,"name":"abc"}'
    assert env["SM_HP_BATCH-SIZE"] == "32"
    assert env["SM_HP_CFG"] == '{"a":1}'
    assert env["SM_HP_EPOCHS"] == "10"
    assert env["SM_HP_FLAG"] == "true"
    assert env["SM_HP_LR"] == "0.1"
    assert env["SM_HP_NAME"] == "abc"
    assert env["SM_INPUT_CONFIG_DIR"] == str(BASE / "input/config")
    assert json.loads(env["SM_INPUT_DATA_CONFIG"])["train"] == {
        "ContentType": "text/csv",
        "RecordWrapperType": "None",
        "S3DistributionType": "FullyReplicated",
        "TrainingInputMode": "File",
    }
    assert env["SM_INPUT_DIR"] == str(BASE / "input")
    assert env["SM_INSTANCE_GROUPS"] == '["homogeneousCluster"]'
    assert json.loads(env["SM_INSTANCE_GROUPS_DICT"]) == {
        "homogeneousCluster": {
            "hosts": ["algo-1", "algo-2"],
            "instance_group_name": "homogeneousCluster",
            "instance_type": "ml.m5.large",
        }
    }
    assert env["SM_IS_HETERO"] == "false"
    assert env["SM_LOG_LEVEL"] == "20"
    assert env["SM_MODEL_DIR"] == str(BASE / "model")
    assert env["SM_MODULE_DIR"] == "s3://sagemaker-us-east-1-123456789012/sk-job-1/source/sourcedir.tar.gz"
    assert env["SM_MODULE_NAME"] == "train"
    assert env["SM_NETWORK_INTERFACE_NAME"] == "eth0"
    assert env["SM_NUM_CPUS"] == "2"
    assert env["SM_NUM_GPUS"] == "0"
    assert env["SM_NUM_NEURONS"] == "0"
    assert env["SM_OUTPUT_DATA_DIR"] == str(BASE / "output/data")
    assert env["SM_OUTPUT_DIR"] == str(BASE / "output")
    assert env["SM_OUTPUT_INTERMEDIATE_DIR"] == str(BASE / "output/intermediate")
    assert json.loads(env["SM_RESOURCE_CONFIG"])["current_group_name"] == "homogeneousCluster"
    assert json.loads(env["SM_USER_ARGS"]) == EXPECTED_ARGS
    assert env["SM_USER_ARGS"] == json.dumps(EXPECTED_ARGS, separators=(",", ":"))
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert "SM_TOPOLOGY" not in env
    assert not any(key.startswith("SM_HP_SAGEMAKER") for key in env)


def test_training_env_has_every_toolkit_key() -> None:
    train_env, env = env_for(FRAMEWORK_HPS)
    expected = {
        "additional_framework_parameters", "channel_input_dirs", "current_host", "current_instance_group",
        "current_instance_group_hosts", "current_instance_type", "distribution_hosts",
        "distribution_instance_groups", "framework_module", "hosts", "hyperparameters", "input_config_dir",
        "input_data_config", "input_dir", "instance_groups", "instance_groups_dict", "is_hetero", "is_master",
        "is_modelparallel_enabled", "is_smddpmprun_installed", "is_smddprun_installed", "job_name",
        "log_level", "master_hostname", "model_dir", "module_dir", "module_name", "network_interface_name",
        "num_cpus", "num_gpus", "num_neurons", "output_data_dir", "output_dir", "output_intermediate_dir",
        "resource_config", "topology", "user_entry_point",
    }  # fmt: skip
    assert set(train_env) == expected
    assert json.loads(env["SM_TRAINING_ENV"]) == train_env
    assert train_env["job_name"] == "sk-job-1"
    assert train_env["is_master"] is True
    assert train_env["master_hostname"] == "algo-1"
    assert train_env["distribution_hosts"] == []  # no distribution flag: the toolkit lists none
    assert train_env["is_modelparallel_enabled"] is None


def test_distribution_flag_puts_the_group_in_distribution() -> None:
    train_env, env = env_for({**FRAMEWORK_HPS, "sagemaker_mpi_enabled": "true"})
    assert train_env["distribution_instance_groups"] == ["homogeneousCluster"]
    assert train_env["distribution_hosts"] == ["algo-1", "algo-2"]
    assert env["SM_FRAMEWORK_PARAMS"] == '{"sagemaker_mpi_enabled":true}'


def test_str_encoding_gives_the_same_args() -> None:
    # The generic Estimator sends str(v): "True" stays a string, which prints the same.
    hps = {"epochs": "10", "lr": "0.1", "name": "abc", "flag": "True", "cfg": '{"a": 1}', "batch-size": "32"}
    hps["sagemaker_program"] = "train.py"
    train_env, env = env_for(hps)
    assert json.loads(env["SM_USER_ARGS"]) == EXPECTED_ARGS
    assert env["SM_HP_FLAG"] == "True"
    assert train_env["user_entry_point"] == "train.py"


def test_cmd_args_rules() -> None:
    assert toolkit.to_cmd_args({"b": [1, 2], "a": False, "x": {"z": True, "y": 1.5}, "s": None}) == [
        "-a", "False", "-b", "[1, 2]", "-s", "", "-x", "y=1.5,z=True",
    ]  # fmt: skip
    assert toolkit.to_cmd_args({}) == []


def test_split_reserved_and_framework_params() -> None:
    decoded = toolkit.decode_hyperparameters(
        {"sagemaker_mpi_enabled": "true", "_tuning_objective_metric": "loss", "sagemaker_program": '"t.py"', "k": "1"}
    )
    user, reserved, extra = toolkit.split_hyperparameters(decoded)
    assert user == {"k": 1}
    assert set(reserved) == {"sagemaker_mpi_enabled", "_tuning_objective_metric", "sagemaker_program"}
    assert extra == {"sagemaker_mpi_enabled": True}


def test_decode_value_falls_back_to_raw() -> None:
    assert toolkit.decode_value('"abc"') == "abc"
    assert toolkit.decode_value("abc") == "abc"
    assert toolkit.decode_value("true") is True
    assert toolkit.decode_value("True") == "True"
    assert toolkit.decode_value("reg:squarederror") == "reg:squarederror"


def test_env_value() -> None:
    assert toolkit.env_value("x") == "x"
    assert toolkit.env_value(None) == ""
    assert toolkit.env_value({"b": 1, "a": [True]}) == '{"a":[true],"b":1}'


@pytest.mark.parametrize(
    ("files", "entry", "kind", "cmd"),
    [
        ([], "train.py", toolkit.EntryPointType.PYTHON_PROGRAM, ["py", "train.py", "--a", "1"]),
        (["setup.py"], "train.py", toolkit.EntryPointType.PYTHON_PACKAGE, ["py", "-m", "train", "--a", "1"]),
        (["setup.py"], "run.sh", toolkit.EntryPointType.COMMAND, ["/bin/sh", "-c", "./run.sh --a 1"]),
        ([], "tool", toolkit.EntryPointType.COMMAND, ["/bin/sh", "-c", "./tool --a 1"]),
    ],
)
def test_entry_point_types(
    tmp_path: Path, files: list[str], entry: str, kind: toolkit.EntryPointType, cmd: list[str]
) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert toolkit.entry_point_type(tmp_path, entry) is kind
    assert toolkit.entry_point_command(kind, entry, ["--a", "1"], "py") == cmd


def test_command_quotes_shell_args() -> None:
    cmd = toolkit.entry_point_command(toolkit.EntryPointType.COMMAND, "run.sh", ["--msg", "a b'c"], "py")
    assert cmd == ["/bin/sh", "-c", "./run.sh --msg 'a b'\"'\"'c'"]


def test_heterogeneous_groups() -> None:
    request = CreateTrainingJobRequest.model_validate(
        {
            "TrainingJobName": "het",
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "AlgorithmSpecification": {"TrainingImage": "img"},
            "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
            "ResourceConfig": {
                "InstanceGroups": [
                    {"InstanceType": "ml.m5.large", "InstanceCount": 2, "InstanceGroupName": "a"},
                    {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "InstanceGroupName": "b"},
                ]
            },
        }
    )
    rc = resource_config(request, "algo-3", ["algo-1", "algo-2", "algo-3"])
    assert rc["current_group_name"] == "b"
    assert rc["current_instance_type"] == "ml.p3.2xlarge"
    assert [g["hosts"] for g in rc["instance_groups"]] == [["algo-1", "algo-2"], ["algo-3"]]
    env = toolkit.training_env(
        job_name="het", base_dir=BASE, hyperparameters={}, input_data_config={}, resource_config=rc,
        num_cpus=1, num_gpus=0,
    )  # fmt: skip
    assert env["is_hetero"] is True
    assert env["current_instance_group_hosts"] == ["algo-3"]
