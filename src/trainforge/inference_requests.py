"""CreateModel, CreateEndpointConfig, CreateEndpoint and CreateTransformJob requests, each built in one pure step.

The shapes are the ones SageMaker's SDK sends (``container_def``, ``production_variant``,
``Session._get_transform_request``): required fields always, each optional field only when it is set. Like
:mod:`trainforge.train_request`, this module does no I/O and imports nothing of the model, predictor,
transformer or session: they gather plain values and call one builder once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TRAINING_JOB_TAG = "trainforge:training-job-name"  # the server links a model to the job its model data came from
MODEL_CODE_DIR = "/opt/ml/model/code"  # SAGEMAKER_SUBMIT_DIRECTORY of a repacked model

Tags = Sequence[Mapping[str, str]]


def script_mode_environment(
    entry_point: str, *, submit_directory: str = MODEL_CODE_DIR, container_log_level: int = logging.INFO, region: str
) -> dict[str, str]:
    """The variables a framework model's container reads to find its inference script (reference §7.3).

    Returns ``SAGEMAKER_PROGRAM``, ``SAGEMAKER_SUBMIT_DIRECTORY``, ``SAGEMAKER_CONTAINER_LOG_LEVEL`` and
    ``SAGEMAKER_REGION``, in that order, as strings.
    """
    return {
        "SAGEMAKER_PROGRAM": entry_point,
        "SAGEMAKER_SUBMIT_DIRECTORY": submit_directory,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": str(container_log_level),
        "SAGEMAKER_REGION": region,
    }


def with_training_job_tag(tags: Tags | None, training_job_name: str | None) -> list[dict[str, str]] | None:
    """``tags`` plus the ``trainforge:training-job-name`` tag when the model comes from a training job.

    A tag of that key already in ``tags`` is kept as given. ``None`` when there are no tags at all.
    """
    merged = [dict(tag) for tag in tags or []]
    if training_job_name and not any(tag.get("Key") == TRAINING_JOB_TAG for tag in merged):
        merged.append({"Key": TRAINING_JOB_TAG, "Value": training_job_name})
    return merged or None


def container_definition(
    image_uri: str, model_data_url: str | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A ``ContainerDefinition`` as ``sagemaker.container_def`` builds it: ``Image``, ``Environment`` (always, maybe
    empty) and ``ModelDataUrl`` when there is model data."""
    container: dict[str, Any] = {"Image": image_uri, "Environment": dict(env or {})}
    if model_data_url is not None:
        container["ModelDataUrl"] = model_data_url
    return container


def model_request(
    name: str,
    role_arn: str,
    container: Mapping[str, Any],
    *,
    enable_network_isolation: bool = False,
    vpc_config: Mapping[str, Any] | None = None,
    tags: Tags | None = None,
) -> dict[str, Any]:
    """The CreateModel request: one ``PrimaryContainer``; ``Tags``, ``VpcConfig`` and ``EnableNetworkIsolation``
    only when set."""
    request: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": role_arn, "PrimaryContainer": dict(container)}
    if tags:
        request["Tags"] = [dict(tag) for tag in tags]
    if vpc_config:
        request["VpcConfig"] = dict(vpc_config)
    if enable_network_isolation:
        request["EnableNetworkIsolation"] = True
    return request


def production_variant(
    model_name: str,
    instance_type: str,
    initial_instance_count: int = 1,
    *,
    variant_name: str = "AllTraffic",
    initial_weight: float = 1,
    accelerator_type: str | None = None,
    volume_size: int | None = None,
    model_data_download_timeout: int | None = None,
    container_startup_health_check_timeout: int | None = None,
) -> dict[str, Any]:
    """A ``ProductionVariant`` as ``sagemaker.production_variant`` builds it."""
    variant: dict[str, Any] = {
        "ModelName": model_name,
        "VariantName": variant_name,
        "InitialVariantWeight": initial_weight,
        "InstanceType": instance_type,
        "InitialInstanceCount": initial_instance_count,
    }
    if accelerator_type:
        variant["AcceleratorType"] = accelerator_type
    if volume_size is not None:
        variant["VolumeSizeInGB"] = volume_size
    if model_data_download_timeout is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = model_data_download_timeout
    if container_startup_health_check_timeout is not None:
        variant["ContainerStartupHealthCheckTimeoutInSeconds"] = container_startup_health_check_timeout
    return variant


