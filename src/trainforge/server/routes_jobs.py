"""``/v1/training-jobs``: thin routes that validate and call one service method each, for the caller's user.

Another user's job is answered exactly like an unknown one (404) unless the caller is an admin.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from trainforge.server.auth import Principal, current_user
from trainforge.server.log_bus import LogBus
from trainforge.server.log_events import log_event, log_page
from trainforge.service.jobs import JobService
from trainforge.service.rerun import RerunService
from trainforge.spec.job import CreateTrainingJobRequest
from trainforge.store.jobs import ListQuery
from trainforge.store.records import JobRecord

router = APIRouter(prefix="/v1", tags=["training-jobs"])
Caller = Annotated[Principal, Depends(current_user)]
FOLLOW_PAGE = 1000  # lines read from the store per step of a follow stream
# A follow stream wakes when this process stores the job's lines or status; at the latest after this long it
# reads anyway (lines stored by another server process on the same database).
FOLLOW_FALLBACK_S = 1.0


def _svc(request: Request) -> JobService:
    svc: JobService = request.app.state.jobs
    return svc


@router.post("/training-jobs", summary="CreateTrainingJob")
async def create_training_job(body: CreateTrainingJobRequest, request: Request, caller: Caller) -> dict[str, Any]:
    """Record a job of the caller (``InProgress/Starting``); identical resubmission returns the same job."""
    return await to_thread.run_sync(_svc(request).submit, body, caller)


@router.get("/training-jobs", summary="ListTrainingJobs")
async def list_training_jobs(
    request: Request,
    caller: Caller,
    NameContains: Annotated[str | None, Query(max_length=63, pattern=r"^[a-zA-Z0-9\-]+$")] = None,
    StatusEquals: str | None = None,
    SortBy: str = "CreationTime",
    SortOrder: str = "Ascending",
    MaxResults: Annotated[int, Query(ge=1, le=100)] = 10,
    NextToken: Annotated[str | None, Query(max_length=8192)] = None,
    CreationTimeAfter: float | None = None,
    CreationTimeBefore: float | None = None,
    LastModifiedTimeAfter: float | None = None,
    LastModifiedTimeBefore: float | None = None,
) -> dict[str, Any]:
    """The caller's jobs (an admin's: everyone's) matching the filters, sorted, one page at a time."""
    query = ListQuery(
        name_contains=NameContains,
        status_equals=StatusEquals,
        sort_by=SortBy,
        sort_order=SortOrder,
        max_results=MaxResults,
        next_token=NextToken,
        creation_time_after=CreationTimeAfter,
        creation_time_before=CreationTimeBefore,
        last_modified_time_after=LastModifiedTimeAfter,
        last_modified_time_before=LastModifiedTimeBefore,
    )
    return await to_thread.run_sync(_svc(request).list_jobs, query, caller)


@router.get("/training-jobs/{name}", summary="DescribeTrainingJob")
async def describe_training_job(
    name: str, request: Request, caller: Caller, ShowSecrets: bool = False
) -> dict[str, Any]:
    """The job's full record in DescribeTrainingJob's shape; secret-looking values are ``****`` unless the
    job's owner asks ``ShowSecrets=true``."""
    return await to_thread.run_sync(partial(_svc(request).describe, name, caller, show_secrets=ShowSecrets))


