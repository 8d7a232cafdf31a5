"""Use cases on training jobs: submit, describe, list, stop, read logs. Every write goes via the store.

Every use case acts for a :class:`Principal`: a user sees and acts on their own jobs only (an admin on all), and
another user's job is answered exactly like a job that does not exist.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, NotFoundError, ValidationError
from trainforge.runtime.container import ENGINE_FIX, fresh_engine_probe
from trainforge.scheduler.instances import Machine, lookup
from trainforge.service.agent import NO_MODEL_ARTIFACTS, NOT_STOPPING
from trainforge.service.costs import PriceTable
from trainforge.service.describe import describe, summary
from trainforge.service.principal import Principal, may_see, owner_of
from trainforge.settings import Settings
from trainforge.spec.algorithms import with_metric_definitions
from trainforge.spec.contract import MODEL_ARCHIVE, job_arn, model_artifacts_uri
from trainforge.spec.images import check_container_reference, is_container_image, job_image
from trainforge.spec.job import CreateTrainingJobRequest
from trainforge.spec.lineage import job_lineage
from trainforge.spec.metrics import SYSTEM_PREFIX
from trainforge.spec.status import SecondaryStatus, TrainingJobStatus
from trainforge.store.jobs import JobStore, ListQuery, NewJob, job_not_found
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
    # Maps (submitter, RoleArn) to the role the job runs with ({"name", "read", "write"}) or None; its
    # ValidationError/PermissionDeniedError reach the caller as they are.
    resolve_role: Callable[[Principal, str], dict[str, Any] | None] | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    """The server's price table: an ended job's ``Cost`` in describe and list (:mod:`trainforge.service.costs`)."""

    def owned(self, name: str, principal: Principal) -> JobRecord:
        """The job called ``name`` if ``principal`` may see it; otherwise the very error of an unknown job."""
        job = self.store.get(name)
        if not may_see(principal, job):
            raise job_not_found(name)
        return job

    def check_runnable(self, request: CreateTrainingJobRequest) -> None:
        """Reject what this deployment can never run, naming the field and the fix."""
        rc = request.ResourceConfig
        if rc.InstanceGroups:
            raise ValidationError(
                "ResourceConfig.InstanceGroups: heterogeneous clusters are not available on the local backend; "
                "set InstanceType and InstanceCount instead",
                field="ResourceConfig.InstanceGroups",
            )
        if request.EnableNetworkIsolation and request.instance_count > 1:
            raise ValidationError(
                "EnableNetworkIsolation: the hosts of an isolated job have no network to rendezvous over; "
                "set ResourceConfig.InstanceCount to 1 or turn network isolation off",
                field="EnableNetworkIsolation",
            )
        instance = lookup(request.instance_type, self.machine)
        self.backend.check_fits(instance, request.instance_count)
        algo = request.AlgorithmSpecification
        if is_container_image(algo.TrainingImage):
            assert algo.TrainingImage is not None
            self.check_container_image(algo.TrainingImage)
        else:
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

    def check_container_image(self, image: str) -> None:
        """Reject a container image this deployment cannot run: a malformed reference, containers turned off, or
        (``TRAINFORGE_CONTAINERS=docker`` with jobs on this machine) no engine answering here."""
        field = "AlgorithmSpecification.TrainingImage"
        if self.settings.containers == "off":
            raise ValidationError(
                f"{field}: {image!r} is a container image, and this server runs none (TRAINFORGE_CONTAINERS=off); "
                "use a catalogue image (trainforge.image_uris.retrieve(...)), or start the server with "
                "TRAINFORGE_CONTAINERS=auto where a Docker engine runs",
                field=field,
            )
        check_container_reference(image, field=field)
        if self.settings.containers == "docker" and self.backend.uses_local_capacity:
            engine = fresh_engine_probe()
            if not engine.available:
                raise ValidationError(
                    f"{field}: {image!r} is a container image, and no container engine answers on this server "
                    f"({engine.reason}); {ENGINE_FIX}",
                    field=field,
                )

    def check_unowned_or_own(self, name: str, principal: Principal) -> None:
        """Pass when no job is called ``name`` yet or it is ``principal``'s to see; else the unknown-job error."""
        try:
            job = self.store.get(name)
        except NotFoundError:
            return
        if not may_see(principal, job):
            raise job_not_found(name)

    def submit(self, request: CreateTrainingJobRequest, principal: Principal) -> dict[str, Any]:
        """Validate and record a job of ``principal`` as ``InProgress/Starting``; retry-safe for an identical spec."""
        try:
            self.check_runnable(request)
        except CapacityError as exc:
            raise ValidationError(exc.message, field="ResourceConfig.InstanceType") from None
        role = self.resolve_role(principal, request.RoleArn) if self.resolve_role is not None else None
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
            created_by=principal.user,
            role_json=None if role is None else json.dumps(role),
        )
        job, _created = self.store.create(new)
        self.wake.set()
        return {"TrainingJobArn": job.arn}

    def describe(self, name: str, principal: Principal, *, show_secrets: bool = False) -> dict[str, Any]:
        """DescribeTrainingJob for ``name``; ``NotFoundError`` if unknown or not the caller's.

        Secret-looking ``Environment`` and ``HyperParameters`` values are ``****`` unless ``show_secrets`` is asked
        by the job's owner (for anyone else, admins included, they stay masked).
        """
        job = self.owned(name, principal)
        reveal = show_secrets and owner_of(job) == principal.user
        points = self.store.last_metric_points(job.id, exclude_prefix=SYSTEM_PREFIX)
        lineage = job_lineage(self.store.host_lineages(job.id))
        return describe(job, points, show_secrets=reveal, lineage=lineage, prices=self.prices)

    def list_jobs(self, query: ListQuery, principal: Principal) -> dict[str, Any]:
        """ListTrainingJobs: one page of the caller's summaries (everyone's for an admin) and the next token."""
        if query.status_equals and query.status_equals not in {s.value for s in TrainingJobStatus}:
            raise ValidationError(
                f"StatusEquals: {query.status_equals!r} is not one of {', '.join(s.value for s in TrainingJobStatus)}",
                field="StatusEquals",
            )
        if not principal.admin:
            query = replace(query, created_by=principal.user)
        jobs, token = self.store.list_jobs(query)
        out: dict[str, Any] = {"TrainingJobSummaries": [summary(j, self.prices) for j in jobs]}
        if token:
            out["NextToken"] = token
        return out

    def stop(self, name: str, principal: Principal) -> dict[str, Any]:
        """StopTrainingJob: a launched job goes ``Stopping`` (the scheduler signals it), one not yet launched (or
        ``Restarting`` between two attempts) goes straight to ``Stopped``; stopping a Stopping job again is a no-op;
        a finished one is an error."""
        job = self.owned(name, principal)
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
                    expected_from={S.STARTING, S.PENDING, S.RESTARTING},
                    conditions={"backend_handle": None},
                    # Nothing ran, so no model was stored (or ever will be): no ModelArtifacts, as on SageMaker.
                    set_fields={"stop_requested": "Stopped", "model_artifacts": NO_MODEL_ARTIFACTS},
                )
            else:
                self._request_stop(name)
        except ConflictError:
            # Launched (or finished, or stopped by another call) between our read and the update: once more.
            job = self.store.get(name)
            if not job.terminal and job.secondary_status != S.STOPPING:
                self._request_stop(name)
        self.wake.set()
        return {}

    def _request_stop(self, name: str) -> None:
        """``Stopping`` with the stop request, only from a status other than Stopping: two stops that race
        record one ``Stopping`` transition (the loser gets a ConflictError and finds the job Stopping)."""
        try:
            self.store.transition(
                name,
                S.STOPPING,
                "Stopping the training job",
                expected_from=NOT_STOPPING,
                set_fields={"stop_requested": "Stopped"},
            )
        except ConflictError:
            if self.store.get(name).secondary_status != S.STOPPING:
                raise

    def logs(
        self,
        name: str,
        principal: Principal,
        *,
        cursor: int,
        limit: int,
        host: str | None,
        attempt: int | None = None,
    ) -> tuple[JobRecord, list[LogRecord]]:
        """The job and its lines after ``cursor`` (at most ``limit``), of one ``attempt`` when given (None: every
        attempt's, in the order they ran); ``NotFoundError`` if not the caller's."""
        if limit < 1 or limit > 10000:
            raise ValidationError("limit: must be between 1 and 10000", field="limit")
        if cursor < 0:
            raise ValidationError("cursor: must be >= 0", field="cursor")
        if attempt is not None and attempt < 1:
            raise ValidationError("attempt: must be 1 or more (the job's first run is attempt 1)", field="attempt")
        job = self.owned(name, principal)
        return job, self.store.read_logs(job.id, cursor=cursor, limit=limit, host=host, attempt=attempt)
