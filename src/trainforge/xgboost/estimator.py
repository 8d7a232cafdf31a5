"""``XGBoost``: run an XGBoost script in the ``trainforge/xgboost:<version>`` image (reference §5.3, §8.1).

The image is the one the built-in XGBoost algorithm uses; with an ``entry_point`` it runs the script
(script mode), with the helper modules SageMaker's XGBoost image gives scripts importable
(``sagemaker_xgboost_container.data_utils``, ``sagemaker_xgboost_container.distributed``,
``sagemaker_containers.entry_point``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from trainforge.errors import ValidationError
from trainforge.estimator import Framework, pop_renamed_kwargs
from trainforge.xgboost.model import XGBoostModel

_PY_VERSION = re.compile(r"^py3\d*$")


class XGBoost(Framework):
    """An XGBoost training script (``sagemaker.xgboost.XGBoost`` / ``sagemaker.xgboost.estimator.XGBoost``).

    Hyperparameters are JSON-encoded (``"reg:squarederror"`` -> ``'"reg:squarederror"'``) and reach the
    script as ``--name value`` arguments and ``SM_HP_*`` variables. The image is the catalogue's
    ``trainforge/xgboost`` image for ``framework_version`` (SageMaker's versions, e.g. ``"1.2-1"``,
    ``"1.7-1"``, ``"3.0-5"``; see ``docs/images.md``).

    Args:
        entry_point: Script to run, relative to ``source_dir``.
        framework_version: SageMaker XGBoost version string (required unless ``image_uri`` is given).
        source_dir: Directory packaged as ``sourcedir.tar.gz``; its ``requirements.txt`` is installed on
            top of the image.
        hyperparameters: Hyperparameters of the job.
        py_version: Python flavour of the image (``"py3"``; every ``py3*`` value runs on the image's Python).
        image_uri: Image to run instead of the catalogue image.
        image_uri_region: Accepted for SageMaker compatibility; unused.
        **kwargs: The other parameters of :class:`~trainforge.estimator.EstimatorBase` (``role``,
            ``instance_type``, ``instance_count``, ``output_path``, ``dependencies``, ...).

    Raises:
        ValidationError: ``framework_version`` missing (without ``image_uri``) or unknown (the message lists
            the known versions), or a ``py_version`` other than ``py3*``; raised before anything is uploaded.
    """

    _framework_name: ClassVar[str] = "xgboost"

    def __init__(
        self,
        entry_point: str,
        framework_version: str | None = None,
        source_dir: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        py_version: str = "py3",
        image_uri: str | None = None,
        image_uri_region: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = pop_renamed_kwargs(dict(kwargs))
        if not _PY_VERSION.match(py_version or ""):
            raise ValidationError(
                f"py_version: XGBoost images run Python 3; got {py_version!r} (use 'py3')", field="py_version"
            )
        renamed_image = kwargs.pop("image_uri", None)
        self.py_version = py_version
        self.image_uri_region = image_uri_region
        super().__init__(
            entry_point,
            source_dir,
            hyperparameters,
            image_uri=image_uri or renamed_image,
            framework_version=framework_version,
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
    ) -> XGBoostModel:
        """A :class:`~trainforge.xgboost.model.XGBoostModel` of the latest job's model, serving with the training
        ``entry_point``/``source_dir`` unless others are given (e.g. ``entry_point="inference.py"``).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed.
        """
        params = self._model_kwargs(role, entry_point, source_dir, dependencies, dict(kwargs))
        params.setdefault("py_version", self.py_version)
        model = XGBoostModel(model_server_workers=model_server_workers, **params)
        self._link_model(model)
        return model
