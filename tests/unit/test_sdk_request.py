"""Request building: the verified SageMaker requests of reference §3.2, hyperparameter encodings, naming."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from trainforge.errors import ValidationError
from trainforge.estimator import (
    Estimator,
    Framework,
    json_encode_hyperparameters,
    str_encode_hyperparameters,
)
from trainforge.inputs import TrainingInput
from trainforge.session import Session
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn
from trainforge.spec.job import parse_create_request
from trainforge.spec.names import base_from_name
from trainforge.storage import LocalObjectStore

SM_BUCKET = "sagemaker-us-east-1-123456789012"
SM_ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# Reference §3.2, verbatim (captured from SDK v2.257.6).
SKLEARN_REQUEST = json.loads(
    r"""
{"AlgorithmSpecification": {"TrainingInputMode": "File",
   "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"},
 "OutputDataConfig": {"S3OutputPath": "s3://sagemaker-us-east-1-123456789012/"},
 "TrainingJobName": "sk-job-1", "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
 "ResourceConfig": {"VolumeSizeInGB": 30, "InstanceCount": 1, "InstanceType": "ml.m5.large"},
 "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
 "InputDataConfig": [
  {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/train/",
                                   "S3DataDistributionType": "FullyReplicated"}},
   "ContentType": "text/csv", "ChannelName": "train"},
  {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/test/",
                                   "S3DataDistributionType": "FullyReplicated"}},
   "ChannelName": "test"}],
 "HyperParameters": {"epochs": "10", "lr": "0.1", "name": "\"abc\"", "flag": "true", "cfg": "{\"a\": 1}",
   "sagemaker_submit_directory": "\"s3://sagemaker-us-east-1-123456789012/sk-job-1/source/sourcedir.tar.gz\"",
   "sagemaker_program": "\"train.py\"", "sagemaker_container_log_level": "20",
   "sagemaker_job_name": "\"sk-job-1\"", "sagemaker_region": "\"us-east-1\""},
 "ProfilerConfig": {"DisableProfiler": true}}
