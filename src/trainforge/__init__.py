"""trainforge: self-hosted training jobs with the SageMaker Training contract.

A SageMaker notebook ports by replacing ``sagemaker`` with ``trainforge`` in its imports::

    import trainforge
    from trainforge.sklearn import SKLearn
    from trainforge.inputs import TrainingInput

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
}

if TYPE_CHECKING:
    from trainforge.estimator import Estimator
    from trainforge.inputs import TrainingInput
    from trainforge.session import Session, get_execution_role

__all__ = ["Estimator", "Session", "TrainingInput", "__version__", "get_execution_role"]


# Submodules reachable as attributes after a bare ``import trainforge``, as in ``sagemaker.image_uris.retrieve(...)``
# and ``sagemaker.estimator.Estimator(...)`` after ``import sagemaker``.
_SUBMODULES = frozenset(
    {"analytics", "estimator", "image_uris", "inputs", "pytorch", "remote_function", "session", "sklearn", "xgboost"}
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
