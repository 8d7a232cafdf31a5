"""``/v1/transform-jobs`` (users) and ``/v1/agent/transform-jobs`` (the jobs' serving supervisors).

Thin routes that call one service method each; shapes are those of :mod:`trainforge.inference_client`. Another
user's transform job is answered exactly like an unknown one (404) unless the caller is an admin.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from trainforge.backends.base import Backend
from trainforge.scheduler.instances import Machine
from trainforge.server.auth import Principal, bearer, current_user
from trainforge.server.log_events import log_page
from trainforge.service.transform_agent import TransformAgentService
from trainforge.service.transforms import TransformService
from trainforge.settings import Settings
from trainforge.store.inference_logs import InferenceLogStore
from trainforge.store.transforms import MAX_LIST, TransformJobRecord, TransformJobStore

router = APIRouter(prefix="/v1", tags=["transform-jobs"])
agent_router = APIRouter(prefix="/v1/agent/transform-jobs", tags=["agent"])
Caller = Annotated[Principal, Depends(current_user)]


def install(app: FastAPI, *, settings: Settings, machine: Machine, backend: Backend, wake: threading.Event) -> None:
    """Put the transform-job services on ``app.state`` (over the app's job store engine) and add the routes;
    ``wake`` is the scheduler's event, set when a job needs its attention."""
    store = TransformJobStore(app.state.store.engine)
    logs = InferenceLogStore(store.engine)
    app.state.transforms = TransformService(
        store=store, logs_store=logs, settings=settings, machine=machine, backend=backend, wake=wake
    )
    app.state.transform_agent = TransformAgentService(store=store, logs_store=logs, wake=wake)
    app.include_router(router)
    app.include_router(agent_router)


def _svc(request: Request) -> TransformService:
    svc: TransformService = request.app.state.transforms
    return svc


def _agent(request: Request) -> TransformAgentService:
    svc: TransformAgentService = request.app.state.transform_agent
    return svc


# -- users --------------------------------------------------------------------------------------------------


@router.post("/transform-jobs", summary="CreateTransformJob")
async def create_transform_job(request: Request, caller: Caller, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
    """Record a transform job of the caller (``InProgress``); the scheduler launches its instances."""
    if isinstance(body, dict) and isinstance(body.get("TransformJobName"), str):
        request.state.audit_target = body["TransformJobName"]
    return await to_thread.run_sync(_svc(request).create, body, caller)


@router.get("/transform-jobs", summary="ListTransformJobs")
async def list_transform_jobs(
    request: Request,
    caller: Caller,
    StatusEquals: str | None = None,
    NameContains: Annotated[str | None, Query(max_length=63)] = None,
    MaxResults: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
) -> dict[str, Any]:
    """The caller's transform jobs (everyone's for an admin), newest first."""
    return await to_thread.run_sync(
        partial(
            _svc(request).list_jobs,
            caller,
            status_equals=StatusEquals,
            name_contains=NameContains,
            max_results=MaxResults,
        )
    )


@router.get("/transform-jobs/{name}", summary="DescribeTransformJob")
async def describe_transform_job(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """The job in DescribeTransformJob's shape, plus ``TrainingJobName`` when its model came from one."""
    return await to_thread.run_sync(_svc(request).describe, name, caller)


@router.post("/transform-jobs/{name}/stop", summary="StopTransformJob")
async def stop_transform_job(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Request a stop: ``Stopping``, then ``Stopped`` once its instances have ended."""
    return await to_thread.run_sync(_svc(request).stop, name, caller)


@router.get("/transform-jobs/{name}/logs", summary="Read a transform job's log")
async def transform_job_logs(
    name: str,
    request: Request,
    caller: Caller,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    host: str | None = None,
) -> dict[str, Any]:
    """Lines of the job's instances after ``cursor``, oldest first, and the job's status."""
    job, lines = await to_thread.run_sync(
        partial(_svc(request).logs, name, caller, cursor=cursor, limit=limit, host=host)
    )
    return {**log_page(lines, cursor, attempt=False), "TransformJobStatus": job.status.value}


# -- supervisors --------------------------------------------------------------------------------------------


class InstanceReport(BaseModel):
    """A transform instance's own status."""

    host: str = Field(default="algo-1", max_length=64)
    status: str
    message: str | None = None
    failure_reason: str | None = None
    address: str | None = None


class InstanceLogBatch(BaseModel):
    """Lines of one instance, each with its sequence number."""

    host: str = Field(default="algo-1", max_length=64)
    lines: list[Any] = Field(default_factory=list, max_length=20000)


class InstanceHeartbeat(BaseModel):
    """An instance saying it is alive."""

    host: str = Field(default="algo-1", max_length=64)


async def _job(name: str, request: Request) -> TransformJobRecord:
    return await to_thread.run_sync(_agent(request).authorize, name, bearer(request))


@agent_router.post("/{name}/status")
async def report_transform_status(name: str, body: InstanceReport, request: Request) -> dict[str, Any]:
    """Apply an instance's status report; 409 when the job has ended or was relaunched."""
    job = await _job(name, request)
    return await to_thread.run_sync(
        partial(
            _agent(request).report_status,
            job,
            host=body.host,
            status=body.status,
            message=body.message,
            failure_reason=body.failure_reason,
        )
    )


@agent_router.post("/{name}/logs")
async def append_transform_logs(name: str, body: InstanceLogBatch, request: Request) -> dict[str, Any]:
    """Store a batch of an instance's lines; resending a batch never duplicates a line."""
    job = await _job(name, request)
    return await to_thread.run_sync(_agent(request).append_logs, job, body.host, body.lines)


@agent_router.post("/{name}/heartbeat")
async def transform_heartbeat(name: str, body: InstanceHeartbeat, request: Request) -> dict[str, Any]:
    """Note the instance is alive; the reply carries ``stop_requested``."""
    job = await _job(name, request)
    return await to_thread.run_sync(_agent(request).heartbeat, job, body.host)
