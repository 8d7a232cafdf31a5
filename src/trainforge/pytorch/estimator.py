"""``PyTorch``: run a PyTorch script in a ``trainforge/pytorch:<version>-cpu|-gpu`` image (reference §5.3).

``distribution`` turns on a distributed launch the way SageMaker's SDK does, by adding reserved
hyperparameters that the runtime reads (reference §1.8, §2.2): ``{"torch_distributed": {"enabled": True}}``
sets ``sagemaker_torch_distributed_enabled`` and ``{"pytorchddp": {"enabled": True}}`` sets
``sagemaker_pytorch_ddp_enabled`` (both also send ``sagemaker_instance_type``); the runtime starts the
script with ``torchrun`` on each host for either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from trainforge.errors import ValidationError
from trainforge.estimator import Framework, pop_renamed_kwargs
from trainforge.pytorch.model import PyTorchModel
from trainforge.train_request import json_encode_hyperparameters

TORCH_DISTRIBUTED_HP = "sagemaker_torch_distributed_enabled"
PYTORCH_DDP_HP = "sagemaker_pytorch_ddp_enabled"
INSTANCE_TYPE_HP = "sagemaker_instance_type"
# distribution key -> the hyperparameter it enables.
DISTRIBUTIONS: dict[str, str] = {"pytorchddp": PYTORCH_DDP_HP, "torch_distributed": TORCH_DISTRIBUTED_HP}

_PY_VERSION = re.compile(r"^py3\d*$")


def distribution_hyperparameters(distribution: Mapping[str, Any], instance_type: str | None) -> dict[str, Any]:
    """The reserved hyperparameters (not yet encoded) a ``distribution`` dict adds, as SageMaker's SDK does.

    ``pytorchddp`` wins when both keys are present; a strategy with ``"enabled": False`` adds nothing.

    Raises:
        ValidationError: A key other than ``torch_distributed``/``pytorchddp`` (e.g. ``mpi``,
            ``smdistributed``), or a value that is not ``{"enabled": bool}``.
    """
    unknown = sorted(set(distribution) - set(DISTRIBUTIONS))
    if unknown:
        raise ValidationError(
            f"distribution: {', '.join(repr(k) for k in unknown)} is not supported by trainforge; "
            f"supported: {', '.join(repr(k) for k in DISTRIBUTIONS)} "
            "(e.g. {'torch_distributed': {'enabled': True}})",
            field="distribution",
        )
    for key, option in distribution.items():
        if not isinstance(option, Mapping) or not isinstance(option.get("enabled", False), bool):
            raise ValidationError(
                f"distribution: {key!r} must be a dict like {{'enabled': True}} (got {option!r})",
                field="distribution",
            )
    for key, hyperparameter in DISTRIBUTIONS.items():
        if key in distribution:
            if not distribution[key].get("enabled", False):
                return {}
            config: dict[str, Any] = {hyperparameter: True}
            if instance_type is not None:
                config[INSTANCE_TYPE_HP] = instance_type
            return config
    return {}


class PyTorch(Framework):
    """A PyTorch training script (``sagemaker.pytorch.PyTorch``).

    Hyperparameters are JSON-encoded; the image is the catalogue's ``trainforge/pytorch`` image for
    ``framework_version`` (SageMaker's versions, e.g. ``"2.1"``; see ``docs/images.md``), its ``-gpu``
    variant on GPU instance types (``ml.g4dn``, ``ml.g5``, ``ml.p3``, ``local_gpu``). As in SageMaker,
    ``EnableSageMakerMetricsTimeSeries`` is sent as true unless ``enable_sagemaker_metrics`` is given.

    Args:
        entry_point: Script to run, relative to ``source_dir``.
        framework_version: SageMaker PyTorch version string (required unless ``image_uri`` is given).
        py_version: Python flavour (``"py3"``, ``"py310"``, ...; every ``py3*`` runs on the image's Python).
        source_dir: Directory packaged as ``sourcedir.tar.gz``; its ``requirements.txt`` is installed on
            top of the image.
        hyperparameters: Hyperparameters of the job.
        image_uri: Image to run instead of the catalogue image.
        distribution: ``{"torch_distributed": {"enabled": True}}`` or ``{"pytorchddp": {"enabled": True}}``:
            start the script with ``torchrun`` on each host, one process per GPU (one on CPU hosts).
        compiler_config: SageMaker Training Compiler; not available here, must be None.
        training_recipe: SageMaker HyperPod recipes; not available here, must be None.
        recipe_overrides: Must be None (see ``training_recipe``).
        **kwargs: The other parameters of :class:`~trainforge.estimator.EstimatorBase` (``role``,
            ``instance_type``, ``instance_count``, ``output_path``, ``dependencies``, ...).

    Raises:
        ValidationError: ``framework_version`` missing (without ``image_uri``) or unknown (the message
            lists the known versions), a ``py_version`` other than ``py3*``, an unsupported
            ``distribution``, or a compiler/recipe option; raised before anything is uploaded.
    """

    _framework_name: ClassVar[str] = "pytorch"
    LAUNCH_PYTORCH_DDP_ENV_NAME: ClassVar[str] = PYTORCH_DDP_HP
    LAUNCH_TORCH_DISTRIBUTED_ENV_NAME: ClassVar[str] = TORCH_DISTRIBUTED_HP
    INSTANCE_TYPE_ENV_NAME: ClassVar[str] = INSTANCE_TYPE_HP

    def __init__(
        self,
        entry_point: str,
        framework_version: str | None = None,
        py_version: str | None = None,
        source_dir: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        image_uri: str | None = None,
        distribution: Mapping[str, Any] | None = None,
        compiler_config: Any = None,
        training_recipe: str | None = None,
        recipe_overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = pop_renamed_kwargs(dict(kwargs))
        for name, value in (
            ("compiler_config", compiler_config),
            ("training_recipe", training_recipe),
            ("recipe_overrides", recipe_overrides),
        ):
            if value is not None:
                raise ValidationError(f"{name}: not supported by trainforge; remove it", field=name)
        if py_version is not None and not _PY_VERSION.match(py_version):
            raise ValidationError(
                f"py_version: PyTorch images run Python 3; got {py_version!r} (e.g. 'py310')", field="py_version"
            )
        renamed_image = kwargs.pop("image_uri", None)
        kwargs.setdefault("enable_sagemaker_metrics", True)
        self.py_version = py_version
        self.distribution: dict[str, Any] = dict(distribution or {})
        self.compiler_config = None
        super().__init__(
            entry_point,
            source_dir,
            hyperparameters,
            image_uri=image_uri or renamed_image,
            framework_version=framework_version,
            **kwargs,
        )
        distribution_hyperparameters(self.distribution, self.instance_type)

    def hyperparameters(self) -> dict[str, Any]:
        """As :meth:`Framework.hyperparameters`, plus the JSON-encoded distribution hyperparameters."""
        hyperparameters = super().hyperparameters()
        hyperparameters.update(
            json_encode_hyperparameters(distribution_hyperparameters(self.distribution, self.instance_type))
        )
        return hyperparameters

    def create_model(
        self,
        model_server_workers: int | None = None,
        role: str | None = None,
        entry_point: str | None = None,
        source_dir: str | None = None,
        dependencies: list[str] | None = None,
        **kwargs: Any,
    ) -> PyTorchModel:
        """A :class:`~trainforge.pytorch.model.PyTorchModel` of the latest job's model, serving with the training
        ``entry_point``/``source_dir`` unless others are given (e.g. ``entry_point="inference.py"``).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed.
        """
        params = self._model_kwargs(role, entry_point, source_dir, dependencies, dict(kwargs))
        params.setdefault("py_version", self.py_version)
        model = PyTorchModel(model_server_workers=model_server_workers, **params)
        self._link_model(model)
        return model
