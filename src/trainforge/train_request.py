"""The CreateTrainingJob request an estimator sends (reference §3.1, §3.2, §5.1)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainforge.errors import ValidationError
from trainforge.inputs import TrainingInput
from trainforge.job import MODEL_CONTENT_TYPE, FitInputs, format_inputs_to_input_config, prepare_channel

if TYPE_CHECKING:
    from trainforge.estimator import EstimatorBase

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


def build_train_request(
    est: EstimatorBase, inputs: FitInputs, experiment_config: Mapping[str, Any] | None, *, role_arn: str
) -> dict[str, Any]:
    """The CreateTrainingJob request of an estimator whose job is prepared (``_prepare_for_training`` ran).

    Fields follow reference §3.1/§3.2: the ones SageMaker always sends, and each optional field only when
    its estimator parameter is set. ``ProfilerConfig`` is ``{"DisableProfiler": true}`` unless profiling
    was asked for.

    Raises:
        ValidationError: The job is not prepared, an input is not a URI/TrainingInput, or an extra
            channel (``model``, ``code``) collides with an input channel.
    """
    if not est._current_job_name or est.output_path is None:
        raise ValidationError("job_name: the job is not prepared; call fit()", field="job_name")
    input_config = format_inputs_to_input_config(inputs)
    model_channel = prepare_channel(
        input_config, est.model_uri, est.model_channel_name, content_type=MODEL_CONTENT_TYPE, input_mode="File"
    )
    if model_channel:
        input_config = [*(input_config or []), model_channel]
    if est.enable_network_isolation() and est.uploaded_code:
        code_channel = prepare_channel(input_config, est.uploaded_code.s3_prefix, CODE_CHANNEL_NAME)
        if code_channel:
            input_config = [*(input_config or []), code_channel]
    input_mode = est.input_mode
    if isinstance(inputs, TrainingInput) and "InputMode" in inputs.config:
        input_mode = inputs.config["InputMode"]

    request: dict[str, Any] = {
        "AlgorithmSpecification": _algorithm_specification(est, input_mode),
        "OutputDataConfig": _output_config(est),
        "TrainingJobName": est._current_job_name,
        "StoppingCondition": _stopping_condition(est),
        "ResourceConfig": _resource_config(est),
        "RoleArn": role_arn,
    }
    if input_config:
        request["InputDataConfig"] = input_config
    hyperparameters = est.hyperparameters()
    if hyperparameters:
        request["HyperParameters"] = str_encode_hyperparameters(hyperparameters)
    _add_optional_fields(est, request, experiment_config)
    return request


def _algorithm_specification(est: EstimatorBase, input_mode: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"TrainingInputMode": input_mode, "TrainingImage": est.training_image_uri()}
    if est.metric_definitions:
        spec["MetricDefinitions"] = [dict(m) for m in est.metric_definitions]
    if est.enable_sagemaker_metrics is not None:
        spec["EnableSageMakerMetricsTimeSeries"] = est.enable_sagemaker_metrics
    if est.container_entry_point:
        spec["ContainerEntrypoint"] = list(est.container_entry_point)
    if est.container_arguments:
        spec["ContainerArguments"] = list(est.container_arguments)
    if est.training_repository_access_mode:
        image_config: dict[str, Any] = {"TrainingRepositoryAccessMode": est.training_repository_access_mode}
        if est.training_repository_credentials_provider_arn:
            image_config["TrainingRepositoryAuthConfig"] = {
                "TrainingRepositoryCredentialsProviderArn": est.training_repository_credentials_provider_arn
            }
        spec["TrainingImageConfig"] = image_config
    return spec


def _output_config(est: EstimatorBase) -> dict[str, Any]:
    config: dict[str, Any] = {"S3OutputPath": est.output_path}
    if est.output_kms_key:
        config["KmsKeyId"] = est.output_kms_key
    if est.disable_output_compression:
        config["CompressionType"] = "NONE"
    return config


def _stopping_condition(est: EstimatorBase) -> dict[str, Any]:
    condition: dict[str, Any] = {"MaxRuntimeInSeconds": est.max_run}
    if est.max_wait:
        condition["MaxWaitTimeInSeconds"] = est.max_wait
    return condition


def _resource_config(est: EstimatorBase) -> dict[str, Any]:
    config: dict[str, Any] = {"VolumeSizeInGB": est.volume_size}
    if est.instance_groups:
        config["InstanceGroups"] = [as_request(g) for g in est.instance_groups]
    else:
        config["InstanceCount"] = est.instance_count
        config["InstanceType"] = est.instance_type
    if est.keep_alive_period_in_seconds is not None:
        config["KeepAlivePeriodInSeconds"] = est.keep_alive_period_in_seconds
    if est.volume_kms_key:
        config["VolumeKmsKeyId"] = est.volume_kms_key
    if est.training_plan:
        config["TrainingPlanArn"] = est.training_plan
    if est.instance_placement_config is not None:
        config["InstancePlacementConfig"] = as_request(est.instance_placement_config)
    return config


def _profiler_config(est: EstimatorBase) -> dict[str, Any]:
    if est.profiler_config is not None:
        return {"DisableProfiler": False, **as_request(est.profiler_config)}
    if est.disable_profiler is False:
        return {"S3OutputPath": est.output_path, "DisableProfiler": False}
    return {"DisableProfiler": True}


def _add_optional_fields(
    est: EstimatorBase, request: dict[str, Any], experiment_config: Mapping[str, Any] | None
) -> None:
    if est.subnets and est.security_group_ids:
        request["VpcConfig"] = {"Subnets": list(est.subnets), "SecurityGroupIds": list(est.security_group_ids)}
    if est.tags:
        request["Tags"] = est.tags
    if est.use_spot_instances:
        request["EnableManagedSpotTraining"] = True
    if est.enable_network_isolation():
        request["EnableNetworkIsolation"] = True
    if est.encrypt_inter_container_traffic:
        request["EnableInterContainerTrafficEncryption"] = True
    if est.checkpoint_s3_uri:
        checkpoint = {"S3Uri": est.checkpoint_s3_uri}
        if est.checkpoint_local_path:
            checkpoint["LocalPath"] = est.checkpoint_local_path
        request["CheckpointConfig"] = checkpoint
    if est.environment:
        request["Environment"] = dict(est.environment)
    if est.max_retry_attempts is not None:
        request["RetryStrategy"] = {"MaximumRetryAttempts": est.max_retry_attempts}
    if est.debugger_hook_config is True:
        request["DebugHookConfig"] = {"S3OutputPath": est.output_path, "CollectionConfigurations": []}
    elif est.debugger_hook_config:
        request["DebugHookConfig"] = as_request(est.debugger_hook_config)
    if est.rules:
        request["DebugRuleConfigurations"] = [as_request(rule) for rule in est.rules]
    if est.tensorboard_output_config is not None:
        request["TensorBoardOutputConfig"] = as_request(est.tensorboard_output_config)
    request["ProfilerConfig"] = _profiler_config(est)
    if experiment_config:
        request["ExperimentConfig"] = dict(experiment_config)
    if est.enable_remote_debug is not None:
        request["RemoteDebugConfig"] = {"EnableRemoteDebug": est.enable_remote_debug}
    if est.enable_infra_check is not None:
        request["InfraCheckConfig"] = {"EnableInfraCheck": est.enable_infra_check}
    if est.enable_session_tag_chaining is not None:
        request["SessionChainingConfig"] = {"EnableSessionTagChaining": est.enable_session_tag_chaining}
