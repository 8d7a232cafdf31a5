"""``JobStore``: the only way to read and change training jobs, their logs and their metrics.

Every status change goes through :meth:`JobStore.transition`, one conditional update
(``UPDATE ... WHERE secondary_status IN (<allowed predecessors>)``) in one transaction with its
``SecondaryStatusTransitions`` row: two writers can never both win, and terminal jobs never change.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from trainforge.errors import ConflictError, NotFoundError, ValidationError
from trainforge.spec.status import (
    PRIMARY_OF,
    TERMINAL,
    SecondaryStatus,
    TrainingJobStatus,
    allowed_predecessors,
)
from trainforge.store.records import HostRecord, JobRecord, LogRecord, MetricRecord, TransitionRecord
from trainforge.store.tables import job_hosts, jobs, log_lines, metric_points, transitions

_START_STATUSES = {SecondaryStatus.DOWNLOADING, SecondaryStatus.TRAINING}
SORT_COLUMNS = {"Name": jobs.c.name, "CreationTime": jobs.c.creation_time, "Status": jobs.c.status}


@dataclass(frozen=True)
class NewJob:
    """What :meth:`JobStore.create` needs to insert a job."""

    name: str
    arn: str
    spec_json: str
    instance_type: str
    instance_count: int
    model_artifacts: str
    message: str = "Starting the training job"
    created_by: str | None = None
    role_json: str | None = None


@dataclass(frozen=True)
class ListQuery:
    """Filters, order and page of a job listing (ListTrainingJobs semantics)."""

    name_contains: str | None = None
    status_equals: str | None = None
    creation_time_after: float | None = None
    creation_time_before: float | None = None
    last_modified_time_after: float | None = None
    last_modified_time_before: float | None = None
    sort_by: str = "CreationTime"
    sort_order: str = "Ascending"
    max_results: int = 10
    next_token: str | None = None
    created_by: str | None = None  # only this owner's jobs (None: everyone's)


def job_not_found(name: str) -> NotFoundError:
    """The error for a job that does not exist, or that the caller may not see (the two must look the same)."""
    return NotFoundError(f"Requested resource not found: training job {name!r} does not exist")


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("NextToken: not a token this server issued", field="NextToken") from exc
    if offset < 0:
        raise ValidationError("NextToken: not a token this server issued", field="NextToken")
    return offset


def _metric_rows(job_id: int, host: str, points: Iterable[Mapping[str, Any]], attempt: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "job_id": job_id,
            "attempt": attempt,
            "host": host,
            "name": str(p["name"]),
            "value": float(p["value"]),
            "timestamp": float(p["timestamp"]),
            "seq": None if p.get("seq") is None else int(p["seq"]),
        }
        for p in points
    ]


class JobStore:
    """Training jobs, transitions, log lines and metric points in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- jobs -----------------------------------------------------------------------------------------

    def create(self, new: NewJob, *, now: float | None = None) -> tuple[JobRecord, bool]:
        """Insert a job as ``InProgress/Starting``; return it and whether it was created.

        Resubmitting an identical spec under the same name by the same owner returns the existing job
        (``created=False``); a different spec or another owner under a taken name raises :class:`ConflictError`
        (SageMaker's ``ResourceInUse``).
        """
        t = time.time() if now is None else now
        with self.engine.begin() as conn:
            existing = conn.execute(select(jobs).where(jobs.c.name == new.name)).first()
            if existing is not None:
                same_owner = existing.created_by == new.created_by
                if same_owner and json.loads(existing.spec) == json.loads(new.spec_json):
                    return self._record(conn, existing), False
                raise ConflictError(
                    "Training job names must be unique within an AWS account and region, and a training job "
                    f"with this name already exists ({existing.arn})",
                    details={"field": "TrainingJobName", "name": new.name},
                )
            inserted = conn.execute(
                insert(jobs).values(
                    name=new.name,
                    arn=new.arn,
                    spec=new.spec_json,
                    status=TrainingJobStatus.IN_PROGRESS.value,
                    secondary_status=SecondaryStatus.STARTING.value,
                    status_message=new.message,
                    instance_type=new.instance_type,
                    instance_count=new.instance_count,
                    model_artifacts=new.model_artifacts,
                    creation_time=t,
                    last_modified_time=t,
                    created_by=new.created_by,
                    role_json=new.role_json,
                )
            ).inserted_primary_key
            assert inserted is not None
            job_id = inserted[0]
            conn.execute(
                insert(transitions).values(
                    job_id=job_id, status=SecondaryStatus.STARTING.value, start_time=t, message=new.message
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
            return self._record(conn, row), True

    def get(self, name: str) -> JobRecord:
        """The job called ``name``; :class:`NotFoundError` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.name == name)).first()
            if row is None:
                raise job_not_found(name)
            return self._record(conn, row)

    def transition(
        self,
        name: str,
        to: SecondaryStatus | str,
        message: str | None = None,
        *,
        expected_from: Iterable[SecondaryStatus] | None = None,
        conditions: Mapping[str, Any] | None = None,
        set_fields: Mapping[str, Any] | None = None,
        failure_reason: str | None = None,
        now: float | None = None,
        clear_hosts: bool = False,
    ) -> JobRecord:
        """Move a job to secondary status ``to`` if the transition table (and ``expected_from``) allow it.

        ``conditions`` adds column equality checks to the compare-and-set; ``set_fields`` are written in
        the same update (a value may be a column expression, e.g. ``attempt + 1``); ``clear_hosts`` forgets every
        host's own status in the same transaction (a retry's hosts start afresh). Sets ``TrainingStartTime`` on
        the first Downloading/Training and
        ``TrainingEndTime`` on a terminal status. Raises :class:`NotFoundError` for an unknown job and
        :class:`ConflictError` when the job's current status (or a condition) does not allow the change.
        """
        target = SecondaryStatus(to)
        allowed = set(allowed_predecessors(target))
        if expected_from is not None:
            allowed &= {SecondaryStatus(s) for s in expected_from}
        with self.engine.begin() as conn:
            # The job's row is locked before the time is read, so concurrent transitions of one job get times in
            # the order they commit (a history's steps never end before they start).
            job_id = conn.execute(select(jobs.c.id).where(jobs.c.name == name).with_for_update()).scalar()
            if job_id is None:
                raise job_not_found(name)
            t = time.time() if now is None else now
            last = conn.execute(
                select(func.max(transitions.c.start_time)).where(transitions.c.job_id == job_id)
            ).scalar()
            if last is not None and t < last:
                t = float(last)
            values: dict[str, Any] = {
                "status": PRIMARY_OF[target].value,
                "secondary_status": target.value,
                "status_message": message,
                "last_modified_time": t,
                **dict(set_fields or {}),
            }
            if failure_reason is not None:
                values["failure_reason"] = failure_reason[:1024]
            if target in _START_STATUSES:
                values["training_start_time"] = func.coalesce(jobs.c.training_start_time, t)
            if target in TERMINAL:
                values["training_end_time"] = t
                values["training_start_time"] = func.coalesce(jobs.c.training_start_time, t)
            stmt = update(jobs).where(
                jobs.c.id == job_id, jobs.c.secondary_status.in_(sorted(s.value for s in allowed))
            )
            for column, expected in (conditions or {}).items():
                col = jobs.c[column]
                stmt = stmt.where(col.is_(None) if expected is None else col == expected)
            if conn.execute(stmt.values(**values)).rowcount != 1:
                current = conn.execute(select(jobs.c.secondary_status).where(jobs.c.id == job_id)).scalar()
                raise ConflictError(
                    f"training job {name!r} is {current}; it cannot move to {target.value}",
                    details={"current": current, "requested": target.value},
                )
            if clear_hosts:
                conn.execute(delete(job_hosts).where(job_hosts.c.job_id == job_id))
            conn.execute(
                update(transitions)
                .where(transitions.c.job_id == job_id, transitions.c.end_time.is_(None))
                .values(end_time=t)
            )
            log_cursor = conn.execute(select(func.max(log_lines.c.id)).where(log_lines.c.job_id == job_id)).scalar()
            conn.execute(
                insert(transitions).values(
                    job_id=job_id,
                    log_cursor=log_cursor or 0,
                    status=target.value,
                    start_time=t,
                    end_time=t if target in TERMINAL else None,
                    message=message,
                )
            )
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
            return self._record(conn, row)

    def set_fields(self, name: str, **values: Any) -> None:
        """Update bookkeeping columns that are not status (heartbeat, stop request); never status."""
        if {"status", "secondary_status"} & values.keys():
            raise ValueError("status changes go through transition()")
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.name == name).values(**values))

    def list_jobs(self, query: ListQuery) -> tuple[list[JobRecord], str | None]:
        """One page of jobs matching ``query`` and the token of the next page (``None`` at the end)."""
        sort_col = SORT_COLUMNS.get(query.sort_by)
        if sort_col is None:
            raise ValidationError(f"SortBy: {query.sort_by!r} is not one of {', '.join(SORT_COLUMNS)}", field="SortBy")
        if query.sort_order not in ("Ascending", "Descending"):
            raise ValidationError("SortOrder: must be Ascending or Descending", field="SortOrder")
        if not 1 <= query.max_results <= 100:
            raise ValidationError("MaxResults: must be between 1 and 100", field="MaxResults")
        offset = _decode_token(query.next_token) if query.next_token else 0
        conds = []
        if query.name_contains:
            conds.append(func.lower(jobs.c.name).contains(query.name_contains.lower(), autoescape=True))
        if query.status_equals:
            conds.append(jobs.c.status == query.status_equals)
        if query.created_by is not None:
            conds.append(jobs.c.created_by == query.created_by)
        if query.creation_time_after is not None:
            conds.append(jobs.c.creation_time > query.creation_time_after)
        if query.creation_time_before is not None:
            conds.append(jobs.c.creation_time < query.creation_time_before)
        if query.last_modified_time_after is not None:
            conds.append(jobs.c.last_modified_time > query.last_modified_time_after)
        if query.last_modified_time_before is not None:
            conds.append(jobs.c.last_modified_time < query.last_modified_time_before)
        order = [sort_col.asc() if query.sort_order == "Ascending" else sort_col.desc()]
        order.append(jobs.c.id.asc() if query.sort_order == "Ascending" else jobs.c.id.desc())
        stmt = select(jobs).where(and_(True, *conds)).order_by(*order).offset(offset).limit(query.max_results + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            page = [self._record(conn, r, with_transitions=False) for r in rows[: query.max_results]]
        token = _encode_token(offset + query.max_results) if len(rows) > query.max_results else None
        return page, token

    def active(self) -> list[JobRecord]:
        """Every job that is not terminal, oldest first."""
        stmt = (
            select(jobs)
            .where(jobs.c.secondary_status.not_in([s.value for s in TERMINAL]))
            .order_by(jobs.c.creation_time, jobs.c.id)
        )
        with self.engine.connect() as conn:
            return [self._record(conn, r, with_transitions=False) for r in conn.execute(stmt).all()]

    # -- hosts --------------------------------------------------------------------------------------------

    def record_host(
        self,
        job_id: int,
        host: str,
        status: SecondaryStatus,
        message: str | None,
        failure_reason: str | None = None,
        *,
        now: float | None = None,
        attempt: int | None = None,
        lineage: str | None = None,
    ) -> dict[str, HostRecord]:
        """Store ``host``'s own status and return every host's, as one serialized step per job.

        ``lineage`` (JSON, when not None) replaces what the host reported it ran on; None keeps what it reported.

        Reports of two hosts of one job never interleave here (the job's row is locked on PostgreSQL, writes
        are ``BEGIN IMMEDIATE`` on SQLite), so the last of several simultaneous reports sees all of them. A host
        whose status is already terminal keeps it. With ``attempt``, a report of another attempt than the job's
        current one raises :class:`ConflictError` and stores nothing (a retry began meanwhile).
        """
        t = time.time() if now is None else now
        values = {
            "job_id": job_id,
            "host": host,
            "status": status.value,
            "message": message,
            "failure_reason": failure_reason[:1024] if failure_reason else None,
            "updated_time": t,
        }
        if lineage is not None:
            values["lineage"] = lineage
        dialect = self.engine.dialect.name
        with self.engine.begin() as conn:
            if dialect == "postgresql":
                conn.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
            if attempt is not None:
                now_attempt = conn.execute(select(jobs.c.attempt).where(jobs.c.id == job_id)).scalar()
                if now_attempt != attempt:
                    raise ConflictError(
                        f"this report is of attempt {attempt}; the job is now on attempt {now_attempt}",
                        details={"attempt": attempt, "current_attempt": now_attempt},
                    )
            current = conn.execute(
                select(job_hosts.c.status).where(job_hosts.c.job_id == job_id, job_hosts.c.host == host)
            ).scalar()
            if current is None:
                conn.execute(insert(job_hosts).values(**values))
            elif SecondaryStatus(current) not in TERMINAL:
                conn.execute(
                    update(job_hosts)
                    .where(job_hosts.c.job_id == job_id, job_hosts.c.host == host)
                    .values(**{k: v for k, v in values.items() if k not in ("job_id", "host")})
                )
            return self._hosts(conn, job_id)

    def host_lineages(self, job_id: int) -> dict[str, dict[str, Any]]:
        """What each host that reported one said it ran on (its lineage), by host name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(job_hosts.c.host, job_hosts.c.lineage).where(
                    job_hosts.c.job_id == job_id, job_hosts.c.lineage.is_not(None)
                )
            ).all()
        return {r.host: json.loads(r.lineage) for r in rows}

    def host_states(self, job_id: int) -> dict[str, HostRecord]:
        """Each reporting host's own status, by host name."""
        with self.engine.connect() as conn:
            return self._hosts(conn, job_id)

    def _hosts(self, conn: Connection, job_id: int) -> dict[str, HostRecord]:
        rows = conn.execute(select(job_hosts).where(job_hosts.c.job_id == job_id).order_by(job_hosts.c.host)).all()
        return {
            r.host: HostRecord(r.host, SecondaryStatus(r.status), r.message, r.failure_reason, r.updated_time)
            for r in rows
        }

    # -- logs and metrics -----------------------------------------------------------------------------

    def _insert_ignore(self, table: Any) -> Any:
        name = self.engine.dialect.name
        if name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        raise ValidationError(
            f"database_url: the {name} dialect is not supported; use sqlite or postgresql", field="database_url"
        )

    def append_logs(
        self,
        job_id: int,
        host: str,
        lines: Sequence[Mapping[str, Any]],
        *,
        line_metrics: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
        attempt: int = 1,
    ) -> int:
        """Store lines ``{seq, timestamp, stream, message}`` of ``attempt``; an (attempt, host, seq) already stored
        is skipped (each attempt's supervisors number their lines from 0 again).

        ``line_metrics`` maps a line's ``seq`` to the metric points ``{name, value, timestamp}`` extracted from
        it: they are stored (for ``host``) in the same transaction, and only for lines that were new here, so a
        resent batch never stores a point twice. Returns how many lines were new. Safe to call again with the
        same batch.
        """
        if not lines:
            return 0
        rows = [
            {
                "job_id": job_id,
                "attempt": attempt,
                "host": host,
                "seq": int(line["seq"]),
                "timestamp": float(line["timestamp"]),
                "stream": str(line.get("stream", "stdout")),
                "message": str(line["message"]),
            }
            for line in lines
        ]
        stmt = self._insert_ignore(log_lines).returning(log_lines.c.seq)
        with self.engine.begin() as conn:
            new_seqs = [int(r[0]) for r in conn.execute(stmt, rows).all()]
            if line_metrics:
                points = [p for seq in new_seqs for p in line_metrics.get(seq, ())]
                if points:
                    conn.execute(insert(metric_points), _metric_rows(job_id, host, points, attempt))
            return len(new_seqs)

    def read_logs(
        self,
        job_id: int,
        *,
        cursor: int = 0,
        limit: int = 1000,
        host: str | None = None,
        attempt: int | None = None,
    ) -> list[LogRecord]:
        """Lines stored after ``cursor`` in arrival order (per host and attempt that is sequence order), at most
        ``limit``; ``host`` and ``attempt`` keep one host's or one attempt's lines (None: all, attempts in the
        order they ran, since a later attempt's lines arrive after the earlier one's)."""
        stmt = select(log_lines).where(log_lines.c.job_id == job_id, log_lines.c.id > cursor)
        if host:
            stmt = stmt.where(log_lines.c.host == host)
        if attempt is not None:
            stmt = stmt.where(log_lines.c.attempt == attempt)
        stmt = stmt.order_by(log_lines.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [
                LogRecord(r.id, r.host, r.seq, r.timestamp, r.stream, r.message, r.attempt)
                for r in conn.execute(stmt).all()
            ]

    def log_hosts(self, job_id: int) -> list[str]:
        """The hosts that sent lines for a job, sorted."""
        stmt = select(log_lines.c.host).where(log_lines.c.job_id == job_id).distinct().order_by(log_lines.c.host)
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(stmt).all()]

    def append_metrics(self, job_id: int, host: str, points: Sequence[Mapping[str, Any]], *, attempt: int = 1) -> int:
        """Store metric points ``{name, value, timestamp[, seq]}`` of ``host`` in ``attempt``; returns how many
        were new.

        A point with a ``seq`` whose (attempt, host, name, seq) is already stored is skipped, so a batch resent
        after a lost reply is stored once; points without ``seq`` are always stored.
        """
        if not points:
            return 0
        stmt = self._insert_ignore(metric_points).returning(metric_points.c.id)
        with self.engine.begin() as conn:
            return len(conn.execute(stmt, _metric_rows(job_id, host, points, attempt)).all())

    def read_metrics(
        self,
        job_id: int,
        names: Sequence[str] | None = None,
        *,
        host: str | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> list[MetricRecord]:
        """Metric points of a job ordered by name then time (then arrival).

        ``names`` keeps those metrics only, ``host`` one host's points, ``start_time``/``end_time`` (epoch
        seconds, inclusive) points in that interval.
        """
        stmt = select(metric_points).where(metric_points.c.job_id == job_id)
        if names:
            stmt = stmt.where(metric_points.c.name.in_(list(names)))
        if host:
            stmt = stmt.where(metric_points.c.host == host)
        if start_time is not None:
            stmt = stmt.where(metric_points.c.timestamp >= start_time)
        if end_time is not None:
            stmt = stmt.where(metric_points.c.timestamp <= end_time)
        stmt = stmt.order_by(metric_points.c.name, metric_points.c.timestamp, metric_points.c.id)
        with self.engine.connect() as conn:
            return [MetricRecord(r.host, r.name, r.value, r.timestamp) for r in conn.execute(stmt).all()]

    def last_metric_points(self, job_id: int, *, exclude_prefix: str | None = None) -> list[MetricRecord]:
        """The last point of each metric of a job (latest timestamp; of equal ones the last stored), by name.

        ``exclude_prefix`` leaves out metrics whose name starts with it. One statement, whatever the number of
        points.
        """
        mp = metric_points
        conds = [mp.c.job_id == job_id]
        if exclude_prefix:
            conds.append(~mp.c.name.startswith(exclude_prefix, autoescape=True))
        latest = select(mp.c.name, func.max(mp.c.timestamp).label("ts")).where(*conds).group_by(mp.c.name).subquery()
        stmt = (
            select(mp)
            .join(latest, and_(mp.c.name == latest.c.name, mp.c.timestamp == latest.c.ts))
            .where(mp.c.job_id == job_id)
            .order_by(mp.c.name, mp.c.id)
        )
        last: dict[str, MetricRecord] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(stmt).all():
                last[r.name] = MetricRecord(r.host, r.name, r.value, r.timestamp)
        return list(last.values())

    # -- helpers --------------------------------------------------------------------------------------

    def _record(self, conn: Connection, row: Row[Any], *, with_transitions: bool = True) -> JobRecord:
        trans: tuple[TransitionRecord, ...] = ()
        if with_transitions:
            trans = tuple(
                TransitionRecord(t.status, t.start_time, t.end_time, t.message, t.log_cursor or 0)
                for t in conn.execute(
                    select(transitions).where(transitions.c.job_id == row.id).order_by(transitions.c.id)
                ).all()
            )
        return JobRecord(
            id=row.id,
            name=row.name,
            arn=row.arn,
            spec_json=row.spec,
            status=TrainingJobStatus(row.status),
            secondary_status=SecondaryStatus(row.secondary_status),
            status_message=row.status_message,
            failure_reason=row.failure_reason,
            instance_type=row.instance_type,
            instance_count=row.instance_count,
            model_artifacts=row.model_artifacts,
            creation_time=row.creation_time,
            last_modified_time=row.last_modified_time,
            training_start_time=row.training_start_time,
            training_end_time=row.training_end_time,
            stop_requested=row.stop_requested,
            backend=row.backend,
            backend_handle=row.backend_handle,
            agent_token_hash=row.agent_token_hash,
            heartbeat_time=row.heartbeat_time,
            transitions=trans,
            created_by=row.created_by,
            role_json=row.role_json,
            attempt=row.attempt,
        )
