"""The image catalogue: what each ``trainforge/<framework>:<version>`` image contains, and the one table that
maps SageMaker's framework names and version strings (and its ECR image URIs) onto it.

An image resolves to an *environment*: a Python virtual environment built by ``uv`` from the image's pinned
requirements (``trainforge/python:current`` is the server's own interpreter and needs no build). Only
Python 3.11 environments are built here, so every ``py_version`` maps to 3.11.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainforge.errors import ValidationError

PYTHON = "3.11"

_SCIPY_STACK_NP1 = ("numpy==1.26.4", "scipy==1.11.4", "pandas==2.0.3", "joblib==1.3.2", "threadpoolctl==3.2.0")
_SCIPY_STACK_NP2 = ("numpy==2.2.6", "scipy==1.15.3", "pandas==2.2.3", "joblib==1.4.2", "threadpoolctl==3.6.0")
# What a warm worker's forkserver imports per image (Image.preload): the modules whose import dominates a job's start.
_PRELOAD_PYTHON = ("json", "subprocess", "cloudpickle")  # cheap; what the @remote runner imports
_PRELOAD_SKLEARN = ("numpy", "pandas", "scipy", "scipy.stats", "sklearn", "sklearn.ensemble", "sklearn.linear_model")

# What SageMaker's framework containers ship beside the framework and that scripts import (docs/images.md says
# which packages each SageMaker container lists, and what differs here and why).
# The serving toolkit and web stack of SageMaker's scikit-learn and XGBoost containers (their requirements.txt:
# Flask, sagemaker-inference, boto3, psutil, retrying, six, ...): inference-pipeline scripts import flask and
# sagemaker_inference at module level.
_SERVING_TOOLKIT = (
    "flask==3.1.3",
    "werkzeug==3.1.9",
    "jinja2==3.1.6",
    "itsdangerous==2.2.0",
    "markupsafe==3.0.3",
    "sagemaker-inference==1.10.1",
    "retrying==1.3.4",
    "six==1.17.0",
    "psutil==7.2.2",
    "boto3==1.43.107",
    "python-dateutil==2.9.0.post0",
    "requests==2.34.2",
)
# Beside torch (and torchvision), SageMaker's PyTorch training and inference containers install pandas, scipy,
# scikit-learn, Pillow, opencv-python, h5py, requests, PyYAML, boto3, psutil, six and the inference toolkit.
_PYTORCH_EXTRAS = (
    *_SCIPY_STACK_NP2,
    "scikit-learn==1.6.1",
    "pillow==11.3.0",
    "opencv-python-headless==4.14.0.94",
    "h5py==3.14.0",
    "pyyaml==6.0.3",
    *_SERVING_TOOLKIT,
)


@dataclass(frozen=True)
class Image:
    """One catalogue entry."""

    name: str
    framework: str
    version: str
    requirements: tuple[str, ...]
    accelerator: str = "cpu"
    algorithm: str | None = None
    sagemaker_helpers: bool = False
    python: str | None = PYTHON
    preload: tuple[str, ...] = ()
    """Modules a warm worker's forkserver imports once for this image's jobs (the heavy ones its scripts import;
    a missing one is skipped), see :mod:`trainforge.runtime.forkserver`."""

    @property
    def uses_server_interpreter(self) -> bool:
        """Whether jobs run in the server's own interpreter (no environment build)."""
        return self.python is None


def _sklearn(version: str, sklearn: str, stack: tuple[str, ...]) -> Image:
    return Image(
        f"trainforge/sklearn:{version}",
        "sklearn",
        version,
        (f"scikit-learn=={sklearn}", *stack, *_SERVING_TOOLKIT),
        preload=_PRELOAD_SKLEARN,
    )


def _xgboost(version: str, xgb: str, stack: tuple[str, ...], sklearn: str) -> Image:
    return Image(
        f"trainforge/xgboost:{version}",
        "xgboost",
        version,
        (
            f"xgboost-cpu=={xgb}",
            f"scikit-learn=={sklearn}",
            "pyarrow==17.0.0",
            *stack,
            "pillow==11.3.0",
            "pyyaml==6.0.3",
            *_SERVING_TOOLKIT,
        ),
        algorithm="xgboost",
        sagemaker_helpers=True,
        preload=(*_PRELOAD_SKLEARN, "xgboost"),
    )


