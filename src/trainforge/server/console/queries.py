"""Read-only aggregate queries the jobs list needs and :class:`~trainforge.store.jobs.JobStore` does not offer.

They read the store's own tables through its engine, never write, and cost one statement per page whatever the
number of jobs or metric points.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, select

from trainforge.store.jobs import JobStore
from trainforge.store.tables import jobs, metric_points

SYSTEM_PREFIX = "system/"


def count_jobs(
    store: JobStore, *, name_contains: str | None, status_equals: str | None, created_by: str | None = None
) -> int:
    """How many jobs match the list filters (the same conditions as ``JobStore.list_jobs``)."""
    conds = []
    if name_contains:
        conds.append(func.lower(jobs.c.name).contains(name_contains.lower(), autoescape=True))
    if status_equals:
        conds.append(jobs.c.status == status_equals)
    if created_by is not None:
        conds.append(jobs.c.created_by == created_by)
    stmt = select(func.count()).select_from(jobs).where(and_(True, *conds))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def final_metrics_by_job(store: JobStore, job_ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
    """The last value of each (non-system) metric of each job, by job id then metric name.

    "Last" is the point with the latest timestamp (the latest stored of equal ones), as in ``FinalMetricDataList``.
    """
    if not job_ids:
        return {}
    mp = metric_points
    latest = (
        select(mp.c.job_id, mp.c.name, func.max(mp.c.timestamp).label("ts"))
        .where(mp.c.job_id.in_(list(job_ids)), ~mp.c.name.startswith(SYSTEM_PREFIX, autoescape=True))
        .group_by(mp.c.job_id, mp.c.name)
        .subquery()
    )
    stmt = (
        select(mp.c.job_id, mp.c.name, mp.c.value)
        .join(latest, and_(mp.c.job_id == latest.c.job_id, mp.c.name == latest.c.name, mp.c.timestamp == latest.c.ts))
        .order_by(mp.c.job_id, mp.c.name, mp.c.id)
    )
    out: dict[int, dict[str, float]] = {}
    with store.engine.connect() as conn:
        for job_id, name, value in conn.execute(stmt).all():
            out.setdefault(job_id, {})[name] = value
    return {job_id: sorted(values.items()) for job_id, values in out.items()}
