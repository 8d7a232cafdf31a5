"""A submitted training job as an estimator sees it, and the shaping of ``fit()`` inputs into channels.

Mirrors ``sagemaker.job._Job`` (input formatting) and ``sagemaker.estimator._TrainingJob``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainforge.errors import ValidationError
from trainforge.inputs import TrainingInput

if TYPE_CHECKING:
    from trainforge.estimator import EstimatorBase
    from trainforge.session import Session

FitInputs = str | TrainingInput | Mapping[str, "str | TrainingInput"] | None
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"


def _format_string_uri_input(uri: str, field: str) -> TrainingInput:
    if uri.startswith(("s3://", "file://")):
        return TrainingInput(uri)
    raise ValidationError(
        f"{field}: training input {uri!r} must be an s3:// or file:// URI "
        "(upload local data first with Session.upload_data)",
        field=field,
    )


def format_inputs_to_input_config(inputs: FitInputs) -> list[dict[str, Any]] | None:
    """``fit()`` inputs as ``InputDataConfig`` channels, in the order given.

    A string or a single :class:`TrainingInput` becomes channel ``training``; a dict maps channel names
    to URIs or :class:`TrainingInput` objects.

    Raises:
        ValidationError: An input is not an ``s3://``/``file://`` URI or a TrainingInput (field ``inputs``).
    """
    if inputs is None:
        return None
    channels: dict[str, TrainingInput]
    if isinstance(inputs, str):
        channels = {"training": _format_string_uri_input(inputs, "inputs")}
    elif isinstance(inputs, TrainingInput):
        channels = {"training": inputs}
    elif isinstance(inputs, Mapping):
        channels = {}
        for name, value in inputs.items():
            if isinstance(value, TrainingInput):
                channels[str(name)] = value
            elif isinstance(value, str):
                channels[str(name)] = _format_string_uri_input(value, f"inputs[{name!r}]")
            else:
                raise ValidationError(
                    f"inputs[{name!r}]: expected an s3:// URI or a TrainingInput, got {type(value).__name__}",
                    field="inputs",
                )
    else:
        raise ValidationError(
            "inputs: expected an s3:// URI, a TrainingInput, or a dict of channel name to either; "
            f"got {type(inputs).__name__}",
            field="inputs",
        )
    return [{**copy.deepcopy(value.config), "ChannelName": name} for name, value in channels.items()]


def prepare_channel(
    input_config: list[dict[str, Any]] | None,
    uri: str | None,
    channel_name: str,
    *,
    content_type: str | None = None,
    input_mode: str | None = None,
) -> dict[str, Any] | None:
    """An extra channel (``model_uri``'s ``model``, network isolation's ``code``), or ``None`` without URI.

    Raises:
        ValidationError: A channel of that name is already among the inputs (field ``inputs``).
    """
    if not uri:
        return None
    if any(channel.get("ChannelName") == channel_name for channel in input_config or []):
        raise ValidationError(f"inputs: Duplicate channel {channel_name} not allowed.", field="inputs")
    config = TrainingInput(uri, content_type=content_type, input_mode=input_mode).config
    return {**config, "ChannelName": channel_name}


class TrainingJob:
    """A training job started by (or attached to) an estimator: ``estimator.latest_training_job``.

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

    @classmethod
    def start_new(
        cls, estimator: EstimatorBase, inputs: FitInputs, experiment_config: Mapping[str, Any] | None = None
    ) -> TrainingJob:
        """Submit the estimator's prepared job (``_prepare_for_training`` must have run) and return it.

        Raises:
            ValidationError: The server rejected the request (the error names the field).
            ConflictError: The job name is taken.
        """
        request = estimator._get_train_request(inputs, experiment_config)
        estimator.sagemaker_session.create_training_job(request)
        return cls(estimator.sagemaker_session, request["TrainingJobName"])

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob of this job (timestamps as datetimes)."""
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

    def stop(self) -> None:
        """Ask the job to stop (``Stopping`` then ``Stopped``)."""
        self.sagemaker_session.stop_training_job(self.job_name)

    def __repr__(self) -> str:
        return f"TrainingJob({self.job_name!r})"


def normalize_logs(logs: str | bool | None) -> str:
    """``fit(logs=...)``: ``True`` means ``"All"``, ``False``/``None`` mean ``"None"``; strings pass through."""
    if logs is True:
        return "All"
    if logs is False or logs is None:
        return "None"
    return str(logs)
