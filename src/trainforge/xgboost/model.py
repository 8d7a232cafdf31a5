"""``XGBoostModel`` and ``XGBoostPredictor`` (``sagemaker.xgboost.model``): serve an XGBoost model with a script."""

from __future__ import annotations

from typing import Any, ClassVar

from trainforge.deserializers import CSVDeserializer
from trainforge.model import FrameworkModel, PredictorFactory
from trainforge.predictor import Predictor
from trainforge.serializers import LibSVMSerializer


class XGBoostPredictor(Predictor):
    """A predictor of an XGBoost endpoint: LIBSVM in, CSV out, as SageMaker's.

    Args:
        endpoint_name: The endpoint's name.
        sagemaker_session: Session; default ``Session()``.
        serializer: Default :class:`~trainforge.serializers.LibSVMSerializer`.
        deserializer: Default :class:`~trainforge.deserializers.CSVDeserializer`.
    """

    default_serializer = LibSVMSerializer
    default_deserializer = CSVDeserializer


class XGBoostModel(FrameworkModel):
    """An XGBoost model served by the ``trainforge/xgboost`` image with an inference script (script mode).

    For the built-in algorithm's model (no script) use :class:`~trainforge.model.Model` with the algorithm's
    image, as ``Estimator.deploy()`` does.

    Args:
        model_data: ``s3://`` URI of the ``model.tar.gz``.
        role: Role ARN or name; default the caller's default role.
        entry_point: Inference script.
        framework_version: SageMaker XGBoost version, e.g. ``"1.7-1"`` (required unless ``image_uri``).
        image_uri: Image to serve with instead of the catalogue image.
        py_version: ``"py3"``.
        predictor_cls: What ``deploy()`` returns; default :class:`XGBoostPredictor`.
        model_server_workers: ``SAGEMAKER_MODEL_SERVER_WORKERS``.
        **kwargs: The other parameters of :class:`~trainforge.model.FrameworkModel`.

    Raises:
        ValidationError: No ``entry_point``; ``framework_version`` missing or unknown (known versions listed).
    """

    _framework_name: ClassVar[str] = "xgboost"

    def __init__(
        self,
        model_data: str | dict[str, Any] | None,
        role: str | None = None,
        entry_point: str | None = None,
        framework_version: str | None = None,
        image_uri: str | None = None,
        py_version: str | None = "py3",
        predictor_cls: type[Predictor] | PredictorFactory | None = XGBoostPredictor,
        model_server_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_data, image_uri, role, entry_point, predictor_cls=predictor_cls, **kwargs)
        self._init_framework(framework_version, py_version, model_server_workers)


__all__ = ["XGBoostModel", "XGBoostPredictor"]
