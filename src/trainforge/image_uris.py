"""``trainforge.image_uris.retrieve``: SageMaker's framework names and versions -> trainforge catalogue images.

Mirrors ``sagemaker.image_uris.retrieve`` (reference §5.5): where SageMaker returns an ECR URI such as
``683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.2-1``, this returns the catalogue image
that plays its part here, e.g. ``trainforge/xgboost:1.7-1``. The mapping is the one table in
:mod:`trainforge.spec.images` (see ``docs/images.md``); versions SageMaker knows but that cannot be built for
Python 3.11 map onto the nearest buildable image.
"""

from __future__ import annotations

from typing import Any

from trainforge.errors import ValidationError
from trainforge.spec.images import accelerator_for, image_for

_SCOPES = ("training", "inference")


def retrieve(
    framework: str,
    region: str | None = None,
    version: str | None = None,
    py_version: str | None = None,
    instance_type: str | None = None,
    image_scope: str | None = "training",
    accelerator_type: str | None = None,
    container_version: str | None = None,
    distribution: dict[str, Any] | None = None,
    **kwargs: Any,
) -> str:
    """The catalogue image for a SageMaker framework name and version string.

    Args:
        framework: SageMaker's name (``"xgboost"``, ``"sklearn"``, ``"pytorch"``, ``"linear-learner"``,
            ``"kmeans"``) or an alias such as ``"scikit-learn"``.
        region: Accepted for compatibility; images do not depend on a region here.
        version: SageMaker's version string (``"1.2-1"``, ``"1.7-1"``, ``"2.1"``); ``None`` picks the
            framework's latest image.
        py_version: ``"py3"``/``"py310"``/... accepted; every image runs Python 3.11.
        instance_type: Selects the GPU flavour for GPU instance types (``ml.g4dn``, ``ml.g5``, ``ml.p3``, ...;
            only PyTorch has one).
        image_scope: ``"training"`` or ``"inference"`` (the same image; there is no separate serving image).
        accelerator_type: An Elastic Inference accelerator also selects the GPU flavour.
        container_version, distribution, **kwargs: Accepted for compatibility; unused.

    Returns:
        An image name such as ``"trainforge/xgboost:1.7-1"``, usable as ``Estimator(image_uri=...)``.

    Raises:
        ValidationError: Unknown framework or version (listing the known ones), a Python 2 ``py_version`` or an
            unknown ``image_scope``.
    """
    if image_scope is not None and image_scope not in _SCOPES:
        raise ValidationError(
            f"image_scope: {image_scope!r} is not available; use one of {', '.join(_SCOPES)}", field="image_scope"
        )
    if py_version is not None and not py_version.startswith("py3"):
        raise ValidationError(
            f"py_version: {py_version!r} is not available; images run Python 3.11 (use 'py3')", field="py_version"
        )
    accelerator = "gpu" if accelerator_type else accelerator_for(instance_type)
    image = image_for(framework, version, accelerator=accelerator)
    return image.name


__all__ = ["retrieve"]
