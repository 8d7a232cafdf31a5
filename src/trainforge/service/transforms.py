"""Use cases on batch transform jobs: create, describe, list, stop, read logs. Every write goes via the store.

Every use case acts for a :class:`Principal`: a user sees and acts on their own transform jobs only (an admin on
all), and another user's job is answered exactly like a job that does not exist. A job runs with its model's role
and on a copy of its model's description taken at create, so deleting the model later does not break it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, ValidationError
from trainforge.scheduler.instances import Machine, hosting_instance_type
from trainforge.service.models import describe_model, visible
from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.settings import Settings
from trainforge.spec.endpoints import model_not_found_message
from trainforge.spec.transforms import TransformJobStatus, parse_create_transform_request
from trainforge.store.inference import ModelStore
from trainforge.store.inference_logs import InferenceLogStore, transform_log_owner
from trainforge.store.records import LogRecord
from trainforge.store.transforms import (
    MAX_LIST,
    NewTransformJob,
    TransformJobRecord,
    TransformJobStore,
    transform_job_not_found,
)

T = TransformJobStatus
_RESOURCES_FIELD = "TransformResources.InstanceType"
# DescribeTransformJob echoes these request fields as they were accepted.
_ECHO_FIELDS = (
    "ModelName",
    "MaxConcurrentTransforms",
    "ModelClientConfig",
    "MaxPayloadInMB",
    "BatchStrategy",
    "Environment",
    "TransformInput",
    "TransformOutput",
    "DataCaptureConfig",
    "TransformResources",
    "DataProcessing",
    "ExperimentConfig",
)


def transform_job_arn(region: str, account_id: str, name: str) -> str:
    """The ARN SageMaker would give a transform job of this name."""
    return f"arn:aws:sagemaker:{region}:{account_id}:transform-job/{name.lower()}"


def owner_of(job: TransformJobRecord) -> str:
    """The user a transform job belongs to."""
    return job.created_by or ADMIN_USER


def describe(job: TransformJobRecord) -> dict[str, Any]:
    """The DescribeTransformJob response for ``job``, plus trainforge's ``TrainingJobName`` (where its model came
    from, when it did) and ``CreatedBy``."""
    spec = job.spec
    out: dict[str, Any] = {
        "TransformJobName": job.name,
        "TransformJobArn": job.arn,
        "TransformJobStatus": job.status.value,
    }
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason
    for key in _ECHO_FIELDS:
        if key in spec:
            out[key] = spec[key]
    out["CreationTime"] = job.creation_time
    if job.transform_start_time is not None:
        out["TransformStartTime"] = job.transform_start_time
    if job.transform_end_time is not None:
        out["TransformEndTime"] = job.transform_end_time
    out["LastModifiedTime"] = job.last_modified_time
    training_job = job.model_spec.get("TrainingJobName")
    if training_job:
        out["TrainingJobName"] = training_job
    if spec.get("Tags"):
        out["Tags"] = spec["Tags"]
    out["CreatedBy"] = {"UserProfileName": owner_of(job)}
    return out


def summary(job: TransformJobRecord) -> dict[str, Any]:
    """One ``TransformJobSummaries`` entry of ListTransformJobs."""
    out: dict[str, Any] = {
        "TransformJobName": job.name,
        "TransformJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified_time,
        "TransformJobStatus": job.status.value,
    }
    if job.transform_end_time is not None:
        out["TransformEndTime"] = job.transform_end_time
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason
    return out


@dataclass
class TransformService:
    """The server's transform-job use cases; routes call exactly one method each."""

    store: TransformJobStore
    logs_store: InferenceLogStore
    settings: Settings
    machine: Machine
    backend: Backend
    wake: threading.Event = field(default_factory=threading.Event)

    def owned(self, name: str, principal: Principal) -> TransformJobRecord:
        """The job called ``name`` if ``principal`` may see it; otherwise the very error of an unknown job."""
        job = self.store.get(name)
        if not (principal.admin or owner_of(job) == principal.user):
            raise transform_job_not_found(name)
        return job

    def _model(self, name: str, principal: Principal) -> tuple[dict[str, Any], str | None]:
        """DescribeModel of the model ``name`` and its role, if ``principal`` may use it (their own, or any for an
        admin); otherwise the ValidationError of an unknown model."""
        model = ModelStore(self.store.engine).find(name)
        if model is None or not visible(principal, model.created_by):
            raise ValidationError(
                f"ModelName: {model_not_found_message(name)} Create it first (CreateModel, or "
                "Estimator.create_model()), or check the name with 'trainforge models list'",
                field="ModelName",
            )
        return describe_model(model), model.role_json

    def _check_runnable(self, instance_type: str, count: int) -> None:
        """A known instance type that this backend can run ``count`` of, or a ValidationError naming
        ``TransformResources.InstanceType``."""
        instance = hosting_instance_type(instance_type, self.machine, field=_RESOURCES_FIELD)
        try:
            self.backend.check_fits(instance, count)
        except (ValidationError, CapacityError) as exc:
            message = exc.message.removeprefix("ResourceConfig.InstanceType: ")
            message = message.replace("ResourceConfig.InstanceCount", "TransformResources.InstanceCount")
            raise ValidationError(f"{_RESOURCES_FIELD}: {message}", field=_RESOURCES_FIELD) from None

    def create(self, body: Any, principal: Principal) -> dict[str, Any]:
        """CreateTransformJob: validate ``body`` and record the job of ``principal`` as ``InProgress``.

        Raises:
            ValidationError: A broken field, an unknown (or another user's) model, an instance type this
                deployment cannot run; each names the field and the fix.
            ConflictError: The name is taken (even by a finished job).
        """
        request = parse_create_transform_request(body)
        resources = request.TransformResources
        self._check_runnable(resources.InstanceType, resources.InstanceCount)
        model_spec, role_json = self._model(request.ModelName, principal)
        new = NewTransformJob(
            name=request.TransformJobName,
            arn=transform_job_arn(self.settings.region, self.settings.account_id, request.TransformJobName),
            spec_json=json.dumps(request.to_wire(), separators=(",", ":")),
            model_spec_json=json.dumps(model_spec, separators=(",", ":")),
            created_by=principal.user,
            role_json=role_json,
        )
        job = self.store.create(new)
        self.wake.set()
        return {"TransformJobArn": job.arn}

    def describe(self, name: str, principal: Principal) -> dict[str, Any]:
        """DescribeTransformJob; ``NotFoundError`` if unknown or not the caller's."""
        return describe(self.owned(name, principal))

    def list_jobs(
        self,
        principal: Principal,
        *,
        status_equals: str | None = None,
        name_contains: str | None = None,
        max_results: int = MAX_LIST,
    ) -> dict[str, Any]:
        """ListTransformJobs: the caller's jobs (everyone's for an admin), newest first."""
        if status_equals and status_equals not in {s.value for s in T}:
            raise ValidationError(
                f"StatusEquals: {status_equals!r} is not one of {', '.join(s.value for s in T)}",
                field="StatusEquals",
            )
        if not 1 <= max_results <= MAX_LIST:
            raise ValidationError(f"MaxResults: must be between 1 and {MAX_LIST}", field="MaxResults")
        jobs = self.store.list_jobs(
            status_equals=status_equals,
            name_contains=name_contains,
            created_by=None if principal.admin else principal.user,
            max_results=max_results,
        )
        return {"TransformJobSummaries": [summary(j) for j in jobs]}

    def stop(self, name: str, principal: Principal) -> dict[str, Any]:
        """StopTransformJob: a launched job goes ``Stopping`` (the scheduler cancels its instances, whose heartbeats
        say so), one not launched yet goes straight to ``Stopped``; stopping a ``Stopping`` job again is a no-op.

        Raises:
            ValidationError: The job has already ended.
        """
        job = self.owned(name, principal)
        if job.status == T.STOPPING:
            return {}
        if job.terminal:
            raise ValidationError(
                f"TransformJobName: transform job {name!r} is already {job.status.value}; only InProgress jobs can "
                "be stopped",
                field="TransformJobName",
            )
        try:
            self.store.transition(
                name,
                T.STOPPED,
                expected_from={T.IN_PROGRESS},
                conditions={"backend_handle": None},
                set_fields={"stop_requested": "Stopped"},
            )
        except ConflictError:
            # Launched (or ended) between our read and the update: stop the launched job.
            try:
                self.store.transition(
                    name, T.STOPPING, expected_from={T.IN_PROGRESS}, set_fields={"stop_requested": "Stopped"}
                )
            except ConflictError:
                job = self.store.get(name)
                if job.status != T.STOPPING and not job.terminal:
                    raise
        self.wake.set()
        return {}

    def logs(
        self, name: str, principal: Principal, *, cursor: int, limit: int, host: str | None
    ) -> tuple[TransformJobRecord, list[LogRecord]]:
        """The job and its instances' lines after ``cursor`` (at most ``limit``, ``host``'s only when given), in
        arrival order; ``NotFoundError`` if not the caller's."""
        if not 1 <= limit <= 10000:
            raise ValidationError("limit: must be between 1 and 10000", field="limit")
        if cursor < 0:
            raise ValidationError("cursor: must be >= 0", field="cursor")
        job = self.owned(name, principal)
        return job, self.logs_store.read(transform_log_owner(name), cursor=cursor, limit=limit, host=host)
