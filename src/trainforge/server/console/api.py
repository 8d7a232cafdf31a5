"""JSON the console's scripts poll (signed-in session, no bearer token): list rows, job status, log, metrics.

Errors use the API's JSON body (an unknown job is a 404 ``ResourceNotFound``); without a session, 401.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from trainforge.server.console import detail, views
from trainforge.server.console.listing import ListParams, list_json, list_page
from trainforge.server.console.render import require_session
from trainforge.service.jobs import JobService
from trainforge.store.jobs import JobStore

router = APIRouter(prefix="/console/api", include_in_schema=False, dependencies=[Depends(require_session)])


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


@router.get("/jobs")
def jobs(request: Request) -> dict[str, Any]:
    """One page of the jobs list for the list page's query parameters."""
    return list_json(list_page(_store(request), ListParams.parse(request.query_params)))


@router.get("/jobs/{name}")
def job_status(name: str, request: Request) -> dict[str, Any]:
    """Status, message, failure reason and timeline of one job."""
    return detail.status_json(_store(request).get(name), time.time())


@router.get("/jobs/{name}/logs")
def job_logs(
    name: str,
    request: Request,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 2000,
    host: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Log lines stored after ``cursor`` (of one host with ``host``), oldest first, and where to resume."""
    svc: JobService = request.app.state.jobs
    job, lines = svc.logs(name, cursor=cursor, limit=limit, host=host or None)
    return {
        "lines": [{"cursor": r.cursor, "host": r.host, "stream": r.stream, "message": r.message} for r in lines],
        "next_cursor": lines[-1].cursor if lines else cursor,
        "more": len(lines) == limit,
        "terminal": job.terminal,
    }


@router.get("/jobs/{name}/metrics")
def job_metrics(
    name: str, request: Request, metric: Annotated[list[str] | None, Query(max_length=40)] = None
) -> dict[str, Any]:
    """Metric points as ``{metric: {host: [[seconds since training start, value], ...]}}`` (``?metric=`` filters)."""
    store = _store(request)
    job = store.get(name)
    start = job.training_start_time or job.creation_time
    return {
        "start": start,
        "terminal": job.terminal,
        "series": views.metric_series(store.read_metrics(job.id, metric or None), start),
    }
