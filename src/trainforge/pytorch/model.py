"""``PyTorchModel`` and ``PyTorchPredictor`` (``sagemaker.pytorch.model``): serve a PyTorch model."""

from __future__ import annotations

from typing import Any, ClassVar

from trainforge.deserializers import NumpyDeserializer
from trainforge.model import FrameworkModel, PredictorFactory
from trainforge.predictor import Predictor
from trainforge.serializers import NumpySerializer


class PyTorchPredictor(Predictor):
    """A predictor of a PyTorch endpoint: numpy arrays in and out (``.npy``), as SageMaker's.

    Args:
        endpoint_name: The endpoint's name.
        sagemaker_session: Session; default ``Session()``.
        serializer: Default :class:`~trainforge.serializers.NumpySerializer`.
        deserializer: Default :class:`~trainforge.deserializers.NumpyDeserializer`.
    """

    default_serializer = NumpySerializer
    default_deserializer = NumpyDeserializer


class PyTorchModel(FrameworkModel):
    """A PyTorch model served by the ``trainforge/pytorch`` image with an inference script.

    The script must define ``model_fn`` (there is no default loader, as in SageMaker's PyTorch container).

    Args:
        model_data: ``s3://`` URI of the ``model.tar.gz``.
        role: Role ARN or name; default the caller's default role.
        entry_point: Inference script.
        framework_version: SageMaker PyTorch version, e.g. ``"2.1"`` (required unless ``image_uri``; SageMaker's
            old default ``"1.3"`` has no image here).
        py_version: ``"py3"``, ``"py310"``, ...
        image_uri: Image to serve with instead of the catalogue image.
        predictor_cls: What ``deploy()`` returns; default :class:`PyTorchPredictor`.
        model_server_workers: ``SAGEMAKER_MODEL_SERVER_WORKERS``.
        **kwargs: The other parameters of :class:`~trainforge.model.FrameworkModel`.

    Raises:
        ValidationError: No ``entry_point``; ``framework_version`` missing or unknown (known versions listed).
    """

    _framework_name: ClassVar[str] = "pytorch"

    def __init__(
        self,
        model_data: str | dict[str, Any] | None,
        role: str | None = None,
        entry_point: str | None = None,
        framework_version: str | None = None,
        py_version: str | None = None,
        image_uri: str | None = None,
        predictor_cls: type[Predictor] | PredictorFactory | None = PyTorchPredictor,
        model_server_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_data, image_uri, role, entry_point, predictor_cls=predictor_cls, **kwargs)
        self._init_framework(framework_version, py_version, model_server_workers)


__all__ = ["PyTorchModel", "PyTorchPredictor"]
