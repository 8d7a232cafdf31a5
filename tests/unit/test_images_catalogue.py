"""The image catalogue's pins: exact, consistent, and holding what SageMaker's framework containers ship."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainforge.runtime.envcache import normalize_name
from trainforge.spec.images import CATALOGUE, Image

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images.md"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\d+(?:\.\d+)*(?:\.post\d+)?(?:\+[a-z0-9]+)?)$")

# What scripts written for each SageMaker container import at module level (docs/images.md says where from).
SERVING_TOOLKIT = {"flask", "sagemaker-inference", "six", "boto3", "psutil", "requests", "retrying"}
MUST_HAVE: dict[str, set[str]] = {
    "sklearn": {"scikit-learn", "numpy", "scipy", "pandas", "joblib", *SERVING_TOOLKIT},
    "xgboost": {"xgboost-cpu", "scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "pillow", "pyyaml"}
    | SERVING_TOOLKIT,
    "pytorch": {"torch", "numpy", "pandas", "scipy", "scikit-learn", "pillow", "opencv-python-headless", "h5py"}
    | {"pyyaml", *SERVING_TOOLKIT},
}
BUILT = [img for img in CATALOGUE.values() if not img.uses_server_interpreter]


def pins(image: Image) -> dict[str, str]:
    """Normalized name -> pinned version; fails on anything that is not an exact ``name==version``."""
    out: dict[str, str] = {}
    for req in image.requirements:
        m = PIN.match(req)
        assert m, f"{image.name}: {req!r} is not an exact pin (name==version)"
        name = normalize_name(m.group(1))
        assert name not in out, f"{image.name}: {name} pinned twice"
        out[name] = m.group(2)
    return out


@pytest.mark.parametrize("image", BUILT, ids=lambda i: i.name)
def test_every_pin_is_exact_and_named_once(image: Image) -> None:
    pins(image)


@pytest.mark.parametrize("framework", sorted(MUST_HAVE))
def test_framework_images_hold_what_sagemaker_containers_ship(framework: str) -> None:
    images = [img for img in CATALOGUE.values() if img.framework == framework]
    assert images
    for image in images:
        missing = MUST_HAVE[framework] - set(pins(image))
        assert not missing, f"{image.name} lacks {sorted(missing)}"


def test_pytorch_images_keep_the_cpu_wheel_and_torchvision_only_beside_cuda_torch() -> None:
    cpu, gpu = pins(CATALOGUE["trainforge/pytorch:2.13-cpu"]), pins(CATALOGUE["trainforge/pytorch:2.13-gpu"])
    assert cpu["torch"] == "2.13.0+cpu" and gpu["torch"] == "2.13.0"
    # PyPI's torchvision is built against CUDA torch and cannot import beside the +cpu wheel.
    assert "torchvision" not in cpu and gpu["torchvision"] == "0.28.0"
    assert {k: v for k, v in cpu.items() if k != "torch"} == {
        k: v for k, v in gpu.items() if k not in ("torch", "torchvision")
    }


@pytest.mark.parametrize("image", BUILT, ids=lambda i: i.name)
def test_pins_agree_with_each_other(image: Image) -> None:
    found = pins(image)
    numpy_major = int(found.get("numpy", "2").split(".")[0])
    if found.get("pandas") == "2.0.3" or found.get("scikit-learn") in ("1.2.2", "1.4.2"):
        assert numpy_major == 1, f"{image.name}: these wheels are built against NumPy 1"
    if "sagemaker-inference" in found:  # it requires retrying>=1.3.3,<1.4
        assert found["retrying"].startswith("1.3."), image.name
    if "flask" in found:  # Flask 3.1 needs Werkzeug >= 3.1
        assert int(found["werkzeug"].split(".")[0]) >= 3, image.name


def test_docs_describe_every_image() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in CATALOGUE:
        assert f"`{name}`" in text, f"docs/images.md does not list {name}"
    for req in ("flask==3.1.3", "sagemaker-inference==1.10.1", "torch==2.13.0+cpu"):
        assert req in text
