"""``UsageStore``: instance time as cost accounting reads it, from every kind of resource.

Training jobs and transform jobs keep their records forever, so their instance time is read from them (start and end
of training, or of the transform). A deleted endpoint leaves no record, so the endpoint reconciler writes each launch
of its instances to ``usage_intervals`` here: opened when the launch starts, closed when its supervisors are gone.
Both writes are idempotent, so a reconciler pass repeated after a server restart records nothing twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from trainforge.store.inference import EndpointRecord
from trainforge.store.tables import jobs, transform_jobs, usage_intervals

log = logging.getLogger("trainforge.store.usage")
TRAINING_JOB = "training-job"
ENDPOINT = "endpoint"
TRANSFORM_JOB = "transform-job"


@dataclass(frozen=True)
class Usage:
    """One stretch of instance time: ``instance_count`` instances of ``instance_type`` from ``start`` to ``end``.

    ``status`` is the resource's (secondary) status for jobs, None for endpoint launches; ``end`` is None while an
    endpoint launch runs.
    """

    kind: str
    name: str
    owner: str | None
    instance_type: str
    instance_count: int
    start: float
    end: float | None
    status: str | None = None


class UsageStore:
    """Reads instance time from the job tables and records endpoint launches, over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- endpoint launches ------------------------------------------------------------------------------------

    def record_start(
        self,
        key: str,
        *,
        kind: str,
        name: str,
        owner: str | None,
        instance_type: str,
        instance_count: int,
        start: float,
    ) -> None:
        """Open the interval ``key`` at ``start``; a second call for the same key changes nothing."""
        values = {
            "key": key,
            "kind": kind,
            "name": name,
            "owner": owner,
            "instance_type": instance_type,
            "instance_count": instance_count,
            "start_time": start,
            "end_time": None,
        }
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(usage_intervals.c.id).where(usage_intervals.c.key == key)).first() is None:
                    conn.execute(insert(usage_intervals).values(**values))
        except IntegrityError:
            return  # recorded by a concurrent call meanwhile

    def record_end(
        self,
        key: str,
        end: float,
        *,
        kind: str,
        name: str,
        owner: str | None,
        instance_type: str,
        instance_count: int,
        start: float,
    ) -> None:
        """Close the interval ``key`` at ``end`` (not before its start); an interval never opened (the server died
        between the launch and its record) is recorded whole. A closed interval is left as it is."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(usage_intervals.c.start_time, usage_intervals.c.end_time).where(usage_intervals.c.key == key)
            ).first()
            if found is None:
                conn.execute(
                    insert(usage_intervals).values(
                        key=key,
                        kind=kind,
                        name=name,
                        owner=owner,
                        instance_type=instance_type,
                        instance_count=instance_count,
                        start_time=start,
                        end_time=max(end, start),
                    )
                )
            elif found.end_time is None:
                conn.execute(
                    update(usage_intervals)
                    .where(usage_intervals.c.key == key, usage_intervals.c.end_time.is_(None))
                    .values(end_time=max(end, float(found.start_time)))
                )

    def endpoint_launch(
        self, endpoint: EndpointRecord, attempt: int | str, launch: Mapping[str, Any], *, ended: float | None = None
    ) -> None:
        """Record one launch of ``endpoint``'s instances (an entry of its handle's ``launches``): opened at its
        ``started`` time, closed at ``ended`` when given. Never raises: a failed write is logged, and the endpoint's
        life goes on (the next call for the same launch writes it whole)."""
        fields: dict[str, Any] = {
            "kind": ENDPOINT,
            "name": endpoint.name,
            "owner": endpoint.created_by,
            "instance_type": str(launch.get("instance_type", "")),
            "instance_count": int(launch.get("count", 1)),
            "start": float(launch.get("started") or endpoint.creation_time),
        }
        key = f"{endpoint.log_owner}/{attempt}"
        try:
            if ended is None:
                self.record_start(key, **fields)
            else:
                self.record_end(key, ended, **fields)
        except SQLAlchemyError:
            log.exception("recording the usage of endpoint %s launch %s failed", endpoint.name, attempt)

    # -- reading ------------------------------------------------------------------------------------------------

    def endpoint_usage(self, *, since: float | None, until: float | None, owner: str | None) -> list[Usage]:
        """Endpoint launches that ran at some time in ``[since, until)`` (open ones included), of ``owner`` when
        given, oldest first."""
        u = usage_intervals
        conds: list[Any] = []
        if since is not None:
            conds.append(or_(u.c.end_time.is_(None), u.c.end_time > since))
        if until is not None:
            conds.append(u.c.start_time < until)
        if owner is not None:
            conds.append(u.c.owner == owner)
        stmt = select(u).where(and_(True, *conds)).order_by(u.c.start_time, u.c.id)
        with self.engine.connect() as conn:
            return [
                Usage(r.kind, r.name, r.owner, r.instance_type, r.instance_count, r.start_time, r.end_time)
                for r in conn.execute(stmt).all()
            ]

    def training_usage(self, *, since: float | None, until: float | None, owner: str | None) -> list[Usage]:
        """Training jobs that ended and whose training started in ``[since, until)``, of ``owner`` when given,
        by training start."""
        j = jobs
        conds = _ended_and_started_within(
            j.c.training_start_time, j.c.training_end_time, j.c.created_by, since=since, until=until, owner=owner
        )
        stmt = (
            select(
                j.c.name,
                j.c.created_by,
                j.c.instance_type,
                j.c.instance_count,
                j.c.training_start_time,
                j.c.training_end_time,
                j.c.secondary_status,
            )
            .where(and_(*conds))
            .order_by(j.c.training_start_time, j.c.id)
        )
        with self.engine.connect() as conn:
            return [
                Usage(
                    TRAINING_JOB,
                    r.name,
                    r.created_by,
                    r.instance_type,
                    r.instance_count,
                    r.training_start_time,
                    r.training_end_time,
                    r.secondary_status,
                )
                for r in conn.execute(stmt).all()
            ]

    def transform_usage(self, *, since: float | None, until: float | None, owner: str | None) -> list[Usage]:
        """Transform jobs that ended and whose transform started in ``[since, until)``, of ``owner`` when given,
        by transform start. Their instance type and count are read from the stored request."""
        t = transform_jobs
        conds = _ended_and_started_within(
            t.c.transform_start_time, t.c.transform_end_time, t.c.created_by, since=since, until=until, owner=owner
        )
        stmt = (
            select(t.c.name, t.c.created_by, t.c.spec, t.c.transform_start_time, t.c.transform_end_time, t.c.status)
            .where(and_(*conds))
            .order_by(t.c.transform_start_time, t.c.id)
        )
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(stmt).all():
                resources = json.loads(r.spec).get("TransformResources") or {}
                out.append(
                    Usage(
                        TRANSFORM_JOB,
                        r.name,
                        r.created_by,
                        str(resources.get("InstanceType", "")),
                        int(resources.get("InstanceCount") or 1),
                        r.transform_start_time,
                        r.transform_end_time,
                        r.status,
                    )
                )
        return out


def _ended_and_started_within(
    start: Any, end: Any, created_by: Any, *, since: float | None, until: float | None, owner: str | None
) -> list[Any]:
    """The conditions on a job table's rows: ended (``start`` and ``end`` set), started in ``[since, until)``, of
    ``owner`` (``created_by``) when given."""
    conds: list[Any] = [start.is_not(None), end.is_not(None)]
    if since is not None:
        conds.append(start >= since)
    if until is not None:
        conds.append(start < until)
    if owner is not None:
        conds.append(created_by == owner)
    return conds