def _pytorch(version: str, accelerator: str) -> Image:
    # PyPI's torchvision wheels are built against CUDA torch and fail to import beside the +cpu build
    # ("operator torchvision::nms does not exist"); the CPU image has no torchvision (docs/images.md).
    torch = ("torch==2.13.0+cpu",) if accelerator == "cpu" else ("torch==2.13.0", "torchvision==0.28.0")
    return Image(
        f"trainforge/pytorch:{version}-{accelerator}",
        "pytorch",
        version,
        (*torch, *_PYTORCH_EXTRAS),
        accelerator=accelerator,
        preload=("numpy", "torch"),
    )


_IMAGES: list[Image] = [
    Image("trainforge/python:current", "python", "current", (), python=None, preload=_PRELOAD_PYTHON),
    Image(f"trainforge/python:{PYTHON}", "python", PYTHON, (), preload=_PRELOAD_PYTHON),
    _sklearn("1.2-1", "1.2.2", _SCIPY_STACK_NP1),
    _sklearn("1.4-2", "1.4.2", _SCIPY_STACK_NP1),
    _xgboost("1.7-1", "2.1.4", _SCIPY_STACK_NP1, "1.2.2"),
    _xgboost("3.0-5", "3.0.5", _SCIPY_STACK_NP2, "1.6.1"),
    _pytorch("2.13", "cpu"),
    _pytorch("2.13", "gpu"),
    Image(
        "trainforge/linear-learner:1",
        "linear-learner",
        "1",
        ("scikit-learn==1.4.2", *_SCIPY_STACK_NP1),
        algorithm="linear-learner",
        preload=_PRELOAD_SKLEARN,
    ),
    Image(
        "trainforge/kmeans:1",
        "kmeans",
        "1",
        ("scikit-learn==1.4.2", *_SCIPY_STACK_NP1),
        algorithm="kmeans",
        preload=_PRELOAD_SKLEARN,
    ),
]

CATALOGUE: dict[str, Image] = {img.name: img for img in _IMAGES}

