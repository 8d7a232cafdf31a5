"""Estimators: describe a training job, submit it with ``fit()``, follow it (reference §2, §5.1-§5.3).

``Estimator`` runs an image with hyperparameters sent as ``str(value)`` (JSON-encoded when ``source_dir`` is
set); ``Framework`` subclasses (``SKLearn``, ...) run a script from ``source_dir`` and JSON-encode every
hyperparameter. Script mode packages the code as ``sourcedir.tar.gz`` and adds the reserved
``sagemaker_*`` hyperparameters.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from trainforge.admin_client import AdminClient
from trainforge.analytics import TrainingJobAnalytics
from trainforge.deserializers import BaseDeserializer
from trainforge.errors import ValidationError
from trainforge.fw_utils import UploadedCode, git_clone_repo, tar_and_upload_dir, validate_source_code
from trainforge.job import TrainingJob
from trainforge.model import Model, normalize_tags
from trainforge.predictor import Predictor
from trainforge.serializers import BaseSerializer
from trainforge.session import Session, get_execution_role
from trainforge.spec import images
from trainforge.spec.contract import model_artifacts_uri
from trainforge.spec.names import base_from_name, base_name_from_image, name_from_base
from trainforge.storage import parse_s3_uri, s3_join
from trainforge.train_request import (
    Channels,
    FitInputs,
    TrainingJobSettings,
    build_train_request,
    json_encode_hyperparameters,
    str_encode_hyperparameters,
    training_channels,
)
from trainforge.transformer import Transformer

logger = logging.getLogger("trainforge")

# Kept for code written against ``sagemaker.estimator._TrainingJob``.
_TrainingJob = TrainingJob

DIR_PARAM_NAME = "sagemaker_submit_directory"
SCRIPT_PARAM_NAME = "sagemaker_program"
CONTAINER_LOG_LEVEL_PARAM_NAME = "sagemaker_container_log_level"
JOB_NAME_PARAM_NAME = "sagemaker_job_name"
SAGEMAKER_REGION_PARAM_NAME = "sagemaker_region"
SCRIPT_MODE_PARAMS = (
    DIR_PARAM_NAME,
    SCRIPT_PARAM_NAME,
    CONTAINER_LOG_LEVEL_PARAM_NAME,
    JOB_NAME_PARAM_NAME,
    SAGEMAKER_REGION_PARAM_NAME,
)
CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH = "/opt/ml/input/data/code/sourcedir.tar.gz"

# Names SageMaker v1 used; accepted with a DeprecationWarning.
_RENAMED_KWARGS = {
    "train_instance_count": "instance_count",
    "train_instance_type": "instance_type",
    "train_volume_size": "volume_size",
    "train_volume_kms_key": "volume_kms_key",
    "train_max_run": "max_run",
    "train_use_spot_instances": "use_spot_instances",
    "train_max_wait": "max_wait",
    "image_name": "image_uri",
}


def _json_or_raw(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def pop_renamed_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Move SageMaker v1 parameter names in ``kwargs`` to their v2 names, warning once per name."""
    for old, new in _RENAMED_KWARGS.items():
        if old in kwargs:
            warnings.warn(f"the parameter {old!r} was renamed {new!r}", DeprecationWarning, stacklevel=3)
            value = kwargs.pop(old)
            if kwargs.get(new) is None:
                kwargs[new] = value
    return kwargs


def check_instance_count(value: object) -> int:
    """``value`` as a number of hosts; ``ValidationError`` naming ``instance_count`` and what is wrong with it."""
    if value is None:
        raise ValidationError(
            "instance_count: required (a positive integer, e.g. instance_count=1)", field="instance_count"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"instance_count: must be a positive integer, got {value!r} ({type(value).__name__}); "
            "e.g. instance_count=2",
            field="instance_count",
        )
    if value < 1:
        raise ValidationError(
            f"instance_count: must be at least 1, got {value}; it is the number of hosts (instances) to train on",
            field="instance_count",
        )
    return value


