"""Framework estimators (XGBoost, PyTorch, SKLearn): images from the catalogue, HP encoding, distribution.

Requests are built offline (no server) exactly as ``fit()`` builds them; see ``test_sdk_request.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import trainforge.pytorch
import trainforge.pytorch.estimator
import trainforge.xgboost
import trainforge.xgboost.estimator
from tests.unit.test_sdk_request import SM_BUCKET, SM_ROLE, make_src, members, offline_session
from trainforge.errors import ValidationError
from trainforge.estimator import Framework
from trainforge.inputs import TrainingInput
from trainforge.pytorch import PyTorch
from trainforge.runtime import toolkit
from trainforge.runtime.distributed import torchrun_enabled
from trainforge.sklearn import SKLearn
from trainforge.spec import images
from trainforge.spec.job import parse_create_request
from trainforge.storage import LocalObjectStore
from trainforge.xgboost import XGBoost

XGB_HPS = {"max_depth": 5, "eta": 0.2, "gamma": 4, "objective": "reg:squarederror", "num_round": 50, "verbosity": 1}


def request_of(est: Framework, inputs: Any = None, job_name: str = "fw-job-1") -> dict[str, Any]:
    est._prepare_for_training(job_name=job_name)
    request = est._get_train_request(inputs)
    parse_create_request(request)  # the server accepts it
    return request


def test_public_import_paths() -> None:
    assert trainforge.xgboost.XGBoost is trainforge.xgboost.estimator.XGBoost is XGBoost
    assert trainforge.pytorch.PyTorch is trainforge.pytorch.estimator.PyTorch is PyTorch
    assert issubclass(XGBoost, Framework) and issubclass(PyTorch, Framework)


def test_xgboost_script_mode_request(tmp_path: Path) -> None:
    est = XGBoost(
        entry_point="abalone.py",
        source_dir=str(make_src(tmp_path, {"abalone.py": "print('x')\n", "requirements.txt": "\n"})),
        framework_version="1.2-1",
        hyperparameters=XGB_HPS,
        role=SM_ROLE,
        instance_count=1,
        instance_type="ml.m5.2xlarge",
        output_path=f"s3://{SM_BUCKET}/xgb/output",
        sagemaker_session=offline_session(tmp_path),
    )
    request = request_of(
        est, {"train": TrainingInput("s3://bkt/train/", content_type="libsvm"), "validation": "s3://bkt/val/"}
    )
    assert request["AlgorithmSpecification"] == {
        "TrainingInputMode": "File",
        "TrainingImage": "trainforge/xgboost:1.7-1",
    }
    assert request["HyperParameters"] == {
        "max_depth": "5",
        "eta": "0.2",
        "gamma": "4",
        "objective": '"reg:squarederror"',
        "num_round": "50",
        "verbosity": "1",
        "sagemaker_submit_directory": f'"s3://{SM_BUCKET}/fw-job-1/source/sourcedir.tar.gz"',
        "sagemaker_program": '"abalone.py"',
        "sagemaker_container_log_level": "20",
        "sagemaker_job_name": '"fw-job-1"',
        "sagemaker_region": '"us-east-1"',
    }
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "validation"]
    store = LocalObjectStore(tmp_path / "storage")
    assert members(store, f"s3://{SM_BUCKET}/fw-job-1/source/sourcedir.tar.gz") == ["abalone.py", "requirements.txt"]
    assert est.hyperparameters()["objective"] == '"reg:squarederror"'


def test_default_job_names_come_from_the_image(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    src = str(make_src(tmp_path))
    xgb = XGBoost(
        "train.py", "1.7-1", src, role=SM_ROLE, instance_type="ml.m5.large", instance_count=1, sagemaker_session=session
    )
    xgb._prepare_for_training()
    assert xgb._current_job_name and xgb._current_job_name.startswith("xgboost-")
    pt = PyTorch(
        "train.py",
        "2.1",
        "py310",
        src,
        role=SM_ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=session,
    )
    pt._prepare_for_training()
    assert pt._current_job_name and pt._current_job_name.startswith("pytorch-")


@pytest.mark.parametrize(
    ("cls", "version", "known"),
    [(XGBoost, "9.9-9", "1.7-1"), (PyTorch, "0.4", "2.1"), (SKLearn, "0.20.0", "1.2-1")],
)
def test_unknown_framework_version_fails_at_construction_listing_known_ones(
    tmp_path: Path, cls: type[Framework], version: str, known: str
) -> None:
    session = offline_session(tmp_path)
    with pytest.raises(ValidationError) as err:
        cls(
            entry_point="train.py",
            source_dir=str(make_src(tmp_path)),
            framework_version=version,
            role=SM_ROLE,
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=session,
        )
    assert err.value.field == "framework_version"
    assert f"unknown {cls._framework_name} version {version!r}" in err.value.message
    assert known in err.value.message and known in err.value.details["known_versions"]
    assert not (tmp_path / "storage").exists() or not any((tmp_path / "storage").rglob("*.tar.gz"))


@pytest.mark.parametrize("cls", [XGBoost, PyTorch])
def test_framework_version_is_required_without_image_uri(tmp_path: Path, cls: type[Framework]) -> None:
    with pytest.raises(ValidationError, match="framework_version: required; known versions: ") as err:
        cls(
            entry_point="train.py",
            role=SM_ROLE,
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=offline_session(tmp_path),
        )
    assert err.value.field == "framework_version"


@pytest.mark.parametrize(
    ("instance_type", "image"),
    [
        ("ml.m5.large", "trainforge/pytorch:2.13-cpu"),
        ("ml.c5.xlarge", "trainforge/pytorch:2.13-cpu"),
        ("local", "trainforge/pytorch:2.13-cpu"),
        ("ml.g4dn.xlarge", "trainforge/pytorch:2.13-gpu"),
        ("ml.g5.xlarge", "trainforge/pytorch:2.13-gpu"),
        ("ml.p3.2xlarge", "trainforge/pytorch:2.13-gpu"),
        ("local_gpu", "trainforge/pytorch:2.13-gpu"),
    ],
)
def test_pytorch_image_follows_the_instance_type(tmp_path: Path, instance_type: str, image: str) -> None:
    est = PyTorch(
        entry_point="train.py",
        framework_version="2.1",
        py_version="py310",
        role=SM_ROLE,
        instance_type=instance_type,
        instance_count=1,
        sagemaker_session=offline_session(tmp_path),
    )
    assert est.training_image_uri() == image


def test_pytorch_image_follows_the_first_instance_group(tmp_path: Path) -> None:
    groups = [{"InstanceGroupName": "gpu", "InstanceType": "ml.g5.xlarge", "InstanceCount": 1}]
    est = PyTorch(
        entry_point="train.py",
        framework_version="2.13",
        instance_groups=groups,
        sagemaker_session=offline_session(tmp_path),
    )
    assert est.training_image_uri() == "trainforge/pytorch:2.13-gpu"


def test_accelerator_rule() -> None:
    assert images.accelerator_for("ml.g5.12xlarge") == "gpu"
    assert images.accelerator_for("ml.p4d.24xlarge") == "gpu"
    assert images.accelerator_for("ml.m5.large") == "cpu"
    assert images.accelerator_for("local") == "cpu"
    assert images.accelerator_for(None) == "cpu"


@pytest.mark.parametrize(("version", "image"), [("1.2-1", "1.2-1"), ("1.0-1", "1.2-1"), ("1.4-2", "1.4-2")])
def test_sklearn_versions_map_through_the_catalogue(tmp_path: Path, version: str, image: str) -> None:
    est = SKLearn(
        entry_point="train.py",
        framework_version=version,
        role=SM_ROLE,
        instance_type="ml.m5.large",
        sagemaker_session=offline_session(tmp_path),
    )
    assert est.training_image_uri() == f"trainforge/sklearn:{image}"


def test_image_uri_overrides_the_catalogue(tmp_path: Path) -> None:
    est = PyTorch(
        entry_point="train.py",
        image_uri="trainforge/python:current",
        role=SM_ROLE,
        instance_type="ml.g5.xlarge",
        instance_count=1,
        sagemaker_session=offline_session(tmp_path),
    )
    assert est.training_image_uri() == "trainforge/python:current"
    with pytest.warns(DeprecationWarning, match="'image_name' was renamed 'image_uri'"):
        xgb = XGBoost(
            entry_point="train.py",
            image_name="trainforge/xgboost:3.0-5",
            role=SM_ROLE,
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=offline_session(tmp_path),
        )
    assert xgb.training_image_uri() == "trainforge/xgboost:3.0-5"


def pytorch(tmp_path: Path, **kwargs: Any) -> PyTorch:
    params: dict[str, Any] = {
        "entry_point": "train.py",
        "source_dir": str(make_src(tmp_path)),
        "framework_version": "2.1",
        "py_version": "py310",
        "role": SM_ROLE,
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "sagemaker_session": offline_session(tmp_path),
        **kwargs,
    }
    return PyTorch(**params)


def test_torch_distributed_adds_json_encoded_hyperparameters_the_runtime_reads(tmp_path: Path) -> None:
    est = pytorch(
        tmp_path, hyperparameters={"epochs": 2, "lr": 0.01}, distribution={"torch_distributed": {"enabled": True}}
    )
    request = request_of(est)
    hps = request["HyperParameters"]
    assert list(hps)[-2:] == ["sagemaker_torch_distributed_enabled", "sagemaker_instance_type"]
    assert hps["sagemaker_torch_distributed_enabled"] == "true"
    assert hps["sagemaker_instance_type"] == '"ml.m5.large"'
    assert hps["epochs"] == "2" and hps["lr"] == "0.01"
    assert request["AlgorithmSpecification"]["EnableSageMakerMetricsTimeSeries"] is True
    decoded = toolkit.decode_hyperparameters(hps)
    user, _, framework_params = toolkit.split_hyperparameters(decoded)
    assert user == {"epochs": 2, "lr": 0.01}
    assert torchrun_enabled(framework_params)


def test_pytorchddp_and_disabled_distributions(tmp_path: Path) -> None:
    ddp = request_of(pytorch(tmp_path, distribution={"pytorchddp": {"enabled": True}}))["HyperParameters"]
    assert ddp["sagemaker_pytorch_ddp_enabled"] == "true"
    assert "sagemaker_torch_distributed_enabled" not in ddp
    off = request_of(pytorch(tmp_path, distribution={"torch_distributed": {"enabled": False}}))["HyperParameters"]
    assert not any(k in off for k in ("sagemaker_torch_distributed_enabled", "sagemaker_instance_type"))
    plain = request_of(pytorch(tmp_path, enable_sagemaker_metrics=False))
    assert plain["AlgorithmSpecification"]["EnableSageMakerMetricsTimeSeries"] is False


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"distribution": {"mpi": {"enabled": True}}}, "distribution", "'mpi' is not supported by trainforge"),
        ({"distribution": {"torch_distributed": True}}, "distribution", "must be a dict like"),
        ({"distribution": {"torch_distributed": {"enabled": "yes"}}}, "distribution", "must be a dict like"),
        ({"compiler_config": object()}, "compiler_config", "not supported"),
        ({"py_version": "py2"}, "py_version", "Python 3"),
    ],
)
def test_pytorch_bad_options_fail_at_construction(
    tmp_path: Path, kwargs: dict[str, Any], field: str, match: str
) -> None:
    with pytest.raises(ValidationError, match=match) as err:
        pytorch(tmp_path, **kwargs)
    assert err.value.field == field


def test_attach_recovers_the_framework_version_from_the_catalogue_image() -> None:
    def described(image: str) -> dict[str, Any]:
        return {
            "TrainingJobName": "pytorch-2024-01-01-00-00-00-000",
            "RoleArn": SM_ROLE,
            "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30},
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
            "OutputDataConfig": {"S3OutputPath": "s3://b/"},
            "HyperParameters": {"sagemaker_program": '"train.py"', "epochs": "3"},
        }

    params = PyTorch._prepare_init_params_from_job_description(described("trainforge/pytorch:2.13-gpu"))
    assert params["framework_version"] == "2.13" and "image_uri" not in params
    assert params["hyperparameters"] == {"epochs": 3} and params["entry_point"] == "train.py"
    params = XGBoost._prepare_init_params_from_job_description(described("trainforge/xgboost:1.7-1"))
    assert params["framework_version"] == "1.7-1"
    params = XGBoost._prepare_init_params_from_job_description(described("trainforge/pytorch:2.13-gpu"))
    assert params["image_uri"] == "trainforge/pytorch:2.13-gpu" and "framework_version" not in params
