"""``SKLearnModel`` and ``SKLearnPredictor`` (``sagemaker.sklearn.model``): serve a scikit-learn model."""

from __future__ import annotations

from typing import Any, ClassVar

from trainforge.deserializers import NumpyDeserializer
from trainforge.model import FrameworkModel, PredictorFactory
from trainforge.predictor import Predictor
from trainforge.serializers import NumpySerializer


class SKLearnPredictor(Predictor):
    """A predictor of a scikit-learn endpoint: numpy arrays in and out (``.npy``), as SageMaker's.

    Args:
        endpoint_name: The endpoint's name.
        sagemaker_session: Session; default ``Session()``.
        serializer: Default :class:`~trainforge.serializers.NumpySerializer`.
        deserializer: Default :class:`~trainforge.deserializers.NumpyDeserializer`.
    """

    default_serializer = NumpySerializer
    default_deserializer = NumpyDeserializer


class SKLearnModel(FrameworkModel):
    """A scikit-learn model served by the ``trainforge/sklearn`` image with an inference script.

    The default ``predict_fn`` is ``model.predict(data)``; the script needs at least ``model_fn``.

    Args:
        model_data: ``s3://`` URI of the ``model.tar.gz``.
        role: Role ARN or name; default the caller's default role.
        entry_point: Inference script.
        framework_version: scikit-learn image version, e.g. ``"1.2-1"`` (required unless ``image_uri``).
        py_version: ``"py3"``.
        image_uri: Image to serve with instead of the catalogue image.
        predictor_cls: What ``deploy()`` returns; default :class:`SKLearnPredictor`.
        model_server_workers: ``SAGEMAKER_MODEL_SERVER_WORKERS``.
        **kwargs: The other parameters of :class:`~trainforge.model.FrameworkModel`.

    Raises:
        ValidationError: No ``entry_point``; ``framework_version`` missing or unknown (known versions listed).
    """

    _framework_name: ClassVar[str] = "sklearn"

    def __init__(
        self,
        model_data: str | dict[str, Any] | None,
        role: str | None = None,
        entry_point: str | None = None,
        framework_version: str | None = None,
        py_version: str | None = "py3",
        image_uri: str | None = None,
        predictor_cls: type[Predictor] | PredictorFactory | None = SKLearnPredictor,
        model_server_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_data, image_uri, role, entry_point, predictor_cls=predictor_cls, **kwargs)
        self._init_framework(framework_version, py_version, model_server_workers)


__all__ = ["SKLearnModel", "SKLearnPredictor"]
