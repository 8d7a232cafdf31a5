"""Plain records the store returns; no SQLAlchemy types leak out of ``store``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from trainforge.spec.status import SecondaryStatus, TrainingJobStatus, is_terminal


@dataclass(frozen=True)
class TransitionRecord:
    """One entry of ``SecondaryStatusTransitions``."""

    status: str
    start_time: float
    end_time: float | None
    message: str | None
    log_cursor: int = 0


@dataclass(frozen=True)
class LogRecord:
    """One stored log line; ``cursor`` orders lines by arrival and is what readers resume from. ``attempt`` is
    the run of the job (1, then 2, 3, ... as ``RetryStrategy`` re-runs it) whose host sent the line."""

    cursor: int
    host: str
    seq: int
    timestamp: float
    stream: str
    message: str
    attempt: int = 1


@dataclass(frozen=True)
class MetricRecord:
    """One metric point."""

    host: str
    name: str
    value: float
    timestamp: float


@dataclass(frozen=True)
class JobRecord:
    """A training job as stored."""

    id: int
    name: str
    arn: str
    spec_json: str
    status: TrainingJobStatus
    secondary_status: SecondaryStatus
    status_message: str | None
    failure_reason: str | None
    instance_type: str
    instance_count: int
    model_artifacts: str
    creation_time: float
    last_modified_time: float
    training_start_time: float | None
    training_end_time: float | None
    stop_requested: str | None
    backend: str | None
    backend_handle: str | None
    agent_token_hash: str | None
    heartbeat_time: float | None
    transitions: tuple[TransitionRecord, ...] = field(default=())
    created_by: str | None = None  # the owner's user name; None for jobs made before users existed
    role_json: str | None = None  # the role resolved at submit, as JSON ({"name", "read", "write"})
    attempt: int = 1  # the run now (or last) under way: 1, then 2, 3, ... as RetryStrategy re-runs the job

    @cached_property
    def spec(self) -> dict[str, Any]:
        """The CreateTrainingJob request as it was accepted."""
        value: dict[str, Any] = json.loads(self.spec_json)
        return value

    @property
    def max_retries(self) -> int:
        """``RetryStrategy.MaximumRetryAttempts``: how many times a job whose host was lost may be re-run (0
        without a RetryStrategy)."""
        strategy = self.spec.get("RetryStrategy") or {}
        try:
            return max(0, int(strategy.get("MaximumRetryAttempts") or 0))
        except (TypeError, ValueError):
            return 0

    @property
    def terminal(self) -> bool:
        """Whether this job can never change again."""
        return is_terminal(self.secondary_status)

    @property
    def handle(self) -> dict[str, Any] | None:
        """The backend's launch handle, if the job was launched."""
        if not self.backend_handle:
            return None
        value: dict[str, Any] = json.loads(self.backend_handle)
        return value


@dataclass(frozen=True)
class HostRecord:
    """One host's own status in a job, as its supervisor last reported it."""

    host: str
    status: SecondaryStatus
    message: str | None
    failure_reason: str | None
    updated_time: float


@dataclass(frozen=True)
class UserRecord:
    """A user of the server."""

    id: int
    name: str
    admin: bool
    disabled: bool
    default_role: str | None
    created_time: float


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: never the token itself, only its public id and bookkeeping."""

    token_id: str
    user: str
    description: str | None
    created_time: float
    expires_time: float | None
    revoked_time: float | None
    last_used_time: float | None

    def state(self, now: float) -> str:
        """``Active``, ``Expired`` or ``Revoked`` at time ``now``."""
        if self.revoked_time is not None:
            return "Revoked"
        if self.expires_time is not None and self.expires_time <= now:
            return "Expired"
        return "Active"


@dataclass(frozen=True)
class AuditRecord:
    """One audit event: who did what to which target, from where, and how it ended."""

    id: int
    time: float
    user: str | None
    action: str
    target: str | None
    source: str | None
    outcome: str
    detail: str | None
