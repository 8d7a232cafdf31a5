"""What the supervisor adds for images that carry trainforge's own Python files.

``image_files`` (next to this module) holds top-level packages that run inside a job's environment: the built-in
algorithms (``trainforge_algorithms``) and the helper modules SageMaker's XGBoost image gives scripts
(``sagemaker_xgboost_container``, ``sagemaker_containers``). They import nothing of trainforge, so they work in
any image environment. A job gets ``image_files`` on its ``PYTHONPATH`` when it runs a built-in algorithm or its
image has ``sagemaker_helpers`` (the XGBoost images).
"""

from __future__ import annotations

from pathlib import Path

from trainforge.errors import ValidationError
from trainforge.spec.algorithms import MODULES
from trainforge.spec.images import job_image
from trainforge.spec.job import CreateTrainingJobRequest

IMAGE_FILES = Path(__file__).resolve().parent / "image_files"


def algorithm_command(python: str, algorithm: str) -> list[str]:
    """``<python> -m trainforge_algorithms.<module>`` for a built-in algorithm (``"xgboost"``, ...)."""
    return [python, "-m", MODULES[algorithm]]


def image_pythonpath(spec: CreateTrainingJobRequest, algorithm: str | None) -> list[str]:
    """The ``PYTHONPATH`` entries the job's image adds: ``[IMAGE_FILES]`` for a built-in algorithm or an image
    with SageMaker's helper modules, else nothing (also for an image that does not resolve)."""
    if algorithm is not None:
        return [str(IMAGE_FILES)]
    algo = spec.AlgorithmSpecification
    try:
        image = job_image(algo.TrainingImage, algo.AlgorithmName)
    except ValidationError:
        return []
    return [str(IMAGE_FILES)] if image.sagemaker_helpers else []
