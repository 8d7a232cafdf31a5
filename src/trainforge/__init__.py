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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trainforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