class EstimatorBase:
    """What every estimator shares: resources, limits, outputs, code packaging, ``fit`` and ``attach``.

    The first three parameters may be positional as in SageMaker; the rest are keyword-only. Each maps to
    the CreateTrainingJob field of reference §5.1; ``None`` leaves the field out of the request.

    Args:
        role: IAM-style role ARN or name; default :func:`trainforge.get_execution_role`.
        instance_count: Number of hosts (required unless ``instance_groups``).
        instance_type: ``ml.*`` instance type or ``local`` (required unless ``instance_groups``).
        keep_alive_period_in_seconds: ``ResourceConfig.KeepAlivePeriodInSeconds``.
        volume_size: ``ResourceConfig.VolumeSizeInGB`` (default 30).
        volume_kms_key: ``ResourceConfig.VolumeKmsKeyId``.
        max_run: ``StoppingCondition.MaxRuntimeInSeconds`` (default 86400).
        input_mode: ``File`` (default), ``FastFile`` or ``Pipe``.
        output_path: ``OutputDataConfig.S3OutputPath``; default ``s3://<default bucket>/``.
        output_kms_key: ``OutputDataConfig.KmsKeyId``.
        base_job_name: Prefix of generated job names; default derived from the image.
        sagemaker_session: Session to use; default ``Session()``.
        hyperparameters: Hyperparameters (encoding depends on the estimator class).
        tags: ``Tags`` as a list of ``{"Key", "Value"}`` or a dict.
        subnets: ``VpcConfig.Subnets`` (together with ``security_group_ids``).
        security_group_ids: ``VpcConfig.SecurityGroupIds``.
        model_uri: Extra channel ``model_channel_name`` with a model to start from.
        model_channel_name: Name of that channel (default ``model``).
        metric_definitions: ``AlgorithmSpecification.MetricDefinitions`` (``[{"Name", "Regex"}]``).
        encrypt_inter_container_traffic: ``EnableInterContainerTrafficEncryption``.
        use_spot_instances: ``EnableManagedSpotTraining``.
        max_wait: ``StoppingCondition.MaxWaitTimeInSeconds``.
        checkpoint_s3_uri: ``CheckpointConfig.S3Uri``.
        checkpoint_local_path: ``CheckpointConfig.LocalPath``.
        rules: ``DebugRuleConfigurations`` (dicts, or objects with ``_to_request_dict``).
        debugger_hook_config: ``DebugHookConfig``; ``True`` sends SageMaker's default hook config.
        tensorboard_output_config: ``TensorBoardOutputConfig``.
        enable_sagemaker_metrics: ``AlgorithmSpecification.EnableSageMakerMetricsTimeSeries``.
        enable_network_isolation: ``EnableNetworkIsolation`` (code then travels in channel ``code``).
        profiler_config: ``ProfilerConfig``.
        disable_profiler: Unless ``False`` (or a ``profiler_config`` is given) ``ProfilerConfig`` is
            ``{"DisableProfiler": true}``.
        environment: ``Environment``.
        max_retry_attempts: ``RetryStrategy.MaximumRetryAttempts``.
        source_dir: Directory whose top-level entries are packaged (or an ``s3://`` sourcedir.tar.gz).
        git_config: ``{"repo", "branch", "commit"}``: take ``entry_point``/``source_dir`` from a clone.
        container_log_level: ``sagemaker_container_log_level`` (default ``logging.INFO``).
        code_location: ``s3://bucket/prefix`` for the code; default the output path's bucket.
        entry_point: Script to run, relative to ``source_dir``.
        dependencies: Extra paths packaged at the archive root.
        instance_groups: ``ResourceConfig.InstanceGroups`` (dicts or objects with ``_to_request_dict``).
        training_repository_access_mode: ``TrainingImageConfig.TrainingRepositoryAccessMode``.
        training_repository_credentials_provider_arn: ``TrainingImageConfig.TrainingRepositoryAuthConfig``.
        enable_infra_check: ``InfraCheckConfig.EnableInfraCheck``.
        container_entry_point: ``AlgorithmSpecification.ContainerEntrypoint``.
        container_arguments: ``AlgorithmSpecification.ContainerArguments``.
        disable_output_compression: ``OutputDataConfig.CompressionType = "NONE"``.
        enable_remote_debug: ``RemoteDebugConfig.EnableRemoteDebug``.
        enable_session_tag_chaining: ``SessionChainingConfig.EnableSessionTagChaining``.
        training_plan: ``ResourceConfig.TrainingPlanArn``.
        instance_placement_config: ``ResourceConfig.InstancePlacementConfig``.

    Raises:
        ValidationError: Instance type/count missing, ``subnets`` without ``security_group_ids`` (or the
            reverse), or an unknown parameter.
    """

    _json_hyperparameters: ClassVar[bool] = False

    def __init__(
        self,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        *,
        keep_alive_period_in_seconds: int | None = None,
        volume_size: int = 30,
        volume_kms_key: str | None = None,
        max_run: int = 24 * 60 * 60,
        input_mode: str = "File",
        output_path: str | None = None,
        output_kms_key: str | None = None,
        base_job_name: str | None = None,
        sagemaker_session: Session | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
        subnets: list[str] | None = None,
        security_group_ids: list[str] | None = None,
        model_uri: str | None = None,
        model_channel_name: str = "model",
        metric_definitions: list[dict[str, str]] | None = None,
        encrypt_inter_container_traffic: bool | None = None,
        use_spot_instances: bool = False,
        max_wait: int | None = None,
        checkpoint_s3_uri: str | None = None,
        checkpoint_local_path: str | None = None,
        rules: list[Any] | None = None,
        debugger_hook_config: Any = None,
        tensorboard_output_config: Any = None,
        enable_sagemaker_metrics: bool | None = None,
        enable_network_isolation: bool | None = None,
        profiler_config: Any = None,
        disable_profiler: bool | None = None,
        environment: Mapping[str, str] | None = None,
        max_retry_attempts: int | None = None,
        source_dir: str | None = None,
        git_config: Mapping[str, Any] | None = None,
        container_log_level: int = logging.INFO,
        code_location: str | None = None,
        entry_point: str | None = None,
        dependencies: list[str] | None = None,
        instance_groups: list[Any] | None = None,
        training_repository_access_mode: str | None = None,
        training_repository_credentials_provider_arn: str | None = None,
        enable_infra_check: bool | None = None,
        container_entry_point: list[str] | None = None,
        container_arguments: list[str] | None = None,
        disable_output_compression: bool = False,
        enable_remote_debug: bool | None = None,
        enable_session_tag_chaining: bool | None = None,
        training_plan: str | None = None,
        instance_placement_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        self.role = role
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.instance_groups = instance_groups
        if not instance_groups:
            if not instance_type:
                raise ValidationError(
                    "instance_type: required (e.g. 'ml.m5.large', or 'local' for this machine)", field="instance_type"
                )
            check_instance_count(instance_count)
        if bool(subnets) != bool(security_group_ids):
            raise ValidationError(
                "subnets: when setting up a custom VPC, both subnets and security_group_ids must be set",
                field="subnets" if not subnets else "security_group_ids",
            )
        self.keep_alive_period_in_seconds = keep_alive_period_in_seconds
        self.volume_size = volume_size
        self.volume_kms_key = volume_kms_key
        self.max_run = max_run
        self.input_mode = input_mode
        self.output_path = output_path
        self.output_kms_key = output_kms_key
        self.base_job_name = base_job_name
        self.sagemaker_session = sagemaker_session if sagemaker_session is not None else Session()
        self._hyperparameters: dict[str, Any] = dict(hyperparameters or {})
        self.tags = normalize_tags(tags)
        self.subnets = subnets
        self.security_group_ids = security_group_ids
        self.model_uri = model_uri
        self.model_channel_name = model_channel_name
        self.metric_definitions = metric_definitions
        self.encrypt_inter_container_traffic = encrypt_inter_container_traffic
        self.use_spot_instances = use_spot_instances
        self.max_wait = max_wait
        self.checkpoint_s3_uri = checkpoint_s3_uri
        self.checkpoint_local_path = checkpoint_local_path
        self.rules = rules
        self.debugger_hook_config = debugger_hook_config
        self.tensorboard_output_config = tensorboard_output_config
        self.enable_sagemaker_metrics = enable_sagemaker_metrics
        self._enable_network_isolation = bool(enable_network_isolation)
        self.profiler_config = profiler_config
        self.disable_profiler = disable_profiler
        self.environment = dict(environment) if environment else None
        self.max_retry_attempts = max_retry_attempts
        self.source_dir = source_dir
        self.git_config = dict(git_config) if git_config else None
        self.container_log_level = container_log_level
        self.code_location = code_location
        self.entry_point = entry_point
        self.dependencies = list(dependencies or [])
        self.training_repository_access_mode = training_repository_access_mode
        self.training_repository_credentials_provider_arn = training_repository_credentials_provider_arn
        self.enable_infra_check = enable_infra_check
        self.container_entry_point = container_entry_point
        self.container_arguments = container_arguments
        self.disable_output_compression = disable_output_compression
        self.enable_remote_debug = enable_remote_debug
        self.enable_session_tag_chaining = enable_session_tag_chaining
        self.training_plan = training_plan
        self.instance_placement_config = instance_placement_config
        self.latest_training_job: TrainingJob | None = None
        self.jobs: list[TrainingJob] = []
        self._current_job_name: str | None = None
        self.uploaded_code: UploadedCode | None = None
        self._script_mode_hyperparameters: dict[str, str] = {}

    # -- what subclasses define ---------------------------------------------------------------------------

    def training_image_uri(self) -> str:
        """The image the job runs."""
        raise TypeError(f"{type(self).__name__} does not define a training image")

    def _user_hyperparameters(self) -> dict[str, Any]:
        """User hyperparameters as they will be sent (before ``str()``)."""
        if self._json_hyperparameters or self.source_dir:
            return json_encode_hyperparameters(self._hyperparameters)
        return dict(self._hyperparameters)

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters of the next (or last) job, encoded as this estimator sends them.

        Includes the reserved ``sagemaker_*`` keys once ``fit`` has packaged script-mode code.
        """
        return {**self._user_hyperparameters(), **self._script_mode_hyperparameters}

    def set_hyperparameters(self, **kwargs: Any) -> None:
        """Add or replace hyperparameters."""
        self._hyperparameters.update(kwargs)

    def enable_network_isolation(self) -> bool:
        """Whether the job runs without network access (``EnableNetworkIsolation``)."""
        return self._enable_network_isolation

    # -- preparing a job ----------------------------------------------------------------------------------

    def _script_mode(self) -> bool:
        return bool(self.entry_point or self.source_dir or self.dependencies)

    def _get_or_create_name(self, job_name: str | None = None) -> str:
        if job_name:
            return job_name
        base = self.base_job_name or base_name_from_image(self.training_image_uri())
        return name_from_base(base)

    def _prepare_for_training(self, job_name: str | None = None) -> None:
        """Name the job, default the output path, and package and upload script-mode code.

        Code is checked before anything is uploaded.

        Raises:
            ValidationError: The entry point or source directory is missing (field ``entry_point`` or
                ``source_dir``).
        """
        if self.git_config and self.entry_point:
            cloned = git_clone_repo(self.git_config, self.entry_point, self.source_dir, self.dependencies)
            self.entry_point = cloned["entry_point"]
            self.source_dir = cloned["source_dir"]
            self.dependencies = cloned["dependencies"]
        if self._script_mode():
            if not self.entry_point:
                raise ValidationError(
                    "entry_point: required when source_dir or dependencies is set", field="entry_point"
                )
            validate_source_code(self.entry_point, self.source_dir, self.dependencies)
        self._current_job_name = self._get_or_create_name(job_name)
        if self.output_path is None:
            self.output_path = f"s3://{self.sagemaker_session.default_bucket()}/"
        self._script_mode_hyperparameters = {}
        if self._script_mode():
            self.uploaded_code = self._stage_user_code_in_s3()
            code_dir = self.uploaded_code.s3_prefix
            if self.enable_network_isolation():
                code_dir = CONTAINER_CODE_CHANNEL_SOURCEDIR_PATH
            self._script_mode_hyperparam_update(code_dir, self.uploaded_code.script_name)

    def _stage_user_code_in_s3(self) -> UploadedCode:
        """Upload the code archive to ``<code_location or s3://<output bucket>>/<job>/source/sourcedir.tar.gz``."""
        assert self._current_job_name and self.entry_point
        if self.code_location:
            parsed = parse_s3_uri(self.code_location, field="code_location")
            bucket, prefix = parsed.bucket, s3_join(parsed.key, self._current_job_name, "source").strip("/")
        else:
            output = self.output_path or ""
            if output.startswith("s3://"):
                bucket = parse_s3_uri(output).bucket
            else:
                bucket = self.sagemaker_session.default_bucket()
            prefix = f"{self._current_job_name}/source"
        return tar_and_upload_dir(
            self.sagemaker_session.object_store,
            bucket,
            prefix,
            self.entry_point,
            directory=self.source_dir,
            dependencies=self.dependencies,
        )

    def _script_mode_hyperparam_update(self, code_dir: str, script: str) -> None:
        self._script_mode_hyperparameters = json_encode_hyperparameters(
            {
                DIR_PARAM_NAME: code_dir,
                SCRIPT_PARAM_NAME: script,
                CONTAINER_LOG_LEVEL_PARAM_NAME: self.container_log_level,
                JOB_NAME_PARAM_NAME: self._current_job_name,
                SAGEMAKER_REGION_PARAM_NAME: self.sagemaker_session.boto_region_name,
            }
        )

    def _role_arn(self) -> str:
        if self.role is None:
            return get_execution_role(self.sagemaker_session)
        return self.role if "/" in self.role else self.sagemaker_session.expand_role(self.role)

    def _training_settings(self) -> TrainingJobSettings:
        """The prepared job's settings as plain values (``_prepare_for_training`` must have run).

        Raises:
            ValidationError: The job is not prepared (field ``job_name``).
        """
        if not self._current_job_name or self.output_path is None:
            raise ValidationError("job_name: the job is not prepared; call fit()", field="job_name")
        isolated = self.enable_network_isolation()
        return TrainingJobSettings(
            job_name=self._current_job_name,
            role_arn=self._role_arn(),
            image_uri=self.training_image_uri(),
            output_path=self.output_path,
            input_mode=self.input_mode,
            instance_count=self.instance_count,
            instance_type=self.instance_type,
            instance_groups=self.instance_groups,
            volume_size=self.volume_size,
            volume_kms_key=self.volume_kms_key,
            keep_alive_period_in_seconds=self.keep_alive_period_in_seconds,
            training_plan=self.training_plan,
            instance_placement_config=self.instance_placement_config,
            max_run=self.max_run,
            max_wait=self.max_wait,
            output_kms_key=self.output_kms_key,
            disable_output_compression=self.disable_output_compression,
            hyperparameters=self.hyperparameters(),
            metric_definitions=self.metric_definitions,
            enable_sagemaker_metrics=self.enable_sagemaker_metrics,
            container_entry_point=self.container_entry_point,
            container_arguments=self.container_arguments,
            training_repository_access_mode=self.training_repository_access_mode,
            training_repository_credentials_provider_arn=self.training_repository_credentials_provider_arn,
            model_uri=self.model_uri,
            model_channel_name=self.model_channel_name,
            code_channel_uri=self.uploaded_code.s3_prefix if isolated and self.uploaded_code else None,
            subnets=self.subnets,
            security_group_ids=self.security_group_ids,
            tags=self.tags,
            use_spot_instances=self.use_spot_instances,
            enable_network_isolation=isolated,
            encrypt_inter_container_traffic=self.encrypt_inter_container_traffic,
            checkpoint_s3_uri=self.checkpoint_s3_uri,
            checkpoint_local_path=self.checkpoint_local_path,
            environment=self.environment,
            max_retry_attempts=self.max_retry_attempts,
            debugger_hook_config=self.debugger_hook_config,
            rules=self.rules,
            tensorboard_output_config=self.tensorboard_output_config,
            profiler_config=self.profiler_config,
            disable_profiler=self.disable_profiler,
            enable_remote_debug=self.enable_remote_debug,
            enable_infra_check=self.enable_infra_check,
            enable_session_tag_chaining=self.enable_session_tag_chaining,
        )

    def _get_train_request(
        self, inputs: FitInputs | Channels, experiment_config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The CreateTrainingJob request of the prepared job (see :func:`build_train_request`)."""
        channels = inputs if isinstance(inputs, Channels) else training_channels(inputs)
        return build_train_request(self._training_settings(), channels, experiment_config)

    # -- running ------------------------------------------------------------------------------------------

    def fit(
        self,
        inputs: FitInputs = None,
        wait: bool = True,
        logs: str | bool = "All",
        job_name: str | None = None,
        experiment_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Submit a training job; with ``wait`` follow it to its end, printing status and log lines.

        Args:
            inputs: An ``s3://``/``file://`` URI (channel ``training``), a :class:`TrainingInput`, or a dict
                of channel name to either.
            wait: Block until the job is Completed, Failed or Stopped.
            logs: ``"All"`` streams log lines; ``"None"`` (or ``False``) only polls the status.
            job_name: Exact job name; default ``<base_job_name>-<timestamp>``.
            experiment_config: Sent as ``ExperimentConfig``.

        Raises:
            ValidationError: Bad inputs or code (checked before anything is uploaded), or a request the
                server rejects (the error names the field).
            ConflictError: ``job_name`` is taken.
            UnexpectedStatusError: ``wait`` and the job Failed; the message carries the FailureReason.
        """
        channels = training_channels(inputs)  # checked before any code is uploaded
        self._prepare_for_training(job_name=job_name)
        request = self._get_train_request(channels, experiment_config)
        self.latest_training_job = TrainingJob.start_new(self.sagemaker_session, request)
        self.jobs.append(self.latest_training_job)
        if wait:
            self.latest_training_job.wait(logs=logs)

    def logs(self) -> None:
        """Follow the latest job's logs to its end (as ``fit(wait=True)``)."""
        self.sagemaker_session.logs_for_job(self._ensure_latest_job().name, wait=True)

    def _ensure_latest_job(self) -> TrainingJob:
        if self.latest_training_job is None:
            raise ValidationError("estimator is not associated with a training job; call fit() first", field="job")
        return self.latest_training_job

    @property
    def model_data(self) -> str | dict[str, Any]:
        """URI of the model artifacts: the job's ``ModelArtifacts.S3ModelArtifacts``.

        With ``disable_output_compression`` it is an ``S3DataSource`` dict of the uncompressed prefix.
        Before any job (as SageMaker) a warning is logged and the URI the next job's ``model.tar.gz`` would have
        is returned, when the output path and job name are already known.

        Raises:
            ValidationError: No job was started and the job's name or output path is not known yet (field
                ``model_data``): call ``fit()`` first; or the latest job ended Failed or Stopped without storing a
                model (its description has no ``ModelArtifacts``).
        """
        if self.latest_training_job is not None:
            details = self.sagemaker_session.client.describe_training_job(self.latest_training_job.name)
            if "ModelArtifacts" not in details:  # it ended Failed or Stopped without storing a model
                raise ValidationError(
                    f"model_data: training job {self.latest_training_job.name!r} ended "
                    f"{details.get('TrainingJobStatus')} without storing a model (its model directory was empty); "
                    "train again (or pass model_data= to a Model)",
                    field="model_data",
                )
            uri = str(details["ModelArtifacts"]["S3ModelArtifacts"])
            compression = (details.get("OutputDataConfig") or {}).get("CompressionType", "GZIP")
            if compression in (None, "GZIP"):
                return uri
            return {
                "S3DataSource": {
                    "S3Uri": uri if uri.endswith("/") else uri + "/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            }
        if not self.output_path or not self._current_job_name:
            raise ValidationError(
                "model_data: this estimator has no training job yet, so its model artifacts have no location; "
                "call fit() first (or pass model_data= to a Model)",
                field="model_data",
            )
        logger.warning("No finished training job found associated with this estimator.")
        return model_artifacts_uri(self.output_path, self._current_job_name)

    @property
    def training_job_analytics(self) -> TrainingJobAnalytics:
        """:class:`~trainforge.analytics.TrainingJobAnalytics` of the latest job (its defined metrics).

        Raises:
            ValidationError: The estimator has no job yet (call ``fit()`` first).
        """
        job = self._ensure_latest_job()
        return TrainingJobAnalytics(job.name, sagemaker_session=self.sagemaker_session)

    # -- models, endpoints, batch transform ---------------------------------------------------------------

    def _trained_model_data(self) -> str | dict[str, Any]:
        """The latest job's model data, once that job Completed.

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed (field ``job``).
        """
        job = self._ensure_latest_job()
        status = self.sagemaker_session.client.describe_training_job(job.name).get("TrainingJobStatus")
        if status != "Completed":
            hint = (
                "wait for it (estimator.latest_training_job.wait()) and try again"
                if status in ("InProgress", "Stopping")
                else "train again with fit()"
            )
            raise ValidationError(
                f"job: training job {job.name!r} is {status}; only a Completed job's model can be served: {hint}",
                field="job",
            )
        return self.model_data

    def _link_model(self, model: Model) -> Model:
        """Mark ``model`` as coming from the latest job (CreateModel then carries the trainforge tag)."""
        model._training_job_name = self._ensure_latest_job().name
        return model

    def create_model(self, **kwargs: Any) -> Model:
        """A :class:`~trainforge.model.Model` of the latest job's model (defined by each estimator class)."""
        raise NotImplementedError(f"{type(self).__name__} does not define create_model()")

    def deploy(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        accelerator_type: str | None = None,
        endpoint_name: str | None = None,
        use_compiled_model: bool = False,
        wait: bool = True,
        model_name: str | None = None,
        kms_key: str | None = None,
        data_capture_config: Any = None,
        tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
        volume_size: int | None = None,
        model_data_download_timeout: int | None = None,
        container_startup_health_check_timeout: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Serve the latest job's model on an endpoint and return a predictor for it (SageMaker's ``deploy``).

        The model and the endpoint are both named ``<base_job_name>-<timestamp>`` unless ``model_name`` /
        ``endpoint_name`` are given; the endpoint config takes the endpoint's name. Other keywords go to
        :meth:`create_model` (e.g. ``entry_point="inference.py"`` for a framework estimator).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), the job has not Completed, or a bad argument.
            UnexpectedStatusError: ``wait`` and the endpoint went Failed (its FailureReason in the message).
        """
        self._ensure_latest_job()
        if use_compiled_model:
            raise ValidationError("use_compiled_model: SageMaker Neo is not available here", field="use_compiled_model")
        default_name = name_from_base(self.base_job_name or base_name_from_image(self.training_image_uri()))
        model = self.create_model(**kwargs)
        model.name = model_name or default_name
        return model.deploy(
            initial_instance_count,
            instance_type,
            serializer=serializer,
            deserializer=deserializer,
            accelerator_type=accelerator_type,
            endpoint_name=endpoint_name or default_name,
            tags=tags or self.tags,
            kms_key=kms_key,
            wait=wait,
            data_capture_config=data_capture_config,
            volume_size=volume_size,
            model_data_download_timeout=model_data_download_timeout,
            container_startup_health_check_timeout=container_startup_health_check_timeout,
        )

    def transformer(
        self,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        output_kms_key: str | None = None,
        accept: str | None = None,
        env: Mapping[str, str] | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
        role: str | None = None,
        volume_kms_key: str | None = None,
        enable_network_isolation: bool | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> Transformer:
        """Create a model of the latest job's model and return a :class:`~trainforge.transformer.Transformer`.

        Other keywords go to :meth:`create_model` (e.g. ``entry_point=`` for a framework estimator).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed.
        """
        self._ensure_latest_job()
        model = self.create_model(role=role, **kwargs)
        model.name = self._get_or_create_name(model_name)
        if enable_network_isolation is not None:
            model._enable_network_isolation = enable_network_isolation
        return model.transformer(
            instance_count,
            instance_type,
            strategy=strategy,
            assemble_with=assemble_with,
            output_path=output_path,
            output_kms_key=output_kms_key,
            accept=accept,
            env=env,
            max_concurrent_transforms=max_concurrent_transforms,
            max_payload=max_payload,
            tags=normalize_tags(tags) or self.tags,
            volume_kms_key=volume_kms_key,
        )

    # -- attach -------------------------------------------------------------------------------------------

    @classmethod
    def attach(
        cls, training_job_name: str, sagemaker_session: Session | None = None, model_channel_name: str = "model"
    ) -> Self:
        """An estimator for an existing job, after waiting for the job to end (as SageMaker).

        Raises:
            NotFoundError: No job has this name.
            UnexpectedStatusError: The job ended Failed.
        """
        session = sagemaker_session if sagemaker_session is not None else Session()
        # The owner's re-fit needs the real values of secret-looking variables (masked for anyone else).
        details = AdminClient(session.client).describe_training_job(training_job_name, show_secrets=True)
        init_params = cls._prepare_init_params_from_job_description(details, model_channel_name)
        estimator = cls(sagemaker_session=session, **init_params)
        estimator.latest_training_job = TrainingJob(session, training_job_name)
        estimator.jobs.append(estimator.latest_training_job)
        estimator._current_job_name = training_job_name
        estimator.latest_training_job.wait(logs="None")
        return estimator

    @classmethod
    def _prepare_init_params_from_job_description(
        cls, job_details: Mapping[str, Any], model_channel_name: str | None = None
    ) -> dict[str, Any]:
        """Constructor arguments that recreate the estimator of a described job."""
        resource = job_details["ResourceConfig"]
        algorithm = job_details["AlgorithmSpecification"]
        stopping = job_details["StoppingCondition"]
        output = job_details["OutputDataConfig"]
        params: dict[str, Any] = {
            "role": job_details["RoleArn"],
            "volume_size": resource.get("VolumeSizeInGB", 30),
            "max_run": stopping["MaxRuntimeInSeconds"],
            "input_mode": algorithm["TrainingInputMode"],
            "base_job_name": base_from_name(job_details["TrainingJobName"]),
            "output_path": output["S3OutputPath"],
            "output_kms_key": output.get("KmsKeyId") or None,
            "hyperparameters": {
                k: v for k, v in (job_details.get("HyperParameters") or {}).items() if k not in SCRIPT_MODE_PARAMS
            },
        }
        if resource.get("InstanceGroups"):
            params["instance_groups"] = resource["InstanceGroups"]
        else:
            params["instance_count"] = resource["InstanceCount"]
            params["instance_type"] = resource["InstanceType"]
        optional = {
            "keep_alive_period_in_seconds": resource.get("KeepAlivePeriodInSeconds"),
            "volume_kms_key": resource.get("VolumeKmsKeyId"),
            "image_uri": algorithm.get("TrainingImage"),
            "metric_definitions": algorithm.get("MetricDefinitions") or None,
            "container_entry_point": algorithm.get("ContainerEntrypoint"),
            "container_arguments": algorithm.get("ContainerArguments"),
            "enable_network_isolation": job_details.get("EnableNetworkIsolation"),
            "encrypt_inter_container_traffic": job_details.get("EnableInterContainerTrafficEncryption"),
            "environment": job_details.get("Environment") or None,
            "tags": job_details.get("Tags") or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if output.get("CompressionType") == "NONE":
            params["disable_output_compression"] = True
        vpc = job_details.get("VpcConfig") or {}
        if vpc.get("Subnets") and vpc.get("SecurityGroupIds"):
            params["subnets"] = vpc["Subnets"]
            params["security_group_ids"] = vpc["SecurityGroupIds"]
        for channel in job_details.get("InputDataConfig") or []:
            if model_channel_name and channel.get("ChannelName") == model_channel_name:
                params["model_channel_name"] = model_channel_name
                params["model_uri"] = channel["DataSource"]["S3DataSource"]["S3Uri"]
        checkpoint = job_details.get("CheckpointConfig")
        if checkpoint:
            params["checkpoint_s3_uri"] = checkpoint.get("S3Uri")
            params["checkpoint_local_path"] = checkpoint.get("LocalPath")
        if job_details.get("EnableManagedSpotTraining"):
            params["use_spot_instances"] = True
            params["max_wait"] = stopping.get("MaxWaitTimeInSeconds")
        retry = job_details.get("RetryStrategy")
        if retry:
            params["max_retry_attempts"] = retry.get("MaximumRetryAttempts")
        return params


class Estimator(EstimatorBase):
    """A training job that runs an image (``sagemaker.estimator.Estimator``).

    Hyperparameters are sent as ``str(value)`` (``True`` -> ``"True"``), or JSON-encoded when
    ``source_dir`` is set. Every keyword of :class:`EstimatorBase` is accepted.

    Args:
        image_uri: The training image (``AlgorithmSpecification.TrainingImage``).
        role: Role ARN; default :func:`trainforge.get_execution_role`.
        instance_count: Number of hosts.
        instance_type: ``ml.*`` instance type or ``local``.
        hyperparameters: Hyperparameters of the job.
        **kwargs: The other parameters of :class:`EstimatorBase`.
    """

    def __init__(
        self,
        image_uri: str | None = None,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        *,
        hyperparameters: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = pop_renamed_kwargs(dict(kwargs))
        image_uri = image_uri or kwargs.pop("image_uri", None)
        if not image_uri:
            raise ValidationError("image_uri: required (the training image to run)", field="image_uri")
        self.image_uri = image_uri
        renamed_count = kwargs.pop("instance_count", None)
        renamed_type = kwargs.pop("instance_type", None)
        super().__init__(
            role,
            instance_count if instance_count is not None else renamed_count,
            instance_type if instance_type is not None else renamed_type,
            hyperparameters=hyperparameters,
            **kwargs,
        )

    def training_image_uri(self) -> str:
        """The image given at construction."""
        return self.image_uri

    def create_model(
        self,
        role: str | None = None,
        image_uri: str | None = None,
        predictor_cls: Any = None,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        **kwargs: Any,
    ) -> Model:
        """A :class:`~trainforge.model.Model` serving the latest job's model with the training image (or
        ``image_uri``), as SageMaker's ``Estimator.create_model``; its predictor uses ``serializer`` and
        ``deserializer``. Other keywords go to ``Model`` (e.g. ``entry_point=`` to serve with a script).

        Raises:
            ValidationError: No job yet (call ``fit()`` first), or the job has not Completed.
        """
        model_data = self._trained_model_data()
        if predictor_cls is None:

            def predictor_cls(endpoint_name: str, session: Session) -> Predictor:
                return Predictor(endpoint_name, session, serializer=serializer, deserializer=deserializer)

        kwargs.setdefault("enable_network_isolation", self.enable_network_isolation())
        model = Model(
            image_uri or self.training_image_uri(),
            model_data,
            role or self.role,
            predictor_cls=predictor_cls,
            sagemaker_session=self.sagemaker_session,
            **kwargs,
        )
        return self._link_model(model)


class Framework(EstimatorBase):
    """Base of framework estimators: run ``entry_point`` from ``source_dir`` in a framework image.

    Every hyperparameter is JSON-encoded (``"abc"`` -> ``'"abc"'``). Subclasses set ``_framework_name``;
    the default image is the catalogue's image for that framework and ``framework_version``
    (:func:`trainforge.spec.images.image_for`; a GPU instance type picks a ``-gpu`` image where one exists).

    Args:
        entry_point: Script to run, relative to ``source_dir`` (or a path when there is no source_dir).
        source_dir: Directory packaged as ``sourcedir.tar.gz`` (every top-level entry).
        hyperparameters: Hyperparameters of the job.
        image_uri: Image to run instead of the framework's default image.
        framework_version: Version of the framework image.
        **kwargs: The other parameters of :class:`EstimatorBase`.

    Raises:
        ValidationError: No ``entry_point``; or no ``image_uri`` and a ``framework_version`` that is
            missing or unknown (the message lists the known versions). Raised at construction, before
            anything is uploaded.
    """

    _framework_name: ClassVar[str] = ""
    _json_hyperparameters: ClassVar[bool] = True

    def __init__(
        self,
        entry_point: str,
        source_dir: str | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        *,
        image_uri: str | None = None,
        framework_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs = pop_renamed_kwargs(dict(kwargs))
        if not entry_point:
            raise ValidationError("entry_point: required (the script to run)", field="entry_point")
        self.image_uri = image_uri
        self.framework_version = framework_version
        super().__init__(entry_point=entry_point, source_dir=source_dir, hyperparameters=hyperparameters, **kwargs)
        if not image_uri:
            self._catalogue_image()

    def _accelerator(self) -> str:
        """``"gpu"`` when the job's (first group's) instance type has GPUs, else ``"cpu"``."""
        instance_type = self.instance_type
        if not instance_type and self.instance_groups:
            first = self.instance_groups[0]
            instance_type = (
                first.get("InstanceType") if isinstance(first, Mapping) else getattr(first, "instance_type", None)
            )
        return images.accelerator_for(instance_type)

    def _catalogue_image(self) -> images.Image:
        """The catalogue image for ``framework_version``; ValidationError naming the known versions."""
        name = self._framework_name
        versions = images.FRAMEWORK_VERSIONS.get(name)
        if versions is None:
            raise ValidationError(
                f"image_uri: required ({type(self).__name__} has no framework image)", field="image_uri"
            )
        if self.framework_version is None or self.framework_version not in versions:
            what = (
                "required" if self.framework_version is None else f"unknown {name} version {self.framework_version!r}"
            )
            raise ValidationError(
                f"framework_version: {what}; known versions: {', '.join(versions)} (or pass image_uri)",
                field="framework_version",
                details={"known_versions": list(versions)},
            )
        return images.image_for(name, self.framework_version, accelerator=self._accelerator())

    def training_image_uri(self) -> str:
        """``image_uri`` if given, else the catalogue image for the framework and ``framework_version``."""
        if self.image_uri:
            return self.image_uri
        return self._catalogue_image().name

    def _model_kwargs(
        self,
        role: str | None,
        entry_point: str | None,
        source_dir: str | None,
        dependencies: Sequence[str] | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """The arguments a framework model of the latest job shares across frameworks.

        The model serves with the training ``entry_point`` and ``source_dir`` unless others are given (an
        ``entry_point`` alone is looked up in the training ``source_dir``); a ``source_dir`` that no longer exists
        locally is replaced by the uploaded code archive.

        Raises:
            ValidationError: No job yet, or the job has not Completed.
        """
        model_source = self.source_dir
        if model_source and not model_source.startswith("s3://") and not Path(model_source).is_dir():
            model_source = self.uploaded_code.s3_prefix if self.uploaded_code else None
        params: dict[str, Any] = {
            "model_data": self._trained_model_data(),
            "role": role or self.role,
            "entry_point": entry_point or self.entry_point,
            "source_dir": source_dir if source_dir is not None else model_source,
            "image_uri": kwargs.pop("image_uri", self.image_uri),
            "framework_version": self.framework_version,
            "container_log_level": self.container_log_level,
            "code_location": self.code_location,
            "sagemaker_session": self.sagemaker_session,
            "dependencies": dependencies if dependencies is not None else self.dependencies,
        }
        kwargs.setdefault("enable_network_isolation", self.enable_network_isolation())
        return {**params, **kwargs}

    @classmethod
    def _framework_version_from_image(cls, image: str) -> str | None:
        known = images.CATALOGUE.get(image)
        return known.version if known is not None and known.framework == cls._framework_name else None

    @classmethod
    def _prepare_init_params_from_job_description(
        cls, job_details: Mapping[str, Any], model_channel_name: str | None = None
    ) -> dict[str, Any]:
        """As :class:`EstimatorBase`, plus entry point, code location and decoded hyperparameters."""
        params = super()._prepare_init_params_from_job_description(job_details, model_channel_name)
        raw = job_details.get("HyperParameters") or {}
        if SCRIPT_PARAM_NAME in raw:
            params["entry_point"] = _json_or_raw(raw[SCRIPT_PARAM_NAME])
        if DIR_PARAM_NAME in raw:
            params["source_dir"] = _json_or_raw(raw[DIR_PARAM_NAME])
        if CONTAINER_LOG_LEVEL_PARAM_NAME in raw:
            params["container_log_level"] = _json_or_raw(raw[CONTAINER_LOG_LEVEL_PARAM_NAME])
        decoded: dict[str, Any] = {}
        for key, value in params["hyperparameters"].items():
            decoded[key] = value.strip('"') if key == "_tuning_objective_metric" else _json_or_raw(value)
        params["hyperparameters"] = decoded
        image = params.get("image_uri")
        version = cls._framework_version_from_image(image) if image else None
        if version:
            params.pop("image_uri")
            params["framework_version"] = version
        return params


__all__ = [
    "Estimator",
    "EstimatorBase",
    "Framework",
    "TrainingJob",
    "json_encode_hyperparameters",
    "str_encode_hyperparameters",
]
