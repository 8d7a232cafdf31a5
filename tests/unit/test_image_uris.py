"""image_uris.retrieve: SageMaker's framework names and versions -> catalogue images."""

from __future__ import annotations

import pytest

from trainforge import image_uris
from trainforge.errors import ValidationError
from trainforge.spec.images import CATALOGUE


def test_the_seed_notebooks_calls() -> None:
    region = "us-east-1"
    assert image_uris.retrieve("xgboost", region, "1.2-1") == "trainforge/xgboost:1.7-1"
    assert image_uris.retrieve("xgboost", region, "1.7-1") == "trainforge/xgboost:1.7-1"
    assert image_uris.retrieve("sklearn", region, "1.2-1") == "trainforge/sklearn:1.2-1"
    assert image_uris.retrieve("pytorch", region, "2.1") == "trainforge/pytorch:2.13-cpu"
    assert image_uris.retrieve(framework="xgboost", region=region, version="1.2-1", py_version="py3") == (
        "trainforge/xgboost:1.7-1"
    )


def test_old_xgboost_maps_to_a_python_311_build() -> None:
    image = CATALOGUE[image_uris.retrieve("xgboost", None, "1.2-1")]
    assert "xgboost-cpu==2.1.4" in image.requirements


@pytest.mark.parametrize("instance_type", ["ml.g4dn.xlarge", "ml.g5.2xlarge", "ml.p3.2xlarge", "local_gpu"])
def test_gpu_instance_types_select_the_gpu_image(instance_type: str) -> None:
    assert image_uris.retrieve("pytorch", "us-west-2", "2.1", instance_type=instance_type) == (
        "trainforge/pytorch:2.13-gpu"
    )


@pytest.mark.parametrize("instance_type", [None, "ml.m5.large", "ml.c5.xlarge", "local"])
def test_cpu_instance_types_select_the_cpu_image(instance_type: str | None) -> None:
    assert image_uris.retrieve("pytorch", None, "2.1", instance_type=instance_type) == "trainforge/pytorch:2.13-cpu"


def test_inference_scope_returns_the_same_image() -> None:
    assert image_uris.retrieve("sklearn", None, "1.2-1", image_scope="inference") == "trainforge/sklearn:1.2-1"


def test_sagemaker_aliases_and_default_version() -> None:
    assert image_uris.retrieve("scikit-learn", None, "1.2-1") == "trainforge/sklearn:1.2-1"
    assert image_uris.retrieve("xgboost", None) == "trainforge/xgboost:1.7-1"


def test_unknown_framework_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        image_uris.retrieve("tensorflow", "us-east-1", "2.13")
    assert info.value.field == "framework"
    assert "tensorflow" in info.value.message
    for known in ("sklearn", "xgboost", "pytorch"):
        assert known in info.value.message


def test_unknown_version_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as info:
        image_uris.retrieve("xgboost", "us-east-1", "9.9-9")
    assert info.value.field == "version"
    assert "'9.9-9'" in info.value.message and "1.2-1" in info.value.message and "1.7-1" in info.value.message


def test_bad_scope_and_python_2() -> None:
    with pytest.raises(ValidationError) as info:
        image_uris.retrieve("xgboost", None, "1.7-1", image_scope="inference_graviton")
    assert info.value.field == "image_scope"
    with pytest.raises(ValidationError) as info:
        image_uris.retrieve("xgboost", None, "1.7-1", py_version="py2")
    assert info.value.field == "py_version"


def test_every_retrieved_image_is_in_the_catalogue() -> None:
    for framework, version in [("sklearn", "0.23-1"), ("xgboost", "0.90-2"), ("pytorch", "1.13"), ("kmeans", "1")]:
        assert image_uris.retrieve(framework, None, version) in CATALOGUE
