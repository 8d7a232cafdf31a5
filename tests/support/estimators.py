"""The estimator most end-to-end tests need: a script run in the server's interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trainforge
from trainforge.estimator import Estimator


def script_estimator(
    session: trainforge.Session,
    source_dir: Path,
    *,
    entry_point: str = "train.py",
    instance_type: str = "ml.m5.large",
    **kwargs: Any,
) -> Estimator:
    """An ``Estimator`` on ``trainforge/python:current`` running ``entry_point`` from ``source_dir``."""
    return Estimator(
        image_uri="trainforge/python:current",
        entry_point=entry_point,
        source_dir=str(source_dir),
        role=trainforge.get_execution_role(),
        instance_type=instance_type,
        instance_count=1,
        sagemaker_session=session,
        **kwargs,
    )
