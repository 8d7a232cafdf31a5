"""Models, endpoint configs and endpoints: their statuses, allowed status changes and request validation (pure).

Field names are SageMaker's (CreateModel, CreateEndpointConfig, CreateEndpoint, UpdateEndpoint; reference §7.3).
Each ``parse_*`` function turns any violation into one :class:`~trainforge.errors.ValidationError` naming the field
and the fix.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, field_validator, model_validator

from trainforge.spec.fields import (
    IamRoleArn,
    ResourceName,
    SpecModel,
    TagList,
    check_environment,
    parse_body,
)

MODEL_DATA_RE = re.compile(r"^s3://[^/]+/.+")
TRAINING_JOB_TAG = "trainforge:training-job-name"
MAX_ENVIRONMENT = 100
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's limit: 6 MB


class EndpointStatus(StrEnum):
    """``EndpointStatus`` as DescribeEndpoint reports it."""

    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    SYSTEM_UPDATING = "SystemUpdating"
    DELETING = "Deleting"
    FAILED = "Failed"


class InstanceStatus(StrEnum):
    """The status of one endpoint instance, as its serving supervisor reports it."""

    PENDING = "Pending"
    IN_SERVICE = "InService"
    FAILED = "Failed"
    STOPPED = "Stopped"


E = EndpointStatus
# target -> the statuses it may be reached from (one conditional update each).
_PREDECESSORS: dict[EndpointStatus, frozenset[EndpointStatus]] = {
    E.CREATING: frozenset(),
    E.IN_SERVICE: frozenset({E.CREATING, E.UPDATING, E.SYSTEM_UPDATING}),
    E.UPDATING: frozenset({E.IN_SERVICE}),
    E.SYSTEM_UPDATING: frozenset({E.IN_SERVICE}),
    E.FAILED: frozenset({E.CREATING, E.UPDATING, E.IN_SERVICE, E.SYSTEM_UPDATING}),
    E.DELETING: frozenset({E.CREATING, E.IN_SERVICE, E.UPDATING, E.SYSTEM_UPDATING, E.FAILED}),
}
INVOCABLE = frozenset({E.IN_SERVICE, E.UPDATING, E.SYSTEM_UPDATING})


def allowed_predecessors(target: EndpointStatus | str) -> frozenset[EndpointStatus]:
    """The statuses an endpoint may move to ``target`` from."""
    return _PREDECESSORS[EndpointStatus(target)]


class ContainerSpec(SpecModel):
    """``ContainerDefinition``: the image served and the model data it serves."""

    Image: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    ModelDataUrl: Annotated[StrictStr, Field(max_length=1024)]
    Environment: dict[StrictStr, StrictStr] | None = None
    Mode: Literal["SingleModel", "MultiModel"] = "SingleModel"
    ContainerHostname: Annotated[StrictStr | None, Field(max_length=63)] = None
    ImageConfig: dict[str, Any] | None = None

    @field_validator("ModelDataUrl")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not MODEL_DATA_RE.match(value):
            raise ValueError(
                f"{value!r} is not an s3:// URI; give the s3://bucket/key of the model.tar.gz (a training job's "
                "ModelArtifacts.S3ModelArtifacts, or estimator.model_data)"
            )
        return value

    @field_validator("Environment")
    @classmethod
    def _environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_environment(value, max_entries=MAX_ENVIRONMENT, max_key=1024, max_value=1024)

    @field_validator("Mode")
    @classmethod
    def _single(cls, value: str) -> str:
        if value != "SingleModel":
            raise ValueError("only SingleModel is served here; set Mode to SingleModel (or leave it out)")
        return value


class CreateModelRequest(SpecModel):
    """CreateModel (one container: ``PrimaryContainer``, or ``Containers`` holding exactly one)."""

    ModelName: ResourceName
    PrimaryContainer: ContainerSpec | None = None
    Containers: Annotated[list[ContainerSpec] | None, Field(min_length=1)] = None
    ExecutionRoleArn: IamRoleArn
    EnableNetworkIsolation: StrictBool | None = None
    Tags: TagList = None
    VpcConfig: dict[str, Any] | None = None
    InferenceExecutionConfig: dict[str, Any] | None = None

    @field_validator("Containers")
    @classmethod
    def _one_container(cls, value: list[ContainerSpec] | None) -> list[ContainerSpec] | None:
        if value is not None and len(value) > 1:
            raise ValueError(
                f"has {len(value)} containers; inference pipelines are not served here: give one container "
                "(PrimaryContainer)"
            )
        return value

    @model_validator(mode="after")
    def _has_container(self) -> CreateModelRequest:
        if self.PrimaryContainer is None and not self.Containers:
            raise ValueError(
                "PrimaryContainer: required: {'Image': 'trainforge/python:current', 'ModelDataUrl': 's3://...'}"
            )
        return self

    @property
    def container(self) -> ContainerSpec:
        """The one container served."""
        if self.PrimaryContainer is not None:
            return self.PrimaryContainer
        assert self.Containers
        return self.Containers[0]

    @property
    def training_job_tag(self) -> str | None:
        """The ``trainforge:training-job-name`` tag's value, if the SDK sent one."""
        for tag in self.Tags or []:
            if tag.Key == TRAINING_JOB_TAG and tag.Value:
                return tag.Value
        return None

    def to_wire(self) -> dict[str, Any]:
        """The request as stored: ``Containers[0]`` becomes ``PrimaryContainer``; unset fields left out."""
        wire = self.model_dump(mode="json", exclude_none=True)
        wire.pop("Containers", None)
        wire["PrimaryContainer"] = self.container.model_dump(mode="json", exclude_none=True)
        return wire


