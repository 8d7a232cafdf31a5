"""``TransformJobStore``: the only way to read and change batch transform jobs and their instances' statuses.

Every status change goes through :meth:`TransformJobStore.transition`, one conditional update
(``UPDATE ... WHERE status IN (<allowed predecessors>)``): two writers can never both win, and a terminal job never
changes. An instance's own status is kept per (job, attempt, host) in ``transform_instances``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from trainforge.errors import ConflictError, NotFoundError
from trainforge.spec.transforms import (
    INSTANCE_TERMINAL,
    TERMINAL,
    InstanceStatus,
    TransformJobStatus,
    allowed_predecessors,
)
from trainforge.store.tables import transform_instances, transform_jobs

T = TransformJobStatus
MAX_LIST = 100


@dataclass(frozen=True)
class NewTransformJob:
    """What :meth:`TransformJobStore.create` needs to insert a job."""

    name: str
    arn: str
    spec_json: str
    model_spec_json: str
    created_by: str | None = None
    role_json: str | None = None


@dataclass(frozen=True)
class TransformJobRecord:
    """A transform job as stored."""

    id: int
    name: str
    arn: str
    spec_json: str
    model_spec_json: str
    status: TransformJobStatus
    failure_reason: str | None
    creation_time: float
    last_modified_time: float
    transform_start_time: float | None
    transform_end_time: float | None
    stop_requested: str | None
    created_by: str | None
    role_json: str | None
    backend: str | None
    backend_handle: str | None
    agent_token_hash: str | None
    heartbeat_time: float | None
    attempt: int

    @cached_property
    def spec(self) -> dict[str, Any]:
        """The CreateTransformJob request as accepted."""
        value: dict[str, Any] = json.loads(self.spec_json)
        return value

    @cached_property
    def model_spec(self) -> dict[str, Any]:
        """DescribeModel of the job's model as it was when the job was created."""
        value: dict[str, Any] = json.loads(self.model_spec_json)
        return value

    @property
    def terminal(self) -> bool:
        """Whether this job can never change again."""
        return self.status in TERMINAL

    @property
    def handle(self) -> dict[str, Any] | None:
        """The backend's launch handle, if the job was launched (``{"hosts": []}`` while a launch is under way)."""
        if not self.backend_handle:
            return None
        value: dict[str, Any] = json.loads(self.backend_handle)
        return value

    @property
    def instance_type(self) -> str:
        """``TransformResources.InstanceType``."""
        return str(self.spec["TransformResources"]["InstanceType"])

    @property
    def instance_count(self) -> int:
        """``TransformResources.InstanceCount``."""
        return int(self.spec["TransformResources"].get("InstanceCount") or 1)


@dataclass(frozen=True)
class InstanceRecord:
    """One transform instance's own status in one attempt, as its supervisor last reported it."""

    host: str
    status: InstanceStatus
    message: str | None
    failure_reason: str | None
    updated_time: float


def transform_job_not_found(name: str) -> NotFoundError:
    """The error for a transform job that does not exist, or that the caller may not see (both look the same)."""
    return NotFoundError(f"Requested resource not found: transform job {name!r} does not exist")


def _record(row: Row[Any]) -> TransformJobRecord:
    return TransformJobRecord(
        id=row.id,
        name=row.name,
        arn=row.arn,
        spec_json=row.spec,
        model_spec_json=row.model_spec,
        status=TransformJobStatus(row.status),
        failure_reason=row.failure_reason,
        creation_time=row.creation_time,
        last_modified_time=row.last_modified_time,
        transform_start_time=row.transform_start_time,
        transform_end_time=row.transform_end_time,
        stop_requested=row.stop_requested,
        created_by=row.created_by,
        role_json=row.role_json,
        backend=row.backend,
        backend_handle=row.backend_handle,
        agent_token_hash=row.agent_token_hash,
        heartbeat_time=row.heartbeat_time,
        attempt=row.attempt,
    )


