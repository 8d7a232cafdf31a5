"""Use cases of a job's supervisors: status reports, log lines, heartbeats, metric points."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import AuthError, ConflictError, ValidationError
from trainforge.service.metric_extraction import ExtractorCache
from trainforge.spec.contract import FAILURE_REASON_MAX
from trainforge.spec.hosts import job_move
from trainforge.spec.lineage import check_lineage
from trainforge.spec.metrics import MAX_NAME_LENGTH, metric_value
from trainforge.spec.status import TERMINAL, SecondaryStatus
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

S = SecondaryStatus
_STOP_ENDINGS = {S.STOPPED, S.MAX_RUNTIME_EXCEEDED, S.MAX_WAIT_TIME_EXCEEDED}
_BETWEEN_ATTEMPTS = {S.INTERRUPTED, S.RESTARTING}  # a host was lost; the attempt's hosts are being cleared
# ``jobs.model_artifacts`` of a job that ended without storing a model: its description has no ModelArtifacts.
NO_MODEL_ARTIFACTS = ""
# Every status but Stopping: the CAS guard of a move into Stopping, so that a stop is recorded once.
NOT_STOPPING = frozenset(S) - {S.STOPPING}


def hash_token(token: str) -> str:
    """How agent tokens are kept in the store (never in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class AgentService:
    """What supervisors may do, each call scoped to the one job (and attempt) their token was issued for.

    Each attempt of a job gets its own agent token, so a supervisor of an earlier attempt is refused (401) once its
    job was relaunched; between attempts (``Interrupted``/``Restarting``) its status reports are refused (409) and
    its heartbeats answered with that status, which tells it to stop. Its lines and metric points are stored under
    the attempt its token belongs to, never under a later one.
    """

    store: JobStore
    extractors: ExtractorCache = field(default_factory=ExtractorCache)

    def authorize(self, name: str, token: str | None) -> JobRecord:
        """The job if ``token`` is its agent token; :class:`AuthError` otherwise (also for unknown jobs)."""
        if not token:
            raise AuthError("missing agent token")
        try:
            job = self.store.get(name)
        except Exception:
            raise AuthError("agent token is not valid for this job") from None
        if not job.agent_token_hash or not hmac.compare_digest(job.agent_token_hash, hash_token(token)):
            raise AuthError("agent token is not valid for this job")
        return job

    def _reply(self, job: JobRecord) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "TrainingJobStatus": job.status.value,
            "SecondaryStatus": job.secondary_status.value,
            "stop_requested": bool(job.stop_requested),
            "attempt": job.attempt,
        }
        if job.instance_count > 1:
            reply["hosts"] = {h: r.status.value for h, r in self.store.host_states(job.id).items()}
        return reply

    def report_status(
        self,
        job: JobRecord,
        *,
        status: str,
        message: str | None,
        failure_reason: str | None,
        host: str = "algo-1",
        model_stored: bool | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply one host's status report: record the host's own status, then move the job through the
        transition table to what its hosts' statuses make it (:mod:`trainforge.spec.hosts`).

        ``lineage`` (a supervisor sends it with ``Training`` and with its final report) is stored as what this
        host ran on (:mod:`trainforge.spec.lineage`); a malformed one is a :class:`ValidationError` naming it.

        ``model_stored=False`` on a report that ends the job other than Completed says no model was stored: the
        job then has no ``ModelArtifacts`` (SageMaker records none for a Failed or Stopped job without a model).

        While a stop is pending, in-progress reports are acknowledged without a change (the reply says
        ``stop_requested``); a stop ending reached without a prior ``Stopping`` passes through it.
        Illegal changes (e.g. the job is already terminal) raise :class:`ConflictError`.
        """
        try:
            reported = SecondaryStatus(status)
        except ValueError:
            raise ValidationError(f"status: {status!r} is not a SecondaryStatus", field="status") from None
        if failure_reason is not None:
            failure_reason = failure_reason[:FAILURE_REASON_MAX]
        lineage_json = None if lineage is None else json.dumps(check_lineage(lineage), separators=(",", ":"))
        if job.terminal or job.secondary_status in _BETWEEN_ATTEMPTS:
            raise ConflictError(
                f"training job {job.name!r} is {job.secondary_status.value}; it cannot move to {reported.value}",
                details={"current": job.secondary_status.value, "requested": reported.value, "attempt": job.attempt},
            )
        hosts = self.store.record_host(
            job.id, host, reported, message, failure_reason, attempt=job.attempt, lineage=lineage_json
        )
        for _attempt in range(3):
            move = job_move(
                host=host,
                reported=reported,
                message=message,
                failure_reason=failure_reason,
                hosts={h: r.status for h, r in hosts.items()},
                count=job.instance_count,
                current=job.secondary_status,
            )
            if move.status is None:
                return self._reply(job)
            try:
                return self._apply(
                    job,
                    move.status,
                    move.message,
                    move.failure_reason,
                    single=job.instance_count <= 1,
                    no_model=model_stored is False,
                )
            except ConflictError:
                if job.instance_count <= 1:
                    raise
                attempt = job.attempt
                job = self.store.get(job.name)  # another host's report moved the job meanwhile: decide again
                if job.terminal or job.attempt != attempt or job.secondary_status in _BETWEEN_ATTEMPTS:
                    raise
                hosts = self.store.host_states(job.id)
        return self._reply(self.store.get(job.name))

    def _apply(
        self,
        job: JobRecord,
        target: SecondaryStatus,
        message: str | None,
        failure_reason: str | None,
        *,
        single: bool,
        no_model: bool = False,
    ) -> dict[str, Any]:
        if job.secondary_status == S.STOPPING and target not in TERMINAL:
            return self._reply(job)  # a stop is pending: progress, and a second Stopping, change nothing
        same_attempt = {"attempt": job.attempt}  # a retry that began meanwhile makes this report stale
        if target == S.STOPPING:
            return self._reply(self._enter_stopping(job, message, same_attempt))
        if target in _STOP_ENDINGS and job.secondary_status not in (S.STOPPING, S.STARTING, S.PENDING):
            job = self._enter_stopping(job, message, same_attempt)
        expected = None if single else {job.secondary_status}
        without_model = no_model and target in TERMINAL and target is not S.COMPLETED
        job = self.store.transition(
            job.name,
            target,
            message,
            failure_reason=failure_reason,
            expected_from=expected,
            conditions=same_attempt,
            set_fields={"model_artifacts": NO_MODEL_ARTIFACTS} if without_model else None,
        )
        return self._reply(job)

    def _enter_stopping(self, job: JobRecord, message: str | None, conditions: dict[str, Any]) -> JobRecord:
        """Move ``job`` to ``Stopping`` unless it already is (then it is returned as it is now): a stop records one
        ``Stopping`` transition however many reports (or a stale read of the job) ask for it.

        Raises:
            ConflictError: The job is neither Stopping nor allowed to become Stopping (e.g. it ended meanwhile).
        """
        try:
            return self.store.transition(
                job.name, S.STOPPING, message, expected_from=NOT_STOPPING, conditions=conditions
            )
        except ConflictError:
            current = self.store.get(job.name)
            if current.secondary_status != S.STOPPING:
                raise
            return current

    def append_logs(self, job: JobRecord, host: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        """Store lines idempotently by (attempt, host, seq), under the attempt the caller's token belongs to;
        returns how many were new.

        The job's ``MetricDefinitions`` are applied to each line; the points of the lines that were new are
        stored with them in one transaction, so each stored line yields its points exactly once.
        """
        for i, line in enumerate(lines):
            for key in ("seq", "timestamp", "message"):
                if key not in line:
                    raise ValidationError(f"lines[{i}].{key}: required", field=f"lines[{i}].{key}")
            for key in ("seq", "timestamp"):
                if metric_value(line[key]) is None:
                    raise ValidationError(f"lines[{i}].{key}: must be a number", field=f"lines[{i}].{key}")
        extractor = self.extractors.get(job)
        line_metrics = extractor.extract_lines(lines) if extractor else None
        inserted = self.store.append_logs(job.id, host, lines, line_metrics=line_metrics, attempt=job.attempt)
        return {"inserted": inserted}

    def heartbeat(self, job: JobRecord, host: str) -> dict[str, Any]:
        """Record that ``host`` is alive; the reply says whether a stop was requested."""
        self.store.set_fields(job.name, heartbeat_time=time.time())
        return self._reply(job)

    def append_metrics(self, job: JobRecord, host: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        """Store metric points ``{name, value, timestamp[, seq]}``; returns how many were new.

        A point with ``seq`` is stored once per (host, name, seq), so a resent batch adds nothing.
        """
        for i, p in enumerate(points):
            for key in ("name", "value", "timestamp"):
                if key not in p:
                    raise ValidationError(f"points[{i}].{key}: required", field=f"points[{i}].{key}")
            name = p["name"]
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
                raise ValidationError(
                    f"points[{i}].name: must be a string of 1 to {MAX_NAME_LENGTH} characters",
                    field=f"points[{i}].name",
                )
            for key in ("value", "timestamp"):
                if metric_value(p[key]) is None:
                    raise ValidationError(f"points[{i}].{key}: must be a finite number", field=f"points[{i}].{key}")
            seq = p.get("seq")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
                raise ValidationError(f"points[{i}].seq: must be an integer", field=f"points[{i}].seq")
        return {"inserted": self.store.append_metrics(job.id, host, points, attempt=job.attempt)}
