"""Use cases on training jobs: submit, describe, list, stop, read logs. Every write goes via the store."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, ValidationError
from trainforge.scheduler.instances import Machine, lookup
from trainforge.service.describe import describe, summary
from trainforge.settings import Settings
from trainforge.spec.algorithms import with_metric_definitions
from trainforge.spec.contract import MODEL_ARCHIVE, job_arn, model_artifacts_uri
from trainforge.spec.images import job_image
from trainforge.spec.job import CreateTrainingJobRequest
from trainforge.spec.metrics import SYSTEM_PREFIX
from trainforge.spec.status import SecondaryStatus, TrainingJobStatus
from trainforge.store.jobs import JobStore, ListQuery, NewJob
from trainforge.store.records import JobRecord, LogRecord

S = SecondaryStatus


@dataclass
class JobService:
    """The server's use cases; routes call exactly one method each."""

    store: JobStore
    settings: Settings
    machine: Machine
    backend: Backend
    wake: threading.Event = field(default_factory=threading.Event)

    def check_runnable(self, request: CreateTrainingJobRequest) -> None:
        """Reject what this deployment can never run, naming the field and the fix."""
        rc = request.ResourceConfig
        if rc.InstanceGroups:
            raise ValidationError(
                "ResourceConfig.InstanceGroups: heterogeneous clusters are not available on the local backend; "
                "set InstanceType and InstanceCount instead",
                field="ResourceConfig.InstanceGroups",
            )
        instance = lookup(request.instance_type, self.machine)
        self.backend.check_fits(instance, request.instance_count)
        algo = request.AlgorithmSpecification
        job_image(algo.TrainingImage, algo.AlgorithmName)  # an unknown image is a 400 listing the known ones
        modes = {request.AlgorithmSpecification.TrainingInputMode}
        for ch in request.InputDataConfig or []:
            if ch.InputMode:
                modes.add(ch.InputMode)
        if "Pipe" in modes:
            raise ValidationError(
                "AlgorithmSpecification.TrainingInputMode: Pipe mode is not available yet; use File or FastFile",
                field="AlgorithmSpecification.TrainingInputMode",
            )

    def submit(self, request: CreateTrainingJobRequest) -> dict[str, Any]:
        """Validate and record a job as ``InProgress/Starting``; retry-safe for an identical spec."""
        try:
            self.check_runnable(request)
        except CapacityError as exc:
            raise ValidationError(exc.message, field="ResourceConfig.InstanceType") from None
        wire = with_metric_definitions(request, request.to_wire())
        arn = job_arn(self.settings.region, self.settings.account_id, request.TrainingJobName)
        new = NewJob(
            name=request.TrainingJobName,
            arn=arn,
            spec_json=json.dumps(wire, separators=(",", ":")),
            instance_type=request.instance_type,
            instance_count=request.instance_count,
            model_artifacts=model_artifacts_uri(
                request.OutputDataConfig.S3OutputPath,
                request.TrainingJobName,
                "model/" if request.OutputDataConfig.CompressionType == "NONE" else MODEL_ARCHIVE,
            ),
        )
        job, _created = self.store.create(new)
        self.wake.set()
        return {"TrainingJobArn": job.arn}

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeTrainingJob for ``name``; ``NotFoundError`` if unknown."""
        job = self.store.get(name)
        return describe(job, self.store.last_metric_points(job.id, exclude_prefix=SYSTEM_PREFIX))

    def list_jobs(self, query: ListQuery) -> dict[str, Any]:
        """ListTrainingJobs: one page of summaries and the next token."""
        if query.status_equals and query.status_equals not in {s.value for s in TrainingJobStatus}:
            raise ValidationError(
                f"StatusEquals: {query.status_equals!r} is not one of {', '.join(s.value for s in TrainingJobStatus)}",
                field="StatusEquals",
            )
        jobs, token = self.store.list_jobs(query)
        out: dict[str, Any] = {"TrainingJobSummaries": [summary(j) for j in jobs]}
        if token:
            out["NextToken"] = token
        return out

    def stop(self, name: str) -> dict[str, Any]:
        """StopTrainingJob: a launched job goes ``Stopping`` (the scheduler signals it), one not yet launched
        goes straight to ``Stopped``; stopping a Stopping job again is a no-op; a finished one is an error."""
        job = self.store.get(name)
        if job.secondary_status == S.STOPPING:
            return {}
        if job.terminal:
            raise ValidationError(
                f"TrainingJobName: training job {name!r} is already {job.status.value}; only InProgress jobs can "
                "be stopped",
                field="TrainingJobName",
            )
        try:
            if job.backend_handle is None:
                self.store.transition(
                    name,
                    S.STOPPED,
                    "Training job stopped before it started",
                    expected_from={S.STARTING, S.PENDING},
                    conditions={"backend_handle": None},
                    set_fields={"stop_requested": "Stopped"},
                )
            else:
                self.store.transition(
                    name, S.STOPPING, "Stopping the training job", set_fields={"stop_requested": "Stopped"}
                )
        except ConflictError:
            # Launched (or finished) between our read and the update: try the launched path once more.
            job = self.store.get(name)
            if not job.terminal and job.secondary_status != S.STOPPING:
                self.store.transition(
                    name, S.STOPPING, "Stopping the training job", set_fields={"stop_requested": "Stopped"}
                )
        self.wake.set()
        return {}

    def logs(self, name: str, *, cursor: int, limit: int, host: str | None) -> tuple[JobRecord, list[LogRecord]]:
        """The job and its lines after ``cursor`` (at most ``limit``)."""
        if limit < 1 or limit > 10000:
            raise ValidationError("limit: must be between 1 and 10000", field="limit")
        if cursor < 0:
            raise ValidationError("cursor: must be >= 0", field="cursor")
        job = self.store.get(name)
        return job, self.store.read_logs(job.id, cursor=cursor, limit=limit, host=host)
