"""The CreateTrainingJob request, built in one pure step (reference §3.1, §3.2, §5.1).

``fit()`` formats its inputs once (:func:`training_channels`), prepares the job (name, output path, code upload),
gathers the estimator's settings into a :class:`TrainingJobSettings` and calls :func:`build_train_request` once.
This module does no I/O and imports nothing of the estimator, the job handle or the session.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import ValidationError
from trainforge.inputs import TrainingInput

FitInputs = str | TrainingInput | Mapping[str, "str | TrainingInput"] | None
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"
CODE_CHANNEL_NAME = "code"


def json_encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """Framework encoding: every value ``json.dumps``-ed (``"abc"`` -> ``'"abc"'``, ``True`` -> ``"true"``)."""
    return {str(k): json.dumps(v) for k, v in hyperparameters.items()}


def str_encode_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """Generic Estimator encoding: every value ``str()``-ed (``True`` -> ``"True"``)."""
    return {str(k): str(v) for k, v in hyperparameters.items()}


def as_request(value: Any) -> Any:
    """A config object (with SageMaker's ``_to_request_dict``) or a plain dict, as request data."""
    to_dict = getattr(value, "_to_request_dict", None)
    return to_dict() if callable(to_dict) else value


# -- inputs -> channels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channels:
    """``fit()`` inputs formatted once.

    Attributes:
        config: The ``InputDataConfig`` channels in the order given, or ``None`` without inputs.
        input_mode: The ``InputMode`` of a single :class:`TrainingInput` given as the whole input (it becomes
            the job's ``TrainingInputMode``), else ``None``.
    """

    config: list[dict[str, Any]] | None
    input_mode: str | None = None


def _format_string_uri_input(uri: str, field_name: str) -> TrainingInput:
    if uri.startswith(("s3://", "file://")):
        return TrainingInput(uri)
    raise ValidationError(
        f"{field_name}: training input {uri!r} must be an s3:// or file:// URI "
        "(upload local data first with Session.upload_data)",
        field=field_name,
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


def training_channels(inputs: FitInputs) -> Channels:
    """``fit()`` inputs as :class:`Channels` (see :func:`format_inputs_to_input_config`).

    Raises:
        ValidationError: An input is not an ``s3://``/``file://`` URI or a TrainingInput (field ``inputs``).
    """
    mode = inputs.config.get("InputMode") if isinstance(inputs, TrainingInput) else None
    return Channels(format_inputs_to_input_config(inputs), mode)


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


# -- settings -> request ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingJobSettings:
    """Everything a CreateTrainingJob request is built from, as plain values (no I/O left to do).

    ``None`` (or an empty collection) leaves the matching optional field out of the request. ``hyperparameters``
    are the values as the estimator encodes them before ``str()`` (framework estimators JSON-encode them and add
    the reserved ``sagemaker_*`` keys); ``code_channel_uri`` is the code archive sent as channel ``code`` under
    network isolation.
    """

    job_name: str
    role_arn: str
    image_uri: str
    output_path: str
    input_mode: str = "File"
    instance_count: int | None = None
    instance_type: str | None = None
    instance_groups: Sequence[Any] | None = None
    volume_size: int = 30
    volume_kms_key: str | None = None
    keep_alive_period_in_seconds: int | None = None
    training_plan: str | None = None
    instance_placement_config: Any = None
    max_run: int = 24 * 60 * 60
    max_wait: int | None = None
    output_kms_key: str | None = None
    disable_output_compression: bool = False
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    metric_definitions: Sequence[Mapping[str, str]] | None = None
    enable_sagemaker_metrics: bool | None = None
    container_entry_point: Sequence[str] | None = None
    container_arguments: Sequence[str] | None = None
    training_repository_access_mode: str | None = None
    training_repository_credentials_provider_arn: str | None = None
    model_uri: str | None = None
    model_channel_name: str = "model"
    code_channel_uri: str | None = None
    subnets: Sequence[str] | None = None
    security_group_ids: Sequence[str] | None = None
    tags: Sequence[Mapping[str, str]] | None = None
    use_spot_instances: bool = False
    enable_network_isolation: bool = False
    encrypt_inter_container_traffic: bool | None = None
    checkpoint_s3_uri: str | None = None
    checkpoint_local_path: str | None = None
    environment: Mapping[str, str] | None = None
    max_retry_attempts: int | None = None
    debugger_hook_config: Any = None
    rules: Sequence[Any] | None = None
    tensorboard_output_config: Any = None
    profiler_config: Any = None
    disable_profiler: bool | None = None
    enable_remote_debug: bool | None = None
    enable_infra_check: bool | None = None
    enable_session_tag_chaining: bool | None = None


def build_train_request(
    settings: TrainingJobSettings, channels: Channels, experiment_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The CreateTrainingJob request for ``settings`` and the formatted inputs.

    Fields follow reference §3.1/§3.2: the ones SageMaker always sends, and each optional field only when its
    setting is set. ``ProfilerConfig`` is ``{"DisableProfiler": true}`` unless profiling was asked for. The
    result is a new dict sharing nothing mutable with ``settings``.

    Raises:
        ValidationError: An extra channel (``model``, ``code``) collides with an input channel (field ``inputs``).
    """
    input_config = copy.deepcopy(channels.config)
    model_channel = prepare_channel(
        input_config,
        settings.model_uri,
        settings.model_channel_name,
        content_type=MODEL_CONTENT_TYPE,
        input_mode="File",
    )
    if model_channel:
        input_config = [*(input_config or []), model_channel]
    if settings.enable_network_isolation:
        code_channel = prepare_channel(input_config, settings.code_channel_uri, CODE_CHANNEL_NAME)
        if code_channel:
            input_config = [*(input_config or []), code_channel]

    request: dict[str, Any] = {
        "AlgorithmSpecification": _algorithm_specification(settings, channels.input_mode or settings.input_mode),
        "OutputDataConfig": _output_config(settings),
        "TrainingJobName": settings.job_name,
        "StoppingCondition": _stopping_condition(settings),
        "ResourceConfig": _resource_config(settings),
        "RoleArn": settings.role_arn,
    }
    if input_config:
        request["InputDataConfig"] = input_config
    if settings.hyperparameters:
        request["HyperParameters"] = str_encode_hyperparameters(settings.hyperparameters)
    _add_optional_fields(settings, request, experiment_config)
    return request


def _algorithm_specification(s: TrainingJobSettings, input_mode: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"TrainingInputMode": input_mode, "TrainingImage": s.image_uri}
    if s.metric_definitions:
        spec["MetricDefinitions"] = [dict(m) for m in s.metric_definitions]
    if s.enable_sagemaker_metrics is not None:
        spec["EnableSageMakerMetricsTimeSeries"] = s.enable_sagemaker_metrics
    if s.container_entry_point:
        spec["ContainerEntrypoint"] = list(s.container_entry_point)
    if s.container_arguments:
        spec["ContainerArguments"] = list(s.container_arguments)
    if s.training_repository_access_mode:
        image_config: dict[str, Any] = {"TrainingRepositoryAccessMode": s.training_repository_access_mode}
        if s.training_repository_credentials_provider_arn:
            image_config["TrainingRepositoryAuthConfig"] = {
                "TrainingRepositoryCredentialsProviderArn": s.training_repository_credentials_provider_arn
            }
        spec["TrainingImageConfig"] = image_config
    return spec


def _output_config(s: TrainingJobSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"S3OutputPath": s.output_path}
    if s.output_kms_key:
        config["KmsKeyId"] = s.output_kms_key
    if s.disable_output_compression:
        config["CompressionType"] = "NONE"
    return config


def _stopping_condition(s: TrainingJobSettings) -> dict[str, Any]:
    condition: dict[str, Any] = {"MaxRuntimeInSeconds": s.max_run}
    if s.max_wait:
        condition["MaxWaitTimeInSeconds"] = s.max_wait
    return condition


def _resource_config(s: TrainingJobSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"VolumeSizeInGB": s.volume_size}
    if s.instance_groups:
        config["InstanceGroups"] = [as_request(g) for g in s.instance_groups]
    else:
        config["InstanceCount"] = s.instance_count
        config["InstanceType"] = s.instance_type
    if s.keep_alive_period_in_seconds is not None:
        config["KeepAlivePeriodInSeconds"] = s.keep_alive_period_in_seconds
    if s.volume_kms_key:
        config["VolumeKmsKeyId"] = s.volume_kms_key
    if s.training_plan:
        config["TrainingPlanArn"] = s.training_plan
    if s.instance_placement_config is not None:
        config["InstancePlacementConfig"] = as_request(s.instance_placement_config)
    return config


def _profiler_config(s: TrainingJobSettings) -> dict[str, Any]:
    if s.profiler_config is not None:
        return {"DisableProfiler": False, **as_request(s.profiler_config)}
    if s.disable_profiler is False:
        return {"S3OutputPath": s.output_path, "DisableProfiler": False}
    return {"DisableProfiler": True}


def _add_optional_fields(
    s: TrainingJobSettings, request: dict[str, Any], experiment_config: Mapping[str, Any] | None
) -> None:
    if s.subnets and s.security_group_ids:
        request["VpcConfig"] = {"Subnets": list(s.subnets), "SecurityGroupIds": list(s.security_group_ids)}
    if s.tags:
        request["Tags"] = [dict(tag) for tag in s.tags]
    if s.use_spot_instances:
        request["EnableManagedSpotTraining"] = True
    if s.enable_network_isolation:
        request["EnableNetworkIsolation"] = True
    if s.encrypt_inter_container_traffic:
        request["EnableInterContainerTrafficEncryption"] = True
    if s.checkpoint_s3_uri:
        checkpoint = {"S3Uri": s.checkpoint_s3_uri}
        if s.checkpoint_local_path:
            checkpoint["LocalPath"] = s.checkpoint_local_path
        request["CheckpointConfig"] = checkpoint
    if s.environment:
        request["Environment"] = dict(s.environment)
    if s.max_retry_attempts is not None:
        request["RetryStrategy"] = {"MaximumRetryAttempts": s.max_retry_attempts}
    if s.debugger_hook_config is True:
        request["DebugHookConfig"] = {"S3OutputPath": s.output_path, "CollectionConfigurations": []}
    elif s.debugger_hook_config:
        request["DebugHookConfig"] = as_request(s.debugger_hook_config)
    if s.rules:
        request["DebugRuleConfigurations"] = [as_request(rule) for rule in s.rules]
    if s.tensorboard_output_config is not None:
        request["TensorBoardOutputConfig"] = as_request(s.tensorboard_output_config)
    request["ProfilerConfig"] = _profiler_config(s)
    if experiment_config:
        request["ExperimentConfig"] = dict(experiment_config)
    if s.enable_remote_debug is not None:
        request["RemoteDebugConfig"] = {"EnableRemoteDebug": s.enable_remote_debug}
    if s.enable_infra_check is not None:
        request["InfraCheckConfig"] = {"EnableInfraCheck": s.enable_infra_check}
    if s.enable_session_tag_chaining is not None:
        request["SessionChainingConfig"] = {"EnableSessionTagChaining": s.enable_session_tag_chaining}


__all__ = [
    "CODE_CHANNEL_NAME",
    "MODEL_CONTENT_TYPE",
    "Channels",
    "FitInputs",
    "TrainingJobSettings",
    "as_request",
    "build_train_request",
    "format_inputs_to_input_config",
    "json_encode_hyperparameters",
    "prepare_channel",
    "str_encode_hyperparameters",
    "training_channels",
]