"""
)


def offline_session(tmp_path: Path, *, region: str = "us-east-1", bucket: str = SM_BUCKET) -> Session:
    """A session whose server configuration is known, over a real local object store; no server needed."""
    return Session(
        settings=Settings(home=tmp_path / "home", endpoint="http://127.0.0.1:9", token="unused"),
        server_config={
            "region": region,
            "account_id": "123456789012",
            "default_bucket": bucket,
            "storage": {"kind": "local", "root": str(tmp_path / "storage")},
        },
    )


def make_src(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    src = tmp_path / "src"
    for rel, text in (files or {"train.py": "print('hi')\n", "requirements.txt": "\n"}).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


def members(store: LocalObjectStore, uri: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(uri))) as tar:
        return sorted(tar.getnames())


def test_sklearn_request_is_sagemakers_request_byte_for_byte(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(make_src(tmp_path)),
        framework_version="1.2-1",
        image_uri=SKLEARN_IMAGE,
        role=SM_ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"epochs": 10, "lr": 0.1, "name": "abc", "flag": True, "cfg": {"a": 1}},
        sagemaker_session=session,
    )
    est._prepare_for_training(job_name="sk-job-1")
    request = est._get_train_request(
        {"train": TrainingInput("s3://bkt/train/", content_type="text/csv"), "test": "s3://bkt/test/"}
    )
    assert request == SKLEARN_REQUEST
    assert json.dumps(request["HyperParameters"]) == json.dumps(SKLEARN_REQUEST["HyperParameters"])
    parse_create_request(request)
    store = LocalObjectStore(tmp_path / "storage")
    code = f"s3://{SM_BUCKET}/sk-job-1/source/sourcedir.tar.gz"
    assert members(store, code) == ["requirements.txt", "train.py"]


def test_sklearn_default_image_is_trainforge_sklearn(tmp_path: Path) -> None:
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(make_src(tmp_path)),
        framework_version="1.2-1",
        role=SM_ROLE,
        instance_type="ml.m5.large",
        sagemaker_session=offline_session(tmp_path),
    )
    assert est.training_image_uri() == "trainforge/sklearn:1.2-1"
    est._prepare_for_training()
    assert est._current_job_name and est._current_job_name.startswith("sklearn-")
    assert base_from_name(est._current_job_name) == "sklearn"
    request = est._get_train_request(None)
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert "InputDataConfig" not in request


def test_generic_estimator_request_matches_the_xgboost_example(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    est = Estimator(
        image_uri=XGBOOST_IMAGE,
        role=SM_ROLE,
        instance_count=2,
        instance_type="ml.m5.xlarge",
        output_path="s3://bkt/out",
        hyperparameters={"num_round": 100, "objective": "reg:squarederror", "eta": 0.2},
        max_run=3600,
        use_spot_instances=True,
        max_wait=7200,
        checkpoint_s3_uri="s3://bkt/ckpt",
        keep_alive_period_in_seconds=600,
        environment={"FOO": "bar"},
        tags=[{"Key": "k", "Value": "v"}],
        metric_definitions=[{"Name": "validation:rmse", "Regex": "validation-rmse:(\\S+)"}],
        sagemaker_session=session,
    )
    est._prepare_for_training()
    name = est._current_job_name
    assert name and name.startswith("sagemaker-xgboost-") and len(name) <= 63
    request = est._get_train_request("s3://bkt/train")
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["ResourceConfig"] == {
        "VolumeSizeInGB": 30,
        "KeepAlivePeriodInSeconds": 600,
        "InstanceCount": 2,
        "InstanceType": "ml.m5.xlarge",
    }
    assert request["HyperParameters"] == {"num_round": "100", "objective": "reg:squarederror", "eta": "0.2"}
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "validation:rmse", "Regex": "validation-rmse:(\\S+)"}
    ]
    assert request["Environment"] == {"FOO": "bar"}
    assert request["Tags"] == [{"Key": "k", "Value": "v"}]
    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"] == {"S3Uri": "s3://bkt/ckpt"}
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["training"]
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://bkt/out"}
    parse_create_request(request)
    assert list(LocalObjectStore(tmp_path / "storage").list("s3://bkt/")) == []


def test_hyperparameter_encodings() -> None:
    values = {"epochs": 10, "lr": 0.1, "name": "abc", "flag": True, "cfg": {"a": 1}, "none": None}
    assert json_encode_hyperparameters(values) == {
        "epochs": "10",
        "lr": "0.1",
        "name": '"abc"',
        "flag": "true",
        "cfg": '{"a": 1}',
        "none": "null",
    }
    assert str_encode_hyperparameters(values) == {
        "epochs": "10",
        "lr": "0.1",
        "name": "abc",
        "flag": "True",
        "cfg": "{'a': 1}",
        "none": "None",
    }


def test_generic_estimator_json_encodes_only_with_source_dir(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    common: dict[str, Any] = {
        "role": SM_ROLE,
        "instance_type": "local",
        "instance_count": 1,
        "sagemaker_session": session,
    }
    plain = Estimator("img:1", hyperparameters={"flag": True, "name": "abc"}, **common)
    plain.set_hyperparameters(epochs=3)
    assert plain.hyperparameters() == {"flag": True, "name": "abc", "epochs": 3}
    plain._prepare_for_training(job_name="plain")
    assert plain._get_train_request(None)["HyperParameters"] == {"flag": "True", "name": "abc", "epochs": "3"}

    script = Estimator(
        "img:1", hyperparameters={"flag": True}, source_dir=str(make_src(tmp_path)), entry_point="train.py", **common
    )
    script._prepare_for_training(job_name="script")
    hps = script._get_train_request(None)["HyperParameters"]
    assert hps["flag"] == "true"
    assert hps["sagemaker_program"] == '"train.py"'
    assert hps["sagemaker_submit_directory"] == f'"s3://{SM_BUCKET}/script/source/sourcedir.tar.gz"'


def test_entry_point_without_source_dir_uses_basename_and_str_encoding(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "run.py"
    script.parent.mkdir()
    script.write_text("print(1)\n")
    est = Estimator(
        "img:1",
        role=SM_ROLE,
        instance_type="local",
        instance_count=1,
        entry_point=str(script),
        hyperparameters={"flag": True},
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="lone")
    hps = est._get_train_request(None)["HyperParameters"]
    assert hps["flag"] == "True"
    assert hps["sagemaker_program"] == '"run.py"'
    store = LocalObjectStore(tmp_path / "storage")
    assert members(store, f"s3://{SM_BUCKET}/lone/source/sourcedir.tar.gz") == ["run.py"]


def test_single_training_input_mode_becomes_the_job_mode(tmp_path: Path) -> None:
    est = Estimator(
        "img:1", role=SM_ROLE, instance_type="local", instance_count=1, sagemaker_session=offline_session(tmp_path)
    )
    est._prepare_for_training(job_name="modes")
    request = est._get_train_request(TrainingInput("s3://b/p", input_mode="FastFile"))
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
    assert request["InputDataConfig"][0]["InputMode"] == "FastFile"
    request = est._get_train_request({"train": TrainingInput("s3://b/p", input_mode="FastFile")})
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"


def test_model_uri_network_isolation_vpc_and_optional_fields(tmp_path: Path) -> None:
    est = Estimator(
        "img:1",
        role="MyRole",
        instance_type="local",
        instance_count=1,
        model_uri="s3://b/model.tar.gz",
        enable_network_isolation=True,
        source_dir=str(make_src(tmp_path)),
        entry_point="train.py",
        subnets=["subnet-1"],
        security_group_ids=["sg-1"],
        tags={"team": "ml"},
        max_retry_attempts=2,
        disable_output_compression=True,
        output_kms_key="key",
        encrypt_inter_container_traffic=True,
        container_entry_point=["python"],
        container_arguments=["-c", "print(1)"],
        disable_profiler=False,
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="iso")
    request = est._get_train_request("file:///data/train")
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert list(channels) == ["training", "model", "code"]
    assert channels["model"]["ContentType"] == "application/x-sagemaker-model"
    assert channels["model"]["InputMode"] == "File"
    assert channels["code"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{SM_BUCKET}/iso/source/sourcedir.tar.gz"
    assert request["HyperParameters"]["sagemaker_submit_directory"] == '"/opt/ml/input/data/code/sourcedir.tar.gz"'
    assert request["RoleArn"] == "arn:aws:iam::123456789012:role/MyRole"
    assert request["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert request["Tags"] == [{"Key": "team", "Value": "ml"}]
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert request["OutputDataConfig"] == {
        "S3OutputPath": f"s3://{SM_BUCKET}/",
        "KmsKeyId": "key",
        "CompressionType": "NONE",
    }
    assert request["EnableNetworkIsolation"] is True
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python"]
    assert request["ProfilerConfig"] == {"S3OutputPath": f"s3://{SM_BUCKET}/", "DisableProfiler": False}
    parse_create_request(request)


def test_duplicate_model_channel_is_rejected(tmp_path: Path) -> None:
    est = Estimator(
        "img:1",
        role=SM_ROLE,
        instance_type="local",
        instance_count=1,
        model_uri="s3://b/model.tar.gz",
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="dup")
    with pytest.raises(ValidationError, match="Duplicate channel model"):
        est._get_train_request({"model": "s3://b/other"})


def test_code_location_places_the_archive(tmp_path: Path) -> None:
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(make_src(tmp_path)),
        framework_version="1.2-1",
        role=SM_ROLE,
        instance_type="ml.m5.large",
        code_location="s3://codebkt/some/prefix",
        output_path="s3://outbkt/models",
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="placed")
    assert est.uploaded_code is not None
    assert est.uploaded_code.s3_prefix == "s3://codebkt/some/prefix/placed/source/sourcedir.tar.gz"
    est.code_location = None
    est._prepare_for_training(job_name="placed2")
    assert est.uploaded_code.s3_prefix == "s3://outbkt/placed2/source/sourcedir.tar.gz"


def test_constructor_rules(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    with pytest.raises(ValidationError) as info:
        Estimator("img:1", role=SM_ROLE, instance_count=1, sagemaker_session=session)
    assert info.value.field == "instance_type"
    with pytest.raises(ValidationError) as info:
        Estimator(
            "img:1", role=SM_ROLE, instance_type="local", instance_count=1, subnets=["s"], sagemaker_session=session
        )
    assert info.value.field == "security_group_ids"
    with pytest.raises(ValidationError) as info:
        SKLearn(
            entry_point="t.py",
            framework_version="1.2-1",
            instance_type="ml.m5.large",
            instance_count=2,
            sagemaker_session=session,
        )
    assert info.value.field == "instance_count"
    with pytest.raises(ValidationError) as info:
        SKLearn(entry_point="t.py", instance_type="ml.m5.large", sagemaker_session=session)
    assert info.value.field == "framework_version"
    with pytest.raises(ValidationError) as info:
        SKLearn(entry_point="t.py", framework_version="1.2-1", instance_type="ml.p3.2xlarge", sagemaker_session=session)
    assert info.value.field == "instance_type"
    with pytest.raises(TypeError, match="no_such_parameter"):
        Estimator(
            "img:1",
            role=SM_ROLE,
            instance_type="local",
            instance_count=1,
            no_such_parameter=1,
            sagemaker_session=session,
        )


def test_sagemaker_v1_parameter_names_are_accepted(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning):
        est = Estimator(
            image_name="img:1",
            role=SM_ROLE,
            train_instance_count=3,
            train_instance_type="ml.c5.xlarge",
            train_max_run=60,
            sagemaker_session=offline_session(tmp_path),
        )
    assert (est.image_uri, est.instance_count, est.instance_type, est.max_run) == ("img:1", 3, "ml.c5.xlarge", 60)


def test_model_data_before_any_job(tmp_path: Path) -> None:
    est = Estimator(
        "img:1",
        role=SM_ROLE,
        instance_type="local",
        instance_count=1,
        output_path="s3://b/out/",
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="next-job")
    assert est.model_data == "s3://b/out/next-job/output/model.tar.gz"


def _described(hps: dict[str, str], image: str) -> dict[str, Any]:
    return {
        "TrainingJobName": "sklearn-2024-01-01-12-00-00-084",
        "RoleArn": SM_ROLE,
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/", "KmsKeyId": ""},
        "HyperParameters": hps,
        "InputDataConfig": [
            {"ChannelName": "model", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/m.tar.gz"}}},
        ],
    }


def test_framework_attach_parameters_decode_the_job() -> None:
    hps = json_encode_hyperparameters({"C": 0.5, "name": "abc"}) | json_encode_hyperparameters(
        {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": "s3://b/job/source/sourcedir.tar.gz",
            "sagemaker_container_log_level": 10,
            "sagemaker_job_name": "job",
            "sagemaker_region": "local",
        }
    )
    params = SKLearn._prepare_init_params_from_job_description(_described(hps, "trainforge/sklearn:1.2-1"), "model")
    assert params["hyperparameters"] == {"C": 0.5, "name": "abc"}
    assert params["entry_point"] == "train.py"
    assert params["source_dir"] == "s3://b/job/source/sourcedir.tar.gz"
    assert params["container_log_level"] == 10
    assert params["framework_version"] == "1.2-1" and "image_uri" not in params
    assert params["base_job_name"] == "sklearn"
    assert params["output_kms_key"] is None
    assert params["model_uri"] == "s3://b/m.tar.gz"
    generic = Estimator._prepare_init_params_from_job_description(_described({"eta": "0.2"}, "img:1"))
    assert generic["hyperparameters"] == {"eta": "0.2"} and generic["image_uri"] == "img:1"
    assert issubclass(SKLearn, Framework)


def test_model_data_before_fit_without_a_job_name_says_to_call_fit(tmp_path: Path) -> None:
    est = Estimator(
        "img:1", role=SM_ROLE, instance_type="local", instance_count=1, sagemaker_session=offline_session(tmp_path)
    )
    with pytest.raises(ValidationError, match=r"model_data: .*call fit\(\) first") as caught:
        _ = est.model_data
    assert caught.value.field == "model_data"
    with_output = Estimator(
        "img:1",
        role=SM_ROLE,
        instance_type="local",
        instance_count=1,
        output_path="s3://b/out",
        sagemaker_session=offline_session(tmp_path),
    )
    with pytest.raises(ValidationError, match="call fit"):
        _ = with_output.model_data


# -- one pure request-building step ---------------------------------------------------------------------

SDK_MODULES = (
    "trainforge.train_request",
    "trainforge.inference_requests",
    "trainforge.job",
    "trainforge.estimator",
    "trainforge.session",
    "trainforge.model",
    "trainforge.predictor",
    "trainforge.transformer",
    "trainforge.serializers",
    "trainforge.deserializers",
    "trainforge.repack",
    "trainforge.s3",
    "trainforge.sklearn.estimator",
    "trainforge.sklearn.model",
    "trainforge.xgboost.estimator",
    "trainforge.xgboost.model",
    "trainforge.pytorch.estimator",
    "trainforge.pytorch.model",
)
REQUEST_BUILDERS = ("trainforge.train_request", "trainforge.inference_requests")


def _module_level_imports(module: str) -> set[str]:
    """The ``trainforge.*`` modules ``module`` imports at module level, ``if TYPE_CHECKING:`` blocks included
    (a circle of type-only imports is still a circle); imports inside functions are not counted."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text())
    found: set[str] = set()
    statements = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If):
            statements.extend(node.body)
    for node in statements:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trainforge"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("trainforge"))
    return found