class TransformJobStore:
    """Transform jobs and their instances' statuses in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, new: NewTransformJob, *, now: float | None = None) -> TransformJobRecord:
        """Insert a job as ``InProgress``.

        Raises:
            ConflictError: A transform job of this name exists (or existed: names are never reused), whoever owns
                it and whatever its status (SageMaker's ``ResourceInUse``).
        """
        t = time.time() if now is None else now
        with self.engine.begin() as conn:
            existing = conn.execute(select(transform_jobs.c.arn).where(transform_jobs.c.name == new.name)).first()
            if existing is not None:
                raise ConflictError(
                    "Transform job names must be unique within an AWS account and region, and a transform job with "
                    f"this name already exists ({existing.arn}); choose another TransformJobName",
                    details={"field": "TransformJobName", "name": new.name},
                )
            inserted = conn.execute(
                insert(transform_jobs).values(
                    name=new.name,
                    arn=new.arn,
                    spec=new.spec_json,
                    model_spec=new.model_spec_json,
                    status=T.IN_PROGRESS.value,
                    creation_time=t,
                    last_modified_time=t,
                    created_by=new.created_by,
                    role_json=new.role_json,
                )
            ).inserted_primary_key
            assert inserted is not None
            row = conn.execute(select(transform_jobs).where(transform_jobs.c.id == inserted[0])).one()
            return _record(row)

    def get(self, name: str) -> TransformJobRecord:
        """The job called ``name``; :class:`NotFoundError` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(transform_jobs).where(transform_jobs.c.name == name)).first()
        if row is None:
            raise transform_job_not_found(name)
        return _record(row)

    def transition(
        self,
        name: str,
        to: TransformJobStatus | str,
        *,
        expected_from: Iterable[TransformJobStatus] | None = None,
        conditions: Mapping[str, Any] | None = None,
        set_fields: Mapping[str, Any] | None = None,
        failure_reason: str | None = None,
        now: float | None = None,
    ) -> TransformJobRecord:
        """Move a job to ``to`` if the transition table (and ``expected_from``) allow it, in one conditional update.

        ``conditions`` adds column equality checks to the compare-and-set (None: the column is NULL);
        ``set_fields`` are written in the same update. A terminal status sets ``TransformEndTime`` (and
        ``TransformStartTime`` if the job never started).

        Raises:
            NotFoundError: No job has this name.
            ConflictError: The job's status (or a condition) does not allow the change; nothing was written.
        """
        target = TransformJobStatus(to)
        allowed = set(allowed_predecessors(target))
        if expected_from is not None:
            allowed &= {TransformJobStatus(s) for s in expected_from}
        with self.engine.begin() as conn:
            job_id = conn.execute(
                select(transform_jobs.c.id).where(transform_jobs.c.name == name).with_for_update()
            ).scalar()
            if job_id is None:
                raise transform_job_not_found(name)
            t = time.time() if now is None else now
            values: dict[str, Any] = {"status": target.value, "last_modified_time": t, **dict(set_fields or {})}
            if failure_reason is not None:
                values["failure_reason"] = failure_reason[:1024]
            if target in TERMINAL:
                values["transform_end_time"] = t
                values["transform_start_time"] = func.coalesce(transform_jobs.c.transform_start_time, t)
            stmt = update(transform_jobs).where(
                transform_jobs.c.id == job_id, transform_jobs.c.status.in_(sorted(s.value for s in allowed))
            )
            for column, expected in (conditions or {}).items():
                col = transform_jobs.c[column]
                stmt = stmt.where(col.is_(None) if expected is None else col == expected)
            if conn.execute(stmt.values(**values)).rowcount != 1:
                current = conn.execute(select(transform_jobs.c.status).where(transform_jobs.c.id == job_id)).scalar()
                raise ConflictError(
                    f"transform job {name!r} is {current}; it cannot move to {target.value}",
                    details={"current": current, "requested": target.value},
                )
            return _record(conn.execute(select(transform_jobs).where(transform_jobs.c.id == job_id)).one())

    def set_fields(self, name: str, *, conditions: Mapping[str, Any] | None = None, **values: Any) -> bool:
        """Update bookkeeping columns (handle, heartbeat), never the status; ``conditions`` as in
        :meth:`transition`. Returns whether a row was updated."""
        if "status" in values:
            raise ValueError("status changes go through transition()")
        stmt = update(transform_jobs).where(transform_jobs.c.name == name)
        for column, expected in (conditions or {}).items():
            col = transform_jobs.c[column]
            stmt = stmt.where(col.is_(None) if expected is None else col == expected)
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt.values(**values)).rowcount)

    def list_jobs(
        self,
        *,
        status_equals: str | None = None,
        name_contains: str | None = None,
        created_by: str | None = None,
        max_results: int = MAX_LIST,
    ) -> list[TransformJobRecord]:
        """Jobs matching the filters, newest first, at most ``max_results``; ``created_by`` keeps one owner's."""
        conds = []
        if status_equals:
            conds.append(transform_jobs.c.status == status_equals)
        if name_contains:
            conds.append(func.lower(transform_jobs.c.name).contains(name_contains.lower(), autoescape=True))
        if created_by is not None:
            conds.append(transform_jobs.c.created_by == created_by)
        stmt = (
            select(transform_jobs)
            .where(and_(True, *conds))
            .order_by(transform_jobs.c.creation_time.desc(), transform_jobs.c.id.desc())
            .limit(max_results)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(stmt).all()]

    def active(self) -> list[TransformJobRecord]:
        """Every job that is not terminal, oldest first."""
        stmt = (
            select(transform_jobs)
            .where(transform_jobs.c.status.not_in([s.value for s in TERMINAL]))
            .order_by(transform_jobs.c.creation_time, transform_jobs.c.id)
        )
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(stmt).all()]

    # -- instances -----------------------------------------------------------------------------------------------

    def record_instance(
        self,
        job_id: int,
        attempt: int,
        host: str,
        status: InstanceStatus,
        message: str | None = None,
        failure_reason: str | None = None,
        *,
        now: float | None = None,
    ) -> dict[str, InstanceRecord]:
        """Store ``host``'s own status in ``attempt`` and return every instance's of that attempt, as one
        serialized step per job (the job's row is locked first), so the last of simultaneous reports sees all.

        An instance whose status is already terminal keeps it. Any report sets the job's ``TransformStartTime``
        if it has none yet.

        Raises:
            ConflictError: ``attempt`` is not the job's current attempt (it was relaunched meanwhile); nothing is
                stored.
            NotFoundError: The job is gone.
        """
        t = time.time() if now is None else now
        reason = failure_reason[:1024] if failure_reason else failure_reason
        ti = transform_instances
        with self.engine.begin() as conn:
            current = conn.execute(
                select(transform_jobs.c.attempt).where(transform_jobs.c.id == job_id).with_for_update()
            ).scalar()
            if current is None:
                raise NotFoundError(f"Requested resource not found: transform job id {job_id} does not exist")
            if current != attempt:
                raise ConflictError(
                    f"this report is from attempt {attempt} of the transform job, which now runs attempt {current}",
                    details={"attempt": attempt, "current": current},
                )
            conn.execute(
                update(transform_jobs)
                .where(transform_jobs.c.id == job_id)
                .values(transform_start_time=func.coalesce(transform_jobs.c.transform_start_time, t))
            )
            key = and_(ti.c.job_id == job_id, ti.c.attempt == attempt, ti.c.host == host)
            old = conn.execute(select(ti.c.status).where(key)).scalar()
            if old is None:
                conn.execute(
                    insert(ti).values(
                        job_id=job_id,
                        attempt=attempt,
                        host=host,
                        status=status.value,
                        message=message,
                        failure_reason=reason,
                        updated_time=t,
                    )
                )
            elif InstanceStatus(old) not in INSTANCE_TERMINAL:
                conn.execute(
                    update(ti)
                    .where(key)
                    .values(status=status.value, message=message, failure_reason=reason, updated_time=t)
                )
            return self._instances(conn, job_id, attempt)

    def instances(self, job_id: int, attempt: int) -> dict[str, InstanceRecord]:
        """Every instance's own status in ``attempt``, by host."""
        with self.engine.connect() as conn:
            return self._instances(conn, job_id, attempt)

    @staticmethod
    def _instances(conn: Connection, job_id: int, attempt: int) -> dict[str, InstanceRecord]:
        ti = transform_instances
        rows = conn.execute(select(ti).where(ti.c.job_id == job_id, ti.c.attempt == attempt).order_by(ti.c.host)).all()
        return {
            r.host: InstanceRecord(r.host, InstanceStatus(r.status), r.message, r.failure_reason, r.updated_time)
            for r in rows
        }