class ProductionVariantSpec(SpecModel):
    """``ProductionVariant``: which model serves, on how many instances of which type."""

    VariantName: ResourceName = "AllTraffic"
    ModelName: ResourceName
    InitialInstanceCount: Annotated[int, Field(ge=1, le=100)] = 1
    InstanceType: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    InitialVariantWeight: Annotated[float, Field(ge=0)] = 1.0
    AcceleratorType: StrictStr | None = None
    VolumeSizeInGB: Annotated[int | None, Field(ge=1, le=512)] = None
    ModelDataDownloadTimeoutInSeconds: Annotated[int | None, Field(ge=60, le=3600)] = None
    ContainerStartupHealthCheckTimeoutInSeconds: Annotated[int | None, Field(ge=60, le=3600)] = None
    EnableSSMAccess: StrictBool | None = None
    CoreDumpConfig: dict[str, Any] | None = None
    RoutingConfig: dict[str, Any] | None = None

    @field_validator("AcceleratorType")
    @classmethod
    def _no_accelerator(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("Elastic Inference accelerators are not available here; leave AcceleratorType out")
        return value


class CreateEndpointConfigRequest(SpecModel):
    """CreateEndpointConfig (exactly one production variant is served here)."""

    EndpointConfigName: ResourceName
    ProductionVariants: Annotated[list[ProductionVariantSpec], Field(min_length=1, max_length=10)]
    Tags: TagList = None
    KmsKeyId: StrictStr | None = None
    DataCaptureConfig: dict[str, Any] | None = None

    @field_validator("ProductionVariants")
    @classmethod
    def _one_variant(cls, value: list[ProductionVariantSpec]) -> list[ProductionVariantSpec]:
        if len(value) > 1:
            raise ValueError(
                f"has {len(value)} variants; exactly one production variant is served here: give one "
                "(traffic splitting between variants is not available)"
            )
        return value

    @property
    def variant(self) -> ProductionVariantSpec:
        """The one production variant."""
        return self.ProductionVariants[0]

    def to_wire(self) -> dict[str, Any]:
        """The request as stored, unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class CreateEndpointRequest(SpecModel):
    """CreateEndpoint."""

    EndpointName: ResourceName
    EndpointConfigName: ResourceName
    Tags: TagList = None
    DeploymentConfig: dict[str, Any] | None = None


class UpdateEndpointRequest(SpecModel):
    """UpdateEndpoint (the endpoint's name is in the path)."""

    EndpointConfigName: ResourceName
    RetainAllVariantProperties: StrictBool | None = None
    DeploymentConfig: dict[str, Any] | None = None


_NOT_OBJECT = "(body): the request body must be a JSON object"


def parse_create_model(body: Any) -> CreateModelRequest:
    """Validate a CreateModel body; :class:`ValidationError` naming the field on failure."""
    return parse_body(CreateModelRequest, body, not_object=_NOT_OBJECT)


def parse_create_endpoint_config(body: Any) -> CreateEndpointConfigRequest:
    """Validate a CreateEndpointConfig body; :class:`ValidationError` naming the field on failure."""
    return parse_body(CreateEndpointConfigRequest, body, not_object=_NOT_OBJECT)


def parse_create_endpoint(body: Any) -> CreateEndpointRequest:
    """Validate a CreateEndpoint body; :class:`ValidationError` naming the field on failure."""
    return parse_body(CreateEndpointRequest, body, not_object=_NOT_OBJECT)


def parse_update_endpoint(body: Any) -> UpdateEndpointRequest:
    """Validate an UpdateEndpoint body; :class:`ValidationError` naming the field on failure."""
    return parse_body(UpdateEndpointRequest, body, not_object=_NOT_OBJECT)


def model_arn(region: str, account_id: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:model/<name>``."""
    return f"arn:aws:sagemaker:{region}:{account_id}:model/{name.lower()}"


def endpoint_config_arn(region: str, account_id: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:endpoint-config/<name>``."""
    return f"arn:aws:sagemaker:{region}:{account_id}:endpoint-config/{name.lower()}"


def endpoint_arn(region: str, account_id: str, name: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:endpoint/<name>``."""
    return f"arn:aws:sagemaker:{region}:{account_id}:endpoint/{name.lower()}"


def endpoint_not_found_message(name: str) -> str:
    """SageMaker's words for an unknown endpoint."""
    return f'Could not find endpoint "{name}".'


def model_not_found_message(name: str) -> str:
    """SageMaker's words for an unknown model."""
    return f'Could not find model "{name}".'


def config_not_found_message(name: str) -> str:
    """SageMaker's words for an unknown endpoint configuration."""
    return f'Could not find endpoint configuration "{name}".'