def test_request_builders_import_no_estimator_job_or_session() -> None:
    for builder in REQUEST_BUILDERS:
        imported = _module_level_imports(builder)
        assert imported <= {"trainforge.errors", "trainforge.inputs", "trainforge.spec.names"}, (builder, imported)


def test_sdk_modules_import_alone_and_without_cycles() -> None:
    import subprocess
    import sys

    graph = {module: _module_level_imports(module) for module in SDK_MODULES}

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, set()))
        return seen

    cyclic = [module for module in SDK_MODULES if module in reachable(module)]
    assert cyclic == []
    for module in SDK_MODULES:
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert result.returncode == 0, (module, result.stderr[-2000:])


def test_fit_formats_inputs_once_and_submits_the_built_request(tmp_path: Path) -> None:
    """``_get_train_request`` accepts the already formatted channels and builds the same request from them."""
    from trainforge.train_request import build_train_request, training_channels

    est = Estimator(
        "img:1",
        role=SM_ROLE,
        instance_type="local",
        instance_count=1,
        model_uri="s3://b/model.tar.gz",
        sagemaker_session=offline_session(tmp_path),
    )
    est._prepare_for_training(job_name="once")
    inputs = {"train": TrainingInput("s3://b/train", input_mode="FastFile")}
    channels = training_channels(inputs)
    assert est._get_train_request(channels) == est._get_train_request(inputs)
    settings = est._training_settings()
    request = build_train_request(settings, channels)
    assert request == est._get_train_request(inputs)
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["train", "model"]
    assert channels.config is not None and [c["ChannelName"] for c in channels.config] == ["train"]  # not mutated
    single = training_channels(TrainingInput("s3://b/p", input_mode="Pipe"))
    assert build_train_request(settings, single)["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