@router.post("/training-jobs/{name}/stop", summary="StopTrainingJob")
async def stop_training_job(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Request a stop: ``Stopping`` then ``Stopped`` once the job's code has ended and artifacts are saved."""
    result = await to_thread.run_sync(_svc(request).stop, name, caller)
    log_bus: LogBus = request.app.state.log_bus
    log_bus.publish(name)  # followers show Stopping at once
    return result


class RerunBody(BaseModel):
    """Optional body of a rerun: the new job's name (default ``<name>-rerun-<n>``)."""

    TrainingJobName: str | None = None


@router.post("/training-jobs/{name}/rerun", summary="Rerun a training job", status_code=201)
async def rerun_training_job(
    name: str, request: Request, caller: Caller, body: RerunBody | None = None
) -> dict[str, Any]:
    """Submit the job's spec again (same image, code object, channels, hyperparameters, role) under a new name;
    ``Warnings`` say what changed since it ran (channel objects, code object)."""
    svc = RerunService(jobs=_svc(request), objects=request.app.state.objects)
    new_name = body.TrainingJobName if body is not None else None
    return await to_thread.run_sync(partial(svc.rerun, name, caller, new_name=new_name))


@router.get("/training-jobs/{name}/logs", summary="Read or follow a job's log", response_model=None)
async def job_logs(
    name: str,
    request: Request,
    caller: Caller,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    host: str | None = None,
    follow: bool = False,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any] | StreamingResponse:
    """Lines after ``cursor``; with ``follow=true`` an NDJSON stream of status and log events until the end.

    Each line carries the ``attempt`` (run of the job) whose host wrote it; ``attempt=N`` keeps that attempt's
    lines only (default: every attempt's, in the order they ran)."""
    svc = _svc(request)
    job, lines = await to_thread.run_sync(
        partial(svc.logs, name, caller, cursor=cursor, limit=limit, host=host, attempt=attempt)
    )
    if not follow:
        return {
            **log_page(lines, cursor),
            "TrainingJobStatus": job.status.value,
            "SecondaryStatus": job.secondary_status.value,
            "Attempt": job.attempt,
        }
    return StreamingResponse(
        follow_job_log(svc, caller, job, cursor, host, request, attempt), media_type="application/x-ndjson"
    )


def _status_event(job: JobRecord) -> dict[str, Any]:
    last = job.transitions[-1] if job.transitions else None
    return {
        "type": "status",
        "TrainingJobStatus": job.status.value,
        "SecondaryStatus": job.secondary_status.value,
        "StatusMessage": (last.message if last else job.status_message) or "",
        "Time": last.start_time if last else job.last_modified_time,
    }


async def follow_job_log(
    svc: JobService,
    caller: Principal,
    job: JobRecord,
    cursor: int,
    host: str | None,
    request: Request,
    attempt: int | None = None,
) -> AsyncIterator[bytes]:
    """The NDJSON follow stream of ``job`` for ``caller`` from ``cursor``: the current status, then log lines
    and status transitions in the order they happened, then ``{"type": "end", ...}`` once the job is terminal
    and its last lines were sent.

    Between two reads of the store it waits on the app's :class:`~trainforge.server.log_bus.LogBus` (woken the
    moment the agent routes store a batch or a status report for the job), and at most ``FOLLOW_FALLBACK_S``:
    lines stored by another server process on the same database still arrive, that much later.
    """

    def line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj) + "\n").encode()

    bus: LogBus = request.app.state.log_bus
    seen_transitions = len(job.transitions)
    yield line(_status_event(job))
    with bus.subscribe(job.name) as woken:
        while True:
            woken.clear()  # before reading: a batch stored after this wakes the wait below
            current, lines = await to_thread.run_sync(
                partial(svc.logs, job.name, caller, cursor=cursor, limit=FOLLOW_PAGE, host=host, attempt=attempt)
            )
            # A transition is placed after exactly the lines stored before it (its log_cursor): supervisors
            # send lines and status reports through one ordered queue, so this is where the status happened.
            events: list[tuple[float, dict[str, Any]]] = [
                (rec.cursor, {"type": "log", **log_event(rec)}) for rec in lines
            ]
            if len(current.transitions) > seen_transitions:
                for t in current.transitions[seen_transitions:]:
                    status = {
                        "type": "status",
                        "TrainingJobStatus": current.status.value,
                        "SecondaryStatus": t.status,
                        "StatusMessage": t.message or "",
                        "Time": t.start_time,
                    }
                    events.append((t.log_cursor + 0.5, status))
                seen_transitions = len(current.transitions)
            for _, event in sorted(events, key=lambda e: e[0]):
                yield line(event)
            if lines:
                cursor = lines[-1].cursor
            if current.terminal and not lines:
                # One last read: lines stored between our read and the terminal status.
                _, tail = await to_thread.run_sync(
                    partial(svc.logs, job.name, caller, cursor=cursor, limit=10000, host=host, attempt=attempt)
                )
                for rec in tail:
                    yield line({"type": "log", **log_event(rec)})
                    cursor = rec.cursor
                if not tail:
                    yield line(
                        {
                            "type": "end",
                            "TrainingJobStatus": current.status.value,
                            "SecondaryStatus": current.secondary_status.value,
                        }
                    )
                    return
            if await request.is_disconnected():
                return
            if current.terminal or len(lines) >= FOLLOW_PAGE:
                continue  # more to read at once: the rest of a long backlog, or the end of the job
            await woken.wait(FOLLOW_FALLBACK_S)
