"""``SKLearn``: run a scikit-learn script in the ``trainforge/sklearn:<version>`` image (reference §5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from trainforge.errors import ValidationError
from trainforge.estimator import Framework, check_instance_count, pop_renamed_kwargs
from trainforge.sklearn.model import SKLearnModel

_GPU_PREFIXES = ("ml.p", "ml.g", "local_gpu")


class SKLearn(Framework):
    """A scikit-learn training script (``sagemaker.sklearn.SKLearn``).

    Hyperparameters are JSON-encoded; the job runs on exactly one instance.

    Args:
        entry_point: Script to run, relative to ``source_dir``.
        framework_version: scikit-learn image version, e.g. ``"1.2-1"`` (required unless ``image_uri``).
        py_version: Python flavour of the image (``"py3"``).
        source_dir: Directory packaged as ``sourcedir.tar.gz``.
        hyperparameters: Hyperparameters of the job.
        image_uri: Image to run instead of the catalogue image for ``framework_version`` (``"1.2-1"`` ->
            ``trainforge/sklearn:1.2-1``; other SageMaker versions map as ``docs/images.md`` lists).
        image_uri_region: Accepted for SageMaker compatibility; unused.
        **kwargs: The other parameters of :class:`~trainforge.estimator.EstimatorBase`.

    Raises:
        ValidationError: Neither ``framework_version`` nor ``image_uri`` given, an unknown
            ``framework_version`` (the message lists the known ones), ``instance_count`` other than 1, or a
            GPU instance type.
    """

    _framework_name: ClassVar[str] = "sklearn"

    def __init__(
        self,
        entry_point: str,
        framework_version: str | None = None,
        py_version: str | None = "py3",
        source_dir: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        image_uri: str | None = None,
        image_uri_region: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = pop_renamed_kwargs(dict(kwargs))
        if framework_version is None and image_uri is None:
            raise ValidationError(
                "framework_version: required unless image_uri is given (e.g. framework_version='1.2-1')",
                field="framework_version",
            )
        instance_count = kwargs.pop("instance_count", None)
        if instance_count is not None and check_instance_count(instance_count) != 1:
            raise ValidationError(
                "instance_count: Scikit-Learn does not support distributed training; "
                "remove instance_count or set instance_count=1",
                field="instance_count",
            )
        instance_type = kwargs.get("instance_type")
        if isinstance(instance_type, str) and instance_type.startswith(_GPU_PREFIXES):
            raise ValidationError(
                f"instance_type: GPU training is not supported for Scikit-Learn ({instance_type})",
                field="instance_type",
            )
        self.py_version = py_version
        self.image_uri_region = image_uri_region
        super().__init__(
            entry_point,
            source_dir,
            hyperparameters,
            image_uri=image_uri,
            framework_version=framework_version,
            instance_count=1,
            **kwargs,
        )

    def create_model(
        self,
        model_server_workers: int | None = None,
        role: str | None = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
        dependencies: list[str] | None = None,
        **kwargs: Any,
    ) -> SKLearnModel:
        """A :class:`~trainforge.sklearn.model.SKLearnModel` of the latest job's model, serving with the training
        ``entry_point``/``source_dir`` unless others are given (e.g. ``entry_point="inference.py"``).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed.
        """
        params = self._model_kwargs(role, entry_point, source_dir, dependencies, dict(kwargs))
        params.setdefault("py_version", self.py_version)
        model = SKLearnModel(model_server_workers=model_server_workers, **params)
        self._link_model(model)
        return model
