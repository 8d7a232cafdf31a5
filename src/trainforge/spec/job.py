"""The training-job request: every CreateTrainingJob field of reference §3.1 a user can set.

Field names are SageMaker's (PascalCase) so the wire format is the one boto3 users know. Validation follows
the service model's constraints; :func:`parse_create_request` turns any violation into one
:class:`~trainforge.errors.ValidationError` that names the field and the rule.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, field_validator, model_validator

from trainforge.spec.fields import (
    NAME_RE,
    IamRoleArn,
    KmsKey,
    ResourceName,
    SpecModel,
    TagList,
    check_environment,
    check_s3_prefix,
    parse_body,
)

JOB_NAME_RE = NAME_RE
CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9\.\-_]+$")
DATA_URI_RE = re.compile(r"^(s3|https)://([^/]+)/?(.*)$|^file://(/.*)$")
OUTPUT_URI_RE = re.compile(r"^s3://([^/]+)/?(.*)$|^file://(/.*)$")

MAX_HYPERPARAMETERS = 100
MAX_HP_KEY = 256
MAX_HP_VALUE = 2500
MAX_CHANNELS = 20
MAX_ENVIRONMENT = 100
DEFAULT_MAX_RUNTIME = 86400


class MetricDefinitionSpec(SpecModel):
    """A metric name and the regex whose first group is its value."""

    Name: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    Regex: Annotated[StrictStr, Field(min_length=1, max_length=500)]

    @field_validator("Regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from exc
        return value


class AlgorithmSpecificationSpec(SpecModel):
    """What the job runs: an image (or algorithm name), the input mode, and how to start it."""

    TrainingImage: Annotated[StrictStr | None, Field(max_length=255)] = None
    AlgorithmName: Annotated[StrictStr | None, Field(min_length=1, max_length=170)] = None
    TrainingInputMode: Literal["File", "Pipe", "FastFile"] = "File"
    MetricDefinitions: Annotated[list[MetricDefinitionSpec], Field(max_length=40)] = Field(default_factory=list)
    EnableSageMakerMetricsTimeSeries: StrictBool | None = None
    ContainerEntrypoint: Annotated[
        list[Annotated[StrictStr, Field(max_length=256)]] | None, Field(min_length=1, max_length=100)
    ] = None
    ContainerArguments: Annotated[
        list[Annotated[StrictStr, Field(max_length=256)]] | None, Field(min_length=1, max_length=100)
    ] = None
    TrainingImageConfig: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _image_or_algorithm(self) -> AlgorithmSpecificationSpec:
        if bool(self.TrainingImage) == bool(self.AlgorithmName):
            raise ValueError("set exactly one of TrainingImage or AlgorithmName")
        return self


class S3DataSourceSpec(SpecModel):
    """Where a channel's objects are: a prefix (``s3://`` or ``file://``) and how hosts share them."""

    S3DataType: Literal["S3Prefix", "ManifestFile", "AugmentedManifestFile"] = "S3Prefix"
    S3Uri: Annotated[StrictStr, Field(max_length=1024)]
    S3DataDistributionType: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"
    AttributeNames: Annotated[list[StrictStr] | None, Field(max_length=16)] = None
    InstanceGroupNames: Annotated[list[StrictStr] | None, Field(max_length=5)] = None

    @field_validator("S3Uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not DATA_URI_RE.match(value):
            raise ValueError("must be an s3://bucket/prefix or file:///absolute/path URI")
        return value


class DataSourceSpec(SpecModel):
    """A channel's data source; only ``S3DataSource`` (incl. ``file://``) is served here."""

    S3DataSource: S3DataSourceSpec | None = None
    FileSystemDataSource: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> DataSourceSpec:
        if self.FileSystemDataSource is not None:
            raise ValueError("FileSystemDataSource (EFS/FSx) is not available here; use an s3:// or file:// S3Uri")
        if self.S3DataSource is None:
            raise ValueError("S3DataSource is required")
        return self


class ChannelSpec(SpecModel):
    """One named input, staged at ``/opt/ml/input/data/<ChannelName>``."""

    ChannelName: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    DataSource: DataSourceSpec
    ContentType: Annotated[StrictStr | None, Field(max_length=256)] = None
    CompressionType: Literal["None", "Gzip"] | None = None
    RecordWrapperType: Literal["None", "RecordIO"] | None = None
    InputMode: Literal["File", "Pipe", "FastFile"] | None = None
    ShuffleConfig: dict[str, Any] | None = None

    @field_validator("ChannelName")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CHANNEL_NAME_RE.match(value):
            raise ValueError("must match [A-Za-z0-9.\\-_]+")
        return value


class OutputDataConfigSpec(SpecModel):
    """Where artifacts go: ``<S3OutputPath>/<job>/output/model.tar.gz``."""

    S3OutputPath: Annotated[StrictStr, Field(max_length=1024)]
    KmsKeyId: KmsKey = None
    CompressionType: Literal["GZIP", "NONE"] | None = None

    @field_validator("S3OutputPath")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_s3_prefix(value, OUTPUT_URI_RE)


class InstanceGroupSpec(SpecModel):
    """A named group of instances of one type (heterogeneous clusters)."""

    InstanceType: StrictStr
    InstanceCount: Annotated[int, Field(ge=1)]
    InstanceGroupName: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class ResourceConfigSpec(SpecModel):
    """The machines a job asks for."""

    InstanceType: StrictStr | None = None
    InstanceCount: Annotated[int | None, Field(ge=1)] = None
    VolumeSizeInGB: Annotated[int, Field(ge=0)] = 30
    VolumeKmsKeyId: StrictStr | None = None
    KeepAlivePeriodInSeconds: Annotated[int | None, Field(ge=0, le=21600)] = None
    InstanceGroups: Annotated[list[InstanceGroupSpec] | None, Field(max_length=5)] = None
    TrainingPlanArn: StrictStr | None = None
    InstancePlacementConfig: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _type_or_groups(self) -> ResourceConfigSpec:
        if self.InstanceGroups:
            if self.InstanceType or self.InstanceCount:
                raise ValueError("InstanceGroups cannot be combined with InstanceType/InstanceCount")
        else:
            if not self.InstanceType:
                raise ValueError("InstanceType is required (e.g. 'ml.m5.large' or 'local')")
            if self.InstanceCount is None:
                self.InstanceCount = 1
        return self


class StoppingConditionSpec(SpecModel):
    """Runtime limits; ``MaxRuntimeInSeconds`` ends the job with ``Stopped/MaxRuntimeExceeded``."""

    MaxRuntimeInSeconds: Annotated[int, Field(ge=1, le=28 * 86400)] = DEFAULT_MAX_RUNTIME
    MaxWaitTimeInSeconds: Annotated[int | None, Field(ge=1)] = None
    MaxPendingTimeInSeconds: Annotated[int | None, Field(ge=7200, le=2419200)] = None

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> StoppingConditionSpec:
        if self.MaxWaitTimeInSeconds is not None and self.MaxWaitTimeInSeconds < self.MaxRuntimeInSeconds:
            raise ValueError("MaxWaitTimeInSeconds must be >= MaxRuntimeInSeconds")
        return self


class CheckpointConfigSpec(SpecModel):
    """Checkpoints synced between ``LocalPath`` and ``S3Uri``."""

    S3Uri: Annotated[StrictStr, Field(max_length=1024)]
    LocalPath: Annotated[StrictStr | None, Field(max_length=4096)] = None

    @field_validator("S3Uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        return check_s3_prefix(value, OUTPUT_URI_RE)


class RetryStrategySpec(SpecModel):
    """How often a job is retried after an internal failure."""

    MaximumRetryAttempts: Annotated[int, Field(ge=1, le=30)]


class CreateTrainingJobRequest(SpecModel):
    """The CreateTrainingJob request as SageMaker defines it (fields a user can set through the SDK)."""

    TrainingJobName: ResourceName
    RoleArn: IamRoleArn
    AlgorithmSpecification: AlgorithmSpecificationSpec
    OutputDataConfig: OutputDataConfigSpec
    ResourceConfig: ResourceConfigSpec
    StoppingCondition: StoppingConditionSpec = Field(default_factory=StoppingConditionSpec)
    HyperParameters: dict[StrictStr, StrictStr] | None = None
    InputDataConfig: Annotated[list[ChannelSpec] | None, Field(min_length=1, max_length=MAX_CHANNELS)] = None
    VpcConfig: dict[str, Any] | None = None
    Tags: TagList = None
    EnableNetworkIsolation: StrictBool | None = None
    EnableInterContainerTrafficEncryption: StrictBool | None = None
    EnableManagedSpotTraining: StrictBool | None = None
    CheckpointConfig: CheckpointConfigSpec | None = None
    Environment: dict[StrictStr, StrictStr] | None = None
    RetryStrategy: RetryStrategySpec | None = None
    DebugHookConfig: dict[str, Any] | None = None
    DebugRuleConfigurations: Annotated[list[dict[str, Any]] | None, Field(max_length=20)] = None
    TensorBoardOutputConfig: dict[str, Any] | None = None
    ProfilerConfig: dict[str, Any] | None = None
    ProfilerRuleConfigurations: list[dict[str, Any]] | None = None
    ExperimentConfig: dict[str, Any] | None = None
    RemoteDebugConfig: dict[str, Any] | None = None
    InfraCheckConfig: dict[str, Any] | None = None
    SessionChainingConfig: dict[str, Any] | None = None

    @field_validator("HyperParameters")
    @classmethod
    def _hyperparameters(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_HYPERPARAMETERS:
            raise ValueError(f"has {len(value)} entries; at most {MAX_HYPERPARAMETERS} are allowed")
        for key, item in value.items():
            if not key or len(key) > MAX_HP_KEY:
                raise ValueError(f"key {key[:40]!r} must be 1-{MAX_HP_KEY} characters long")
            if len(item) > MAX_HP_VALUE:
                raise ValueError(f"value of {key!r} is {len(item)} characters long; at most {MAX_HP_VALUE} are allowed")
        return value

    @field_validator("Environment")
    @classmethod
    def _environment(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_environment(value, max_entries=MAX_ENVIRONMENT, max_key=512, max_value=512)

    @field_validator("InputDataConfig")
    @classmethod
    def _unique_channels(cls, value: list[ChannelSpec] | None) -> list[ChannelSpec] | None:
        if value:
            names = [c.ChannelName for c in value]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"channel names must be unique; repeated: {', '.join(dupes)}")
        return value

    def to_wire(self) -> dict[str, Any]:
        """The request as JSON-ready data, without unset optional fields."""
        return self.model_dump(mode="json", exclude_none=True)

    @property
    def instance_type(self) -> str:
        """The instance type of the job (first group's type for heterogeneous clusters)."""
        rc = self.ResourceConfig
        if rc.InstanceType:
            return rc.InstanceType
        assert rc.InstanceGroups
        return rc.InstanceGroups[0].InstanceType

    @property
    def instance_count(self) -> int:
        """Total number of hosts."""
        rc = self.ResourceConfig
        if rc.InstanceGroups:
            return sum(g.InstanceCount for g in rc.InstanceGroups)
        return rc.InstanceCount or 1


def parse_create_request(body: Any) -> CreateTrainingJobRequest:
    """Validate a CreateTrainingJob body; raise :class:`ValidationError` naming the field on failure."""
    return parse_body(CreateTrainingJobRequest, body)
