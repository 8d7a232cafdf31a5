"""Batch transform jobs: the CreateTransformJob request, the job's statuses and how its instances make them.

A transform job is ``InProgress`` from the moment it is accepted until it ends ``Completed``, ``Failed`` or
``Stopped``; a stop passes through ``Stopping`` while its instances wind down. Each instance (``algo-<i>``) reports
its own status (``InProgress``, then ``Completed``, ``Failed`` or ``Stopped``); :func:`transform_move` says what
those reports make the job. Pure: no I/O.

Field names, limits and defaults are SageMaker's (CreateTransformJob); :func:`parse_create_transform_request` turns
any violation into one :class:`~trainforge.errors.ValidationError` naming the field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr, field_validator, model_validator

from trainforge.errors import ValidationError
from trainforge.spec.fields import (
    KmsKey,
    ResourceName,
    SpecModel,
    TagList,
    check_environment,
    check_s3_prefix,
    parse_body,
)
from trainforge.spec.hosts import name_host

S3_URI_RE = re.compile(r"^s3://([^/]+)(/.*)?$")
MAX_ENVIRONMENT = 16
MAX_PAYLOAD_MB = 100
DEFAULT_MAX_PAYLOAD_MB = 6
SUPPORTED_SPLIT_TYPES = ("None", "Line")
SUPPORTED_DATA_TYPES = ("S3Prefix", "ManifestFile")
DEFAULT_DATA_PROCESSING = {"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"}


class TransformJobStatus(StrEnum):
    """SageMaker's ``TransformJobStatus``."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class InstanceStatus(StrEnum):
    """What one transform instance's supervisor reports about itself."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"


T = TransformJobStatus
TERMINAL: frozenset[TransformJobStatus] = frozenset({T.COMPLETED, T.FAILED, T.STOPPED})
INSTANCE_TERMINAL: frozenset[InstanceStatus] = frozenset(
    {InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.STOPPED}
)

# from -> the statuses it may move to. A stop ends Stopped (or Failed, e.g. its instances vanished); terminal
# statuses never change.
ALLOWED: dict[TransformJobStatus, frozenset[TransformJobStatus]] = {
    T.IN_PROGRESS: frozenset({T.IN_PROGRESS, T.COMPLETED, T.FAILED, T.STOPPING, T.STOPPED}),
    T.STOPPING: frozenset({T.STOPPING, T.STOPPED, T.FAILED}),
    T.COMPLETED: frozenset(),
    T.FAILED: frozenset(),
    T.STOPPED: frozenset(),
}


def allowed_predecessors(target: TransformJobStatus) -> frozenset[TransformJobStatus]:
    """Every status from which ``target`` may be reached."""
    return frozenset(src for src, dests in ALLOWED.items() if target in dests)


def is_terminal(status: TransformJobStatus | str) -> bool:
    """Whether a transform job in ``status`` can never change again."""
    return TransformJobStatus(status) in TERMINAL


# -- how instance reports make the job's status ---------------------------------------------------------------


@dataclass(frozen=True)
class TransformMove:
    """The job status instance reports lead to (``status`` None: nothing changes for the job)."""

    status: TransformJobStatus | None
    failure_reason: str | None = None


def transform_move(
    current: TransformJobStatus,
    instances: Mapping[str, tuple[InstanceStatus, str | None]],
    count: int,
) -> TransformMove:
    """What the job's instances' statuses (``host -> (status, failure_reason)``) make a job now ``current``.

    One failed instance fails the job at once (its FailureReason, naming the host when there are several); while
    a stop is under way the job is ``Stopped`` once every instance has ended; otherwise the job is ``Completed``
    once all ``count`` instances completed, and ``Stopped`` when an instance stopped without a stop request (its
    supervisor was told to stop by its machine). A terminal job never moves.
    """
    if current in TERMINAL:
        return TransformMove(None)
    ended = {h: s for h, s in instances.items() if s[0] in INSTANCE_TERMINAL}
    if current == T.STOPPING:
        if len(ended) >= count:
            return TransformMove(T.STOPPED)
        return TransformMove(None)
    for host in sorted(ended):
        status, reason = ended[host]
        if status == InstanceStatus.FAILED:
            reason = reason or "InternalServerError: the instance failed without a reason"
            return TransformMove(T.FAILED, reason if count <= 1 else name_host(reason, host))
    if any(s == InstanceStatus.STOPPED for s, _ in ended.values()):
        return TransformMove(T.STOPPED)
    if sum(1 for s, _ in ended.values() if s == InstanceStatus.COMPLETED) >= count:
        return TransformMove(T.COMPLETED)
    return TransformMove(None)


# -- the CreateTransformJob request -----------------------------------------------------------------------------


class TransformS3DataSource(SpecModel):
    """Where the input is: every object under a prefix, or the objects a manifest file lists."""

    S3DataType: StrictStr
    S3Uri: Annotated[StrictStr, Field(max_length=1024)]

    @field_validator("S3DataType")
    @classmethod
    def _data_type(cls, value: str) -> str:
        if value not in SUPPORTED_DATA_TYPES:
            raise ValueError(
                f"{value!r} is not supported here; use one of {', '.join(SUPPORTED_DATA_TYPES)} "
                "(S3Prefix: every object under S3Uri; ManifestFile: the objects the manifest at S3Uri lists)"
            )
        return value

    @field_validator("S3Uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_s3_prefix(value, S3_URI_RE)


class TransformDataSource(SpecModel):
    """The input's data source (only ``S3DataSource``)."""

    S3DataSource: TransformS3DataSource