def endpoint_config_request(
    name: str,
    variants: Sequence[Mapping[str, Any]],
    *,
    tags: Tags | None = None,
    kms_key: str | None = None,
    data_capture_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CreateEndpointConfig request (SageMaker names a deployed endpoint's config after the endpoint)."""
    request: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [dict(v) for v in variants]}
    if tags:
        request["Tags"] = [dict(tag) for tag in tags]
    if kms_key:
        request["KmsKeyId"] = kms_key
    if data_capture_config:
        request["DataCaptureConfig"] = dict(data_capture_config)
    return request


def endpoint_request(name: str, config_name: str, *, tags: Tags | None = None) -> dict[str, Any]:
    """The CreateEndpoint request."""
    request: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
    if tags:
        request["Tags"] = [dict(tag) for tag in tags]
    return request


@dataclass(frozen=True)
class TransformSettings:
    """What a :class:`~trainforge.transformer.Transformer` holds, as plain values (``output_path`` resolved)."""

    model_name: str
    instance_count: int
    instance_type: str
    output_path: str
    strategy: str | None = None
    assemble_with: str | None = None
    output_kms_key: str | None = None
    accept: str | None = None
    max_concurrent_transforms: int | None = None
    max_payload: int | None = None
    env: Mapping[str, str] | None = None
    tags: Tags | None = None
    volume_kms_key: str | None = None


def transform_job_request(
    settings: TransformSettings,
    job_name: str,
    data: str,
    *,
    data_type: str = "S3Prefix",
    content_type: str | None = None,
    compression_type: str | None = None,
    split_type: str | None = None,
    input_filter: str | None = None,
    output_filter: str | None = None,
    join_source: str | None = None,
    model_client_config: Mapping[str, Any] | None = None,
    experiment_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CreateTransformJob request for one ``transform(data, ...)`` call, as ``Session._get_transform_request``.

    ``TransformInput`` carries ``DataSource.S3DataSource`` (``S3DataType``, ``S3Uri``) and ``ContentType``,
    ``CompressionType``, ``SplitType`` when set; ``TransformOutput`` ``S3OutputPath`` and ``KmsKeyId``,
    ``Accept``, ``AssembleWith`` when set; ``TransformResources`` ``InstanceCount``, ``InstanceType`` and
    ``VolumeKmsKeyId`` when set.
    """
    transform_input: dict[str, Any] = {"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": data}}}
    for key, value in (("ContentType", content_type), ("CompressionType", compression_type), ("SplitType", split_type)):
        if value is not None:
            transform_input[key] = value
    output: dict[str, Any] = {"S3OutputPath": settings.output_path}
    for key, value in (
        ("KmsKeyId", settings.output_kms_key),
        ("Accept", settings.accept),
        ("AssembleWith", settings.assemble_with),
    ):
        if value is not None:
            output[key] = value
    resources: dict[str, Any] = {"InstanceCount": settings.instance_count, "InstanceType": settings.instance_type}
    if settings.volume_kms_key is not None:
        resources["VolumeKmsKeyId"] = settings.volume_kms_key
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": settings.model_name,
        "TransformInput": transform_input,
        "TransformOutput": output,
        "TransformResources": resources,
    }
    if settings.strategy is not None:
        request["BatchStrategy"] = settings.strategy
    if settings.max_concurrent_transforms is not None:
        request["MaxConcurrentTransforms"] = settings.max_concurrent_transforms
    if settings.max_payload is not None:
        request["MaxPayloadInMB"] = settings.max_payload
    if settings.env:
        request["Environment"] = dict(settings.env)
    if settings.tags:
        request["Tags"] = [dict(tag) for tag in settings.tags]
    processing = {
        key: value
        for key, value in (("InputFilter", input_filter), ("OutputFilter", output_filter), ("JoinSource", join_source))
        if value is not None
    }
    if processing:
        request["DataProcessing"] = processing
    if model_client_config:
        request["ModelClientConfig"] = dict(model_client_config)
    if experiment_config:
        request["ExperimentConfig"] = dict(experiment_config)
    return request


# SageMaker's top-level names (``sagemaker.container_def``).
container_def = container_definition

__all__ = [
    "MODEL_CODE_DIR",
    "TRAINING_JOB_TAG",
    "TransformSettings",
    "container_def",
    "container_definition",
    "endpoint_config_request",
    "endpoint_request",
    "model_request",
    "production_variant",
    "script_mode_environment",
    "transform_job_request",
    "with_training_job_tag",
]
