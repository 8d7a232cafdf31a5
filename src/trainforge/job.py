"""The handle of a submitted training job: ``estimator.latest_training_job`` (``sagemaker.estimator._TrainingJob``).

A :class:`TrainingJob` only names a job that exists on the server and asks about it (describe, wait, stop,
logs). Building the request it was created from is :mod:`trainforge.train_request`'s one pure step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# Kept importable from here for code written against earlier trainforge versions.
from trainforge.train_request import (
    MODEL_CONTENT_TYPE,
    FitInputs,
    format_inputs_to_input_config,
    prepare_channel,
)

if TYPE_CHECKING:
    from trainforge.session import Session


class JobHandle:
    """The handle of a job on the server (``sagemaker.job._Job``): the session it lives in and its name.

    Args:
        sagemaker_session: The session the job lives in.
        job_name: The job's name.
    """

    def __init__(self, sagemaker_session: Session, job_name: str) -> None:
        self.sagemaker_session = sagemaker_session
        self.job_name = job_name

    @property
    def name(self) -> str:
        """The job's name."""
        return self.job_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.job_name!r})"


class TrainingJob(JobHandle):
    """A training job started by (or attached to) an estimator.

    Args:
        sagemaker_session: The session the job lives in.
        job_name: The job's name.
    """

    @classmethod
    def start_new(cls, sagemaker_session: Session, request: Mapping[str, Any]) -> TrainingJob:
        """Submit an already built CreateTrainingJob ``request`` and return the handle of the new job.

        Raises:
            ValidationError: The server rejected the request (the error names the field).
            ConflictError: The job name is taken.
        """
        sagemaker_session.create_training_job(request)
        return cls(sagemaker_session, str(request["TrainingJobName"]))

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob of this job (timestamps as datetimes).

        Raises:
            NotFoundError: The job no longer exists.
        """
        return self.sagemaker_session.describe_training_job(self.job_name)

    def wait(self, logs: str | bool = "All") -> None:
        """Block until the job ends: follow its logs (``logs="All"``) or poll quietly (``"None"``).

        Raises:
            UnexpectedStatusError: The job ended Failed.
        """
        mode = normalize_logs(logs)
        if mode == "None":
            self.sagemaker_session.wait_for_job(self.job_name)
        else:
            self.sagemaker_session.logs_for_job(self.job_name, wait=True, log_type=mode)

    def logs(self, wait: bool = True) -> None:
        """Print the job's status transitions and log lines; with ``wait`` follow them to the job's end."""
        self.sagemaker_session.logs_for_job(self.job_name, wait=wait)

    def stop(self) -> None:
        """Ask the job to stop (``Stopping`` then ``Stopped``)."""
        self.sagemaker_session.stop_training_job(self.job_name)


def normalize_logs(logs: str | bool | None) -> str:
    """``fit(logs=...)``: ``True`` means ``"All"``, ``False``/``None`` mean ``"None"``; strings pass through."""
    if logs is True:
        return "All"
    if logs is False or logs is None:
        return "None"
    return str(logs)


__all__ = [
    "MODEL_CONTENT_TYPE",
    "FitInputs",
    "JobHandle",
    "TrainingJob",
    "format_inputs_to_input_config",
    "normalize_logs",
    "prepare_channel",
]
