"""Models without a server: repacking into self-contained ``model.tar.gz`` files, and the CreateModel,
CreateEndpointConfig, CreateEndpoint and CreateTransformJob requests built from settings (SageMaker's shapes)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.unit.test_sdk_request import SM_BUCKET, SM_ROLE, make_src, offline_session
from trainforge.errors import ValidationError
from trainforge.estimator import Estimator
from trainforge.inference_requests import (
    TRAINING_JOB_TAG,
    TransformSettings,
    endpoint_config_request,
    endpoint_request,
    model_request,
    production_variant,
    transform_job_request,
    with_training_job_tag,
)
from trainforge.model import FrameworkModel, Model
from trainforge.pytorch import PyTorchModel
from trainforge.sklearn import SKLearn, SKLearnModel
from trainforge.spec import images
from trainforge.storage import LocalObjectStore
from trainforge.transformer import Transformer
from trainforge.xgboost import XGBoostModel

MODEL_URI = "s3://bkt/job/output/model.tar.gz"


def store_of(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "storage")


def put_tar(store: LocalObjectStore, uri: str, files: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store.put_bytes(uri, buffer.getvalue())


def tar_contents(store: LocalObjectStore, uri: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(uri))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_framework_model_is_repacked_with_its_code_replacing_old_code(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    store = store_of(tmp_path)
    put_tar(store, MODEL_URI, {"./model.joblib": b"weights", "./code/old.py": b"old", "code/inference.py": b"stale"})
    src = make_src(tmp_path, {"inference.py": "def model_fn(d): ...\n", "requirements.txt": "six\n"})
    dep = tmp_path / "helpers"
    dep.mkdir()
    (dep / "util.py").write_text("X = 1\n")
    model = SKLearnModel(
        MODEL_URI,
        role=SM_ROLE,
        entry_point="inference.py",
        source_dir=str(src),
        framework_version="1.2-1",
        dependencies=[str(dep)],
        env={"EXTRA": "1"},
        sagemaker_session=session,
    )
    container = model.prepare_container_def("ml.m5.large")
    assert model.name is not None and model.name.startswith("sklearn-")
    repacked = f"s3://{SM_BUCKET}/{model.name}/model.tar.gz"
    assert container == {
        "Image": "trainforge/sklearn:1.2-1",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": "us-east-1",
            "EXTRA": "1",
        },
        "ModelDataUrl": repacked,
    }
    assert tar_contents(store, repacked) == {
        "model.joblib": b"weights",
        "code/inference.py": b"def model_fn(d): ...\n",
        "code/requirements.txt": b"six\n",
        "code/lib/helpers/util.py": b"X = 1\n",
    }
    assert tar_contents(store, MODEL_URI)["./model.joblib"] == b"weights"  # the original is left as it was


def test_repack_without_source_dir_and_from_an_uploaded_code_archive(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    store = store_of(tmp_path)
    put_tar(store, MODEL_URI, {"model.pth": b"t"})
    script = tmp_path / "serve.py"
    script.write_text("def model_fn(d): ...\n")
    lone = PyTorchModel(MODEL_URI, SM_ROLE, str(script), framework_version="2.1", sagemaker_session=session)
    container = lone.prepare_container_def("ml.g5.xlarge")
    assert container["Image"] == images.image_for("pytorch", "2.1", accelerator="gpu").name
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "serve.py"
    assert set(tar_contents(store, container["ModelDataUrl"])) == {"model.pth", "code/serve.py"}

    put_tar(store, "s3://bkt/job/source/sourcedir.tar.gz", {"pkg/predict.py": b"p", "requirements.txt": b""})
    archived = XGBoostModel(
        MODEL_URI,
        SM_ROLE,
        "pkg/predict.py",
        framework_version="1.7-1",
        source_dir="s3://bkt/job/source/sourcedir.tar.gz",
        sagemaker_session=session,
        name="xgb-model",
        code_location="s3://codes/deploys",
    )
    container = archived.prepare_container_def("ml.m5.large")
    assert container["ModelDataUrl"] == "s3://codes/deploys/xgb-model/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "pkg/predict.py"
    assert set(tar_contents(store, container["ModelDataUrl"])) == {
        "model.pth",
        "code/pkg/predict.py",
        "code/requirements.txt",
    }


def test_bad_models_name_the_field(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    src = make_src(tmp_path, {"inference.py": "x = 1\n"})
    missing = SKLearnModel(
        "s3://bkt/nothing/model.tar.gz",
        SM_ROLE,
        "inference.py",
        "1.2-1",
        source_dir=str(src),
        sagemaker_session=session,
    )
    with pytest.raises(ValidationError, match=r"model_data: no model.tar.gz at s3://bkt/nothing/model.tar.gz") as e:
        missing.prepare_container_def()
    assert e.value.field == "model_data"
    with pytest.raises(ValidationError) as e:
        SKLearnModel(MODEL_URI, SM_ROLE, "inference.py", source_dir=str(src), sagemaker_session=session)
    assert e.value.field == "framework_version" and "1.2-1" in e.value.message
    with pytest.raises(ValidationError, match=r"unknown version '9\.9'"):
        PyTorchModel(MODEL_URI, SM_ROLE, "inference.py", framework_version="9.9", sagemaker_session=session)
    with pytest.raises(ValidationError) as e:
        FrameworkModel(MODEL_URI, "trainforge/python:current", SM_ROLE, sagemaker_session=session)
    assert e.value.field == "entry_point"
    absent = SKLearnModel(MODEL_URI, SM_ROLE, "nope.py", "1.2-1", source_dir=str(src), sagemaker_session=session)
    with pytest.raises(ValidationError) as e:
        absent.prepare_container_def()
    assert e.value.field == "entry_point"
    plain = Model("trainforge/xgboost:1.7-1", MODEL_URI, SM_ROLE, sagemaker_session=session)
    with pytest.raises(ValidationError) as e:
        plain.deploy(instance_type="ml.m5.large")
    assert e.value.field == "initial_instance_count"
    with pytest.raises(ValidationError) as e:
        plain.deploy(1)
    assert e.value.field == "instance_type"
    with pytest.raises(ValidationError, match="created"):
        plain.delete_model()


def test_a_model_without_code_is_served_as_given(tmp_path: Path) -> None:
    model = Model("trainforge/xgboost:1.7-1", MODEL_URI, SM_ROLE, sagemaker_session=offline_session(tmp_path))
    assert model.prepare_container_def() == {
        "Image": "trainforge/xgboost:1.7-1",
        "Environment": {},
        "ModelDataUrl": MODEL_URI,
    }
    assert model.name is not None and model.name.startswith("xgboost-")


def test_create_model_and_endpoint_requests_are_sagemakers() -> None:
    container = {"Image": "trainforge/xgboost:1.7-1", "Environment": {}, "ModelDataUrl": MODEL_URI}
    tags = with_training_job_tag([{"Key": "team", "Value": "ml"}], "xgb-job-1")
    assert model_request("m1", SM_ROLE, container, tags=tags) == {
        "ModelName": "m1",
        "ExecutionRoleArn": SM_ROLE,
        "PrimaryContainer": container,
        "Tags": [{"Key": "team", "Value": "ml"}, {"Key": TRAINING_JOB_TAG, "Value": "xgb-job-1"}],
    }
    assert model_request("m1", SM_ROLE, container, enable_network_isolation=True)["EnableNetworkIsolation"] is True
    assert with_training_job_tag(None, None) is None
    assert with_training_job_tag([{"Key": TRAINING_JOB_TAG, "Value": "given"}], "other") == [
        {"Key": TRAINING_JOB_TAG, "Value": "given"}
    ]
    variant = production_variant("m1", "ml.m5.large", 2)
    assert variant == {
        "ModelName": "m1",
        "VariantName": "AllTraffic",
        "InitialVariantWeight": 1,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 2,
    }
    assert endpoint_config_request("ep", [variant]) == {"EndpointConfigName": "ep", "ProductionVariants": [variant]}
    assert endpoint_request("ep", "ep", tags=[{"Key": "a", "Value": "b"}]) == {
        "EndpointName": "ep",
        "EndpointConfigName": "ep",
        "Tags": [{"Key": "a", "Value": "b"}],
    }


def test_training_job_tag_matches_the_servers() -> None:
    from trainforge.spec.endpoints import TRAINING_JOB_TAG as SERVER_TAG

    assert TRAINING_JOB_TAG == SERVER_TAG


def test_transform_job_request_and_default_output_path(tmp_path: Path) -> None:
    settings = TransformSettings(
        "m1", 1, "ml.m5.large", "s3://bkt/preds", strategy="MultiRecord", assemble_with="Line", accept="text/csv"
    )
    request = transform_job_request(
        settings, "t1", "s3://bkt/batch/", content_type="text/csv", split_type="Line", join_source="Input"
    )
    assert request == {
        "TransformJobName": "t1",
        "ModelName": "m1",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/batch/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://bkt/preds", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        "BatchStrategy": "MultiRecord",
        "DataProcessing": {"JoinSource": "Input"},
    }
    transformer = Transformer(
        "m1", 1, "ml.m5.large", base_transform_job_name="xgboost", sagemaker_session=offline_session(tmp_path)
    )
    built = transformer._build_request("s3://bkt/batch/", None, content_type="text/csv")
    name = built["TransformJobName"]
    assert name.startswith("xgboost-") and built["TransformOutput"] == {"S3OutputPath": f"s3://{SM_BUCKET}/{name}"}
    again = transformer._build_request("s3://bkt/batch/", "t2")
    assert again["TransformOutput"]["S3OutputPath"] == f"s3://{SM_BUCKET}/t2"  # a default path follows the job
    with pytest.raises(ValidationError) as e:
        transformer._build_request("/local/dir", None)
    assert e.value.field == "data"


def test_deploy_transformer_and_create_model_before_fit_say_to_call_fit(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    generic = Estimator("trainforge/xgboost:1.7-1", SM_ROLE, 1, "ml.m5.large", sagemaker_session=session)
    sk = SKLearn(
        entry_point="train.py",
        source_dir=str(make_src(tmp_path)),
        framework_version="1.2-1",
        role=SM_ROLE,
        instance_type="ml.m5.large",
        sagemaker_session=session,
    )
    for est in (generic, sk):
        with pytest.raises(ValidationError, match=r"call fit\(\) first"):
            est.deploy(1, "ml.m5.large")
        with pytest.raises(ValidationError, match=r"call fit\(\) first"):
            est.transformer(1, "ml.m5.large")
        with pytest.raises(ValidationError, match=r"call fit\(\) first"):
            est.create_model()


def test_s3_uploader_and_downloader_over_the_sessions_store(tmp_path: Path) -> None:
    from trainforge.s3 import S3Downloader, S3Uploader, parse_s3_url, s3_path_join

    session = offline_session(tmp_path)
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("1,2\n")
    (data / "sub" / "b.csv").write_text("3,4\n")
    assert S3Uploader.upload(str(data), "s3://bkt/in", sagemaker_session=session) == "s3://bkt/in"
    assert S3Uploader.upload(str(data / "a.csv"), "s3://bkt/one", sagemaker_session=session) == "s3://bkt/one/a.csv"
    assert S3Uploader.upload_string_as_file_body("hi", "s3://bkt/t.txt", sagemaker_session=session) == "s3://bkt/t.txt"
    assert S3Uploader.upload_bytes(io.BytesIO(b"\x00"), "s3://bkt/b.bin", sagemaker_session=session)
    assert S3Downloader.list("s3://bkt/in", sagemaker_session=session) == ["s3://bkt/in/a.csv", "s3://bkt/in/sub/b.csv"]
    assert S3Downloader.read_file("s3://bkt/t.txt", sagemaker_session=session) == "hi"
    assert S3Downloader.read_bytes("s3://bkt/b.bin", sagemaker_session=session) == b"\x00"
    got = S3Downloader.download("s3://bkt/in", str(tmp_path / "out"), sagemaker_session=session)
    assert sorted(Path(p).relative_to(tmp_path / "out").as_posix() for p in got) == ["a.csv", "sub/b.csv"]
    assert parse_s3_url("s3://bkt/a/b") == ("bkt", "a/b")
    assert s3_path_join("s3://bkt/", "/a/", "b", with_end_slash=True) == "s3://bkt/a/b/"
    with pytest.raises(ValidationError):
        S3Downloader.read_file("/not/s3", sagemaker_session=session)
