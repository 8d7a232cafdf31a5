"""trainforge: self-hosted training jobs with the SageMaker Training contract.

A SageMaker notebook ports by replacing ``sagemaker`` with ``trainforge`` in its imports::

    import trainforge
    from trainforge.sklearn import SKLearn
    from trainforge.inputs import TrainingInput

and, after ``fit()``, ``est.deploy(...)`` / ``est.transformer(...)`` with ``trainforge.serializers``,
``trainforge.predictor``, ``trainforge.model`` in SageMaker's module paths (``docs/inference.md``).

``import trainforge`` stays light: the public names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainforge.version import __version__

_LAZY = {
    "Session": "trainforge.session",
    "get_execution_role": "trainforge.session",
    "Estimator": "trainforge.estimator",
    "TrainingInput": "trainforge.inputs",
    "Model": "trainforge.model",
    "FrameworkModel": "trainforge.model",
    "Predictor": "trainforge.predictor",
    "RealTimePredictor": "trainforge.predictor",
    "Transformer": "trainforge.transformer",
    "production_variant": "trainforge.inference_requests",
    "container_def": "trainforge.inference_requests",
}

if TYPE_CHECKING:
    from trainforge.estimator import Estimator
    from trainforge.inference_requests import container_def, production_variant
    from trainforge.inputs import TrainingInput
    from trainforge.model import FrameworkModel, Model
    from trainforge.predictor import Predictor, RealTimePredictor
    from trainforge.session import Session, get_execution_role
    from trainforge.transformer import Transformer

__all__ = [
    "Estimator",
    "FrameworkModel",
    "Model",
    "Predictor",
    "RealTimePredictor",
    "Session",
    "TrainingInput",
    "Transformer",
    "__version__",
    "container_def",
    "get_execution_role",
    "production_variant",
]


# Submodules reachable as attributes after a bare ``import trainforge``, as in ``sagemaker.image_uris.retrieve(...)``
# and ``sagemaker.estimator.Estimator(...)`` after ``import sagemaker``.
_SUBMODULES = frozenset(
    {
        "analytics",
        "deserializers",
        "estimator",
        "image_uris",
        "inputs",
        "model",
        "predictor",
        "pytorch",
        "remote_function",
        "s3",
        "serializers",
        "session",
        "sklearn",
        "transformer",
        "xgboost",
    }
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        try:
            submodule = importlib.import_module(f"trainforge.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"trainforge.{name}":
                raise
            raise AttributeError(f"module 'trainforge' has no attribute {name!r}") from None
        globals()[name] = submodule
        return submodule
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trainforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