class TransformInputSpec(SpecModel):
    """What to transform and how to cut it into records."""

    DataSource: TransformDataSource
    ContentType: Annotated[StrictStr | None, Field(max_length=256)] = None
    CompressionType: Literal["None", "Gzip"] = "None"
    SplitType: StrictStr = "None"

    @field_validator("SplitType")
    @classmethod
    def _split(cls, value: str) -> str:
        if value not in SUPPORTED_SPLIT_TYPES:
            raise ValueError(
                f"{value!r} is not supported here; use one of {', '.join(SUPPORTED_SPLIT_TYPES)} "
                "(None: each file is one record; Line: each line is a record)"
            )
        return value


class TransformOutputSpec(SpecModel):
    """Where the answers go: ``<S3OutputPath>/<input key relative to the prefix>.out``."""

    S3OutputPath: Annotated[StrictStr, Field(max_length=1024)]
    Accept: Annotated[StrictStr | None, Field(max_length=256)] = None
    AssembleWith: Literal["None", "Line"] | None = None
    KmsKeyId: KmsKey = None

    @field_validator("S3OutputPath")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_s3_prefix(value, S3_URI_RE)


class TransformResourcesSpec(SpecModel):
    """The instances the job runs on."""

    InstanceType: Annotated[StrictStr, Field(min_length=1)]
    InstanceCount: Annotated[int, Field(ge=1)]
    VolumeKmsKeyId: KmsKey = None


class ModelClientConfigSpec(SpecModel):
    """How the driver calls the model: a timeout per invocation and retries."""

    InvocationsTimeoutInSeconds: Annotated[int | None, Field(ge=1, le=3600)] = None
    InvocationsMaxRetries: Annotated[int | None, Field(ge=0, le=3)] = None


class DataProcessingSpec(SpecModel):
    """Filters on inputs and outputs, and joining the input to the output (only the defaults are served)."""

    InputFilter: Annotated[StrictStr | None, Field(max_length=63)] = None
    OutputFilter: Annotated[StrictStr | None, Field(max_length=63)] = None
    JoinSource: Literal["Input", "None"] | None = None

    @model_validator(mode="after")
    def _defaults_only(self) -> DataProcessingSpec:
        for key in ("InputFilter", "OutputFilter", "JoinSource"):
            value = getattr(self, key)
            if value is not None and value != DEFAULT_DATA_PROCESSING[key]:
                raise ValueError(
                    f"{key}={value!r} is not supported here; only the default ({key}="
                    f"{DEFAULT_DATA_PROCESSING[key]!r}) is: leave DataProcessing out"
                )
        return self


class CreateTransformJobRequest(SpecModel):
    """The CreateTransformJob request (the fields a user can set through the SDK)."""

    TransformJobName: ResourceName
    ModelName: ResourceName
    TransformInput: TransformInputSpec
    TransformOutput: TransformOutputSpec
    TransformResources: TransformResourcesSpec
    MaxConcurrentTransforms: Annotated[int | None, Field(ge=0)] = None
    MaxPayloadInMB: Annotated[int, Field(ge=0, le=MAX_PAYLOAD_MB)] = DEFAULT_MAX_PAYLOAD_MB
    BatchStrategy: Literal["SingleRecord", "MultiRecord"] | None = None
    Environment: dict[StrictStr, Annotated[StrictStr, Field(max_length=10240)]] | None = None
    DataProcessing: DataProcessingSpec | None = None
    ModelClientConfig: ModelClientConfigSpec | None = None
    DataCaptureConfig: dict[str, Any] | None = None
    ExperimentConfig: dict[str, Any] | None = None
    Tags: TagList = None

    @field_validator("Environment")
    @classmethod
    def _environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # Values are limited by the field's type (10240 characters).
        return check_environment(value, max_entries=MAX_ENVIRONMENT, max_key=1024, max_value=None)

    def to_wire(self) -> dict[str, Any]:
        """The request as stored and described: JSON-ready, unset optional fields left out, SageMaker's
        defaults (``MaxPayloadInMB``, ``CompressionType``, ``SplitType``) filled in."""
        return self.model_dump(mode="json", exclude_none=True)


def _check_combinations(request: CreateTransformJobRequest) -> None:
    """Rules between fields, each naming the field to change."""
    mct = request.MaxConcurrentTransforms
    if mct and request.MaxPayloadInMB and mct * request.MaxPayloadInMB > MAX_PAYLOAD_MB:
        raise ValidationError(
            f"MaxConcurrentTransforms: {mct} concurrent transforms of up to {request.MaxPayloadInMB} MB each exceed "
            f"the {MAX_PAYLOAD_MB} MB limit on MaxConcurrentTransforms * MaxPayloadInMB; lower one of them",
            field="MaxConcurrentTransforms",
        )


def parse_create_transform_request(body: Any) -> CreateTransformJobRequest:
    """Validate a CreateTransformJob body.

    Raises:
        ValidationError: The first broken field, named (``details["problems"]`` lists every one), with the fix.
    """
    request = parse_body(CreateTransformJobRequest, body)
    _check_combinations(request)
    return request
