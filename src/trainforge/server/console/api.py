"""JSON the console's scripts poll (signed-in session, no bearer token): list rows, job status, log, metrics;
and a job's log followed live (NDJSON stream).

Errors use the API's JSON body (an unknown job, or another user's for a user who is not an admin, is the same
404 ``ResourceNotFound``); without a session, 401.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from trainforge.server.console import detail, views
from trainforge.server.console.costs import prices_of
from trainforge.server.console.listing import ListParams, list_json, list_page
from trainforge.server.console.render import principal_of, require_session
from trainforge.server.console.session import ConsoleSession
from trainforge.server.routes_jobs import follow_job_log
from trainforge.service.jobs import JobService
from trainforge.store.jobs import JobStore

router = APIRouter(prefix="/console/api", include_in_schema=False, dependencies=[Depends(require_session)])


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def _svc(request: Request) -> JobService:
    svc: JobService = request.app.state.jobs
    return svc


@router.get("/jobs")
def jobs(request: Request, session: ConsoleSession = Depends(require_session)) -> dict[str, Any]:
    """One page of the jobs list for the list page's query parameters."""
    params = ListParams.parse(request.query_params)
    return list_json(list_page(_store(request), params, viewer=principal_of(session), prices=prices_of(request)))


@router.get("/jobs/{name}")
def job_status(name: str, request: Request, session: ConsoleSession = Depends(require_session)) -> dict[str, Any]:
    """Status, message, failure reason and timeline of one job."""
    return detail.status_json(_svc(request).owned(name, principal_of(session)), time.time())


@router.get("/jobs/{name}/logs")
def job_logs(
    name: str,
    request: Request,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 2000,
    host: Annotated[str | None, Query(max_length=64)] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    session: ConsoleSession = Depends(require_session),
) -> dict[str, Any]:
    """Log lines stored after ``cursor`` (of one host with ``host``, one attempt with ``attempt``), oldest first,
    and where to resume."""
    job, lines = _svc(request).logs(
        name, principal_of(session), cursor=cursor, limit=limit, host=host or None, attempt=attempt
    )
    return {
        "lines": [
            {"cursor": r.cursor, "host": r.host, "stream": r.stream, "message": r.message, "attempt": r.attempt}
            for r in lines
        ],
        "next_cursor": lines[-1].cursor if lines else cursor,
        "more": len(lines) == limit,
        "terminal": job.terminal,
    }


@router.get("/jobs/{name}/log-stream")
async def job_log_stream(
    name: str,
    request: Request,
    cursor: Annotated[int, Query(ge=0)] = 0,
    host: Annotated[str | None, Query(max_length=64)] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
    session: ConsoleSession = Depends(require_session),
) -> StreamingResponse:
    """The job's log followed live for the signed-in user: the NDJSON stream of
    ``GET /v1/training-jobs/{name}/logs?follow=true`` (status, log and end events) from ``cursor``."""
    svc = _svc(request)
    principal = principal_of(session)
    job = await to_thread.run_sync(svc.owned, name, principal)
    stream = follow_job_log(svc, principal, job, cursor, host or None, request, attempt)
    return StreamingResponse(stream, media_type="application/x-ndjson")


@router.get("/jobs/{name}/metrics")
def job_metrics(
    name: str,
    request: Request,
    metric: Annotated[list[str] | None, Query(max_length=40)] = None,
    session: ConsoleSession = Depends(require_session),
) -> dict[str, Any]:
    """Metric points as ``{metric: {host: [[seconds since training start, value], ...]}}`` (``?metric=`` filters)."""
    store = _store(request)
    job = _svc(request).owned(name, principal_of(session))
    start = job.training_start_time or job.creation_time
    return {
        "start": start,
        "terminal": job.terminal,
        "series": views.metric_series(store.read_metrics(job.id, metric or None), start),
    }
