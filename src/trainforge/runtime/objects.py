"""The object store as one job's supervisor and user code may use it.

:func:`job_object_store` is the store every read and write the supervisor does for a job goes through;
:func:`code_storage_environment` is what the job's own code is given to reach the store itself.
"""

from __future__ import annotations

from trainforge.runtime.launch import SupervisorConfig
from trainforge.storage import ObjectStore, aws_environment, open_store


def job_object_store(cfg: SupervisorConfig) -> ObjectStore:
    """The object store for the job ``cfg`` describes (raises ``TrainforgeError`` if it cannot be opened)."""
    return open_store(cfg.storage)


def code_storage_environment(cfg: SupervisorConfig) -> dict[str, str]:
    """Environment variables through which the job's code reaches the object store (AWS tools on S3)."""
    return aws_environment(cfg.storage)
