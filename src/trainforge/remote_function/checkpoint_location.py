"""``CheckpointLocation``: an argument that maps a remote function's job to a checkpoint config."""

from __future__ import annotations

import os
from pathlib import Path

CONTAINER_PATH = "/opt/ml/checkpoints/"


class CheckpointLocation(os.PathLike[str]):
    """Pass one as an argument of a remote function: the job gets ``CheckpointConfig(S3Uri=s3_uri)``, and inside
    the job the argument is the job's local checkpoint directory (``os.fspath(arg)``), which starts with the
    objects already under ``s3_uri`` and whose files are uploaded there when the job ends."""

    def __init__(self, s3_uri: str) -> None:
        # Validated when the job is built; this class is pickled by value into jobs that lack trainforge.
        self._s3_uri = s3_uri

    @property
    def s3_uri(self) -> str:
        """Where checkpoints are kept."""
        return self._s3_uri

    def __fspath__(self) -> str:
        model_dir = os.environ.get("SM_MODEL_DIR")
        if model_dir:  # inside a job: <job root>/opt/ml/checkpoints
            return str(Path(model_dir).parent / "checkpoints") + "/"
        return CONTAINER_PATH

    def __repr__(self) -> str:
        return f"CheckpointLocation({self._s3_uri!r})"
