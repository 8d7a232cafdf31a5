"""Use cases of a transform job's serving supervisors: status reports, log lines, heartbeats.

Each call is scoped to the one job (and launch attempt) its agent token was issued for. An instance's report is
stored as its own status, then the job moves to what its instances' statuses make it
(:func:`trainforge.spec.transforms.transform_move`) through the store's compare-and-set.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import AuthError, ConflictError, NotFoundError, ValidationError
from trainforge.service.agent import hash_token
from trainforge.spec.contract import FAILURE_REASON_MAX
from trainforge.spec.transforms import InstanceStatus, TransformJobStatus, transform_move
from trainforge.store.inference_logs import InferenceLogStore, transform_log_owner
from trainforge.store.transforms import TransformJobRecord, TransformJobStore

T = TransformJobStatus
MAX_MESSAGE = 64 * 1024


@dataclass
class TransformAgentService:
    """What transform supervisors may do (``/v1/agent/transform-jobs/<name>/...``)."""

    store: TransformJobStore
    logs_store: InferenceLogStore
    wake: threading.Event = field(default_factory=threading.Event)

    def authorize(self, name: str, token: str | None) -> TransformJobRecord:
        """The job if ``token`` is the agent token of its current launch; :class:`AuthError` otherwise (also for
        an unknown job)."""
        if not token:
            raise AuthError("missing agent token")
        try:
            job = self.store.get(name)
        except NotFoundError:
            raise AuthError("agent token is not valid for this transform job") from None
        if not job.agent_token_hash or not hmac.compare_digest(job.agent_token_hash, hash_token(token)):
            raise AuthError("agent token is not valid for this transform job")
        return job

    @staticmethod
    def reply(job: TransformJobRecord) -> dict[str, Any]:
        """What a supervisor is told after each call: the job's status, and whether it must stop (a stop was
        requested, or the job already ended, e.g. another instance failed)."""
        return {"TransformJobStatus": job.status.value, "stop_requested": bool(job.stop_requested) or job.terminal}

    def report_status(
        self,
        job: TransformJobRecord,
        *,
        host: str,
        status: str,
        message: str | None = None,
        failure_reason: str | None = None,
    ) -> dict[str, Any]:
        """Store ``host``'s own status, then move the job to what its instances make it.

        Raises:
            ValidationError: ``status`` is not an instance status (``InProgress|Completed|Failed|Stopped``).
            ConflictError: The job has already ended, or was relaunched since this supervisor started.
        """
        try:
            reported = InstanceStatus(status)
        except ValueError:
            raise ValidationError(
                f"status: {status!r} is not one of {', '.join(s.value for s in InstanceStatus)}", field="status"
            ) from None
        if reported == InstanceStatus.FAILED and not failure_reason:
            failure_reason = message or "InternalServerError: the instance failed without a reason"
        if failure_reason is not None:
            failure_reason = failure_reason[:FAILURE_REASON_MAX]
        if job.terminal:
            raise ConflictError(
                f"transform job {job.name!r} is {job.status.value}; it cannot move to {reported.value}",
                details={"current": job.status.value, "requested": reported.value},
            )
        instances = self.store.record_instance(job.id, job.attempt, host, reported, message, failure_reason)
        for _ in range(3):
            move = transform_move(
                job.status, {h: (r.status, r.failure_reason) for h, r in instances.items()}, job.instance_count
            )
            if move.status is None:
                return self.reply(self.store.get(job.name))
            try:
                job = self.store.transition(
                    job.name,
                    move.status,
                    expected_from={job.status},
                    conditions={"attempt": job.attempt},
                    failure_reason=move.failure_reason,
                )
            except ConflictError:
                attempt = job.attempt
                job = self.store.get(job.name)  # a stop (or another report) moved the job meanwhile: decide again
                if job.terminal or job.attempt != attempt:
                    return self.reply(job)
                instances = self.store.instances(job.id, job.attempt)
                continue
            self.wake.set()
            return self.reply(job)
        return self.reply(self.store.get(job.name))

    def append_logs(self, job: TransformJobRecord, host: str, lines: list[Any]) -> dict[str, Any]:
        """Store ``lines`` (``{seq, timestamp, stream, message}``) of ``host`` under the job's log owner and
        current attempt; a resent line is stored once. Returns ``{"accepted": <new lines>}``.

        Raises:
            ValidationError: A line is not of that shape (names ``lines[<i>].<key>``).
        """
        clean: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict):
                raise ValidationError(f"lines[{i}]: must be an object", field=f"lines[{i}]")
            seq, ts, msg = line.get("seq"), line.get("timestamp"), line.get("message")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ValidationError(f"lines[{i}].seq: must be an integer >= 0", field=f"lines[{i}].seq")
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
                raise ValidationError(f"lines[{i}].timestamp: must be epoch seconds", field=f"lines[{i}].timestamp")
            if not isinstance(msg, str):
                raise ValidationError(f"lines[{i}].message: must be a string", field=f"lines[{i}].message")
            stream = line.get("stream") if line.get("stream") in ("stdout", "stderr") else "stdout"
            clean.append({"seq": seq, "timestamp": float(ts), "stream": stream, "message": msg[:MAX_MESSAGE]})
        accepted = self.logs_store.append(transform_log_owner(job.name), job.attempt, host, clean)
        return {"accepted": accepted}

    def heartbeat(self, job: TransformJobRecord, host: str) -> dict[str, Any]:
        """Note that ``host`` is alive; the reply says whether it must stop."""
        self.store.set_fields(job.name, heartbeat_time=time.time())
        return self.reply(job)