# The one table: (framework as SageMaker names it, SageMaker version string) -> catalogue image.
# Versions that SageMaker knows but that cannot be built for Python 3.11 map onto the nearest buildable image.
FRAMEWORK_VERSIONS: dict[str, dict[str, str]] = {
    "sklearn": {
        "0.23-1": "trainforge/sklearn:1.2-1",
        "1.0-1": "trainforge/sklearn:1.2-1",
        "1.2-1": "trainforge/sklearn:1.2-1",
        "1.4-2": "trainforge/sklearn:1.4-2",
    },
    "xgboost": {
        "0.90-2": "trainforge/xgboost:1.7-1",
        "1.0-1": "trainforge/xgboost:1.7-1",
        "1.2-1": "trainforge/xgboost:1.7-1",
        "1.2-2": "trainforge/xgboost:1.7-1",
        "1.3-1": "trainforge/xgboost:1.7-1",
        "1.5-1": "trainforge/xgboost:1.7-1",
        "1.7-1": "trainforge/xgboost:1.7-1",
        "1": "trainforge/xgboost:1.7-1",
        "latest": "trainforge/xgboost:1.7-1",
        "3.0-5": "trainforge/xgboost:3.0-5",
    },
    "pytorch": {
        v: "trainforge/pytorch:2.13-{accelerator}"
        for v in ("1.13", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.13")
    },
    "linear-learner": {"1": "trainforge/linear-learner:1", "latest": "trainforge/linear-learner:1"},
    "kmeans": {"1": "trainforge/kmeans:1", "latest": "trainforge/kmeans:1"},
    "python": {"current": "trainforge/python:current", PYTHON: f"trainforge/python:{PYTHON}"},
}

# SageMaker's names for the same frameworks (image repositories and SDK framework keys).
FRAMEWORK_ALIASES: dict[str, str] = {
    "scikit-learn": "sklearn",
    "sagemaker-scikit-learn": "sklearn",
    "sagemaker-xgboost": "xgboost",
    "xgboost": "xgboost",
    "pytorch-training": "pytorch",
    "pytorch": "pytorch",
    "torch": "pytorch",
    "linear-learner": "linear-learner",
    "linearlearner": "linear-learner",
    "kmeans": "kmeans",
    "sklearn": "sklearn",
    "python": "python",
}

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# Docker's image reference grammar (distribution's reference package): [domain[:port]/]path[:tag][@digest].
CONTAINER_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
CATALOGUE_PREFIX = "trainforge/"

_ECR = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/(?P<repo>[^:@]+)[:@](?P<tag>.+)$")


def _known(framework: str) -> str:
    return ", ".join(FRAMEWORK_VERSIONS[framework])


def image_for(framework: str, version: str | None, *, accelerator: str = "cpu", field: str = "framework") -> Image:
    """The catalogue image for a SageMaker framework name and version string.

    Raises :class:`ValidationError` listing the known frameworks or versions when either is unknown.
    """
    key = FRAMEWORK_ALIASES.get(framework.lower())
    if key is None:
        raise ValidationError(
            f"{field}: unknown framework {framework!r}; known: {', '.join(sorted(FRAMEWORK_VERSIONS))}", field=field
        )
    versions = FRAMEWORK_VERSIONS[key]
    if version is None:
        version = "latest" if "latest" in versions else list(versions)[-1]
    if version not in versions:
        raise ValidationError(
            f"version: unknown {key} version {version!r}; known: {_known(key)}",
            field="version",
            details={"known_versions": list(versions)},
        )
    return CATALOGUE[versions[version].format(accelerator=accelerator)]


def resolve_image(uri: str, *, field: str = "AlgorithmSpecification.TrainingImage") -> Image:
    """The catalogue image a training image URI names: a ``trainforge/...`` name or a SageMaker ECR URI."""
    if uri in CATALOGUE:
        return CATALOGUE[uri]
    m = _ECR.match(uri)
    if m:
        repo, tag = m.group("repo"), m.group("tag")
        framework = FRAMEWORK_ALIASES.get(repo)
        if framework is not None:
            accelerator = "gpu" if "-gpu" in tag else "cpu"
            version = tag.split("-cpu")[0].split("-gpu")[0] if framework in ("sklearn", "pytorch") else tag
            return image_for(framework, version, accelerator=accelerator, field=field)
    raise ValidationError(
        f"{field}: unknown training image {uri!r}; known images: {', '.join(CATALOGUE)} "
        "(or use trainforge.image_uris.retrieve(framework, region, version))",
        field=field,
    )


def is_container_image(uri: str | None) -> bool:
    """Whether a ``TrainingImage`` names a container image of its own (run with a Docker-compatible engine): neither
    a catalogue name (``trainforge/...``, known or not) nor a SageMaker ECR URI of a catalogue framework."""
    if not uri or uri in CATALOGUE or uri.startswith(CATALOGUE_PREFIX):
        return False
    m = _ECR.match(uri)
    return not (m and m.group("repo") in FRAMEWORK_ALIASES)


def check_container_reference(uri: str, *, field: str = "AlgorithmSpecification.TrainingImage") -> str:
    """``uri`` when it is a well-formed image reference (``[registry[:port]/]name[:tag][@sha256:...]``, lower-case
    name); raises :class:`ValidationError` naming ``field`` and the form otherwise."""
    if not CONTAINER_REFERENCE.match(uri):
        raise ValidationError(
            f"{field}: {uri!r} is not a container image reference; use [registry[:port]/]name[:tag][@digest] with a "
            "lower-case name (e.g. my-team/train:1 or registry.example.com:5000/train@sha256:...), or a catalogue "
            f"image ({', '.join(CATALOGUE)})",
            field=field,
        )
    return uri


def job_image(training_image: str | None, algorithm_name: str | None = None) -> Image:
    """The image a job runs: its ``AlgorithmSpecification.TrainingImage`` (see :func:`resolve_image`), or an
    ``AlgorithmName`` naming a framework or built-in algorithm (``"xgboost"``: its latest image).

    Raises :class:`ValidationError` naming the field, with the known images or names, when neither resolves.
    """
    if training_image:
        return resolve_image(training_image)
    if algorithm_name:
        return image_for(algorithm_name, None, field="AlgorithmSpecification.AlgorithmName")
    raise ValidationError(
        "AlgorithmSpecification.TrainingImage: required (a catalogue image such as trainforge/python:current)",
        field="AlgorithmSpecification.TrainingImage",
    )


def accelerator_for(instance_type: str | None) -> str:
    """``"gpu"`` for GPU instance types (families ``ml.g*``/``ml.p*`` and ``local_gpu``), else ``"cpu"``.

    The same rule SageMaker's SDK uses to pick a ``-gpu`` image tag for an instance type.
    """
    if not instance_type:
        return "cpu"
    if instance_type == "local_gpu":
        return "gpu"
    parts = instance_type.split(".")
    family = parts[1] if len(parts) > 2 and parts[0] == "ml" else ""
    return "gpu" if family[:1] in ("g", "p") else "cpu"
