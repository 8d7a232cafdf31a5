"""``/v1/agent/training-jobs/{name}/...``: the routes a job's supervisors call with their job-scoped token."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from trainforge.server.auth import bearer
from trainforge.server.log_bus import LogBus
from trainforge.service import environment_locks
from trainforge.service.agent import AgentService
from trainforge.store.environment_locks import EnvironmentLockStore
from trainforge.store.records import JobRecord

router = APIRouter(prefix="/v1/agent/training-jobs", tags=["agent"])


class StatusReport(BaseModel):
    """A supervisor's secondary-status change."""

    host: str = "algo-1"
    status: str
    message: str | None = None
    failure_reason: str | None = None
    model_stored: bool | None = None  # a final report's: whether the job's model was stored (False: no artifact)
    lineage: dict[str, Any] | None = None  # what the host ran on (trainforge.spec.lineage), with Training and the end


class LogBatch(BaseModel):
    """Lines of one host, each with its sequence number."""

    host: str = "algo-1"
    lines: list[dict[str, Any]] = Field(default_factory=list, max_length=20000)


class Heartbeat(BaseModel):
    """A supervisor saying it is alive."""

    host: str = "algo-1"


class MetricBatch(BaseModel):
    """Metric points of one host."""

    host: str = "algo-1"
    points: list[dict[str, Any]] = Field(default_factory=list, max_length=20000)


def _svc(request: Request) -> AgentService:
    svc: AgentService = request.app.state.agent
    return svc


def _log_bus(request: Request) -> LogBus:
    bus: LogBus = request.app.state.log_bus
    return bus


async def _job(name: str, request: Request) -> JobRecord:
    return await to_thread.run_sync(_svc(request).authorize, name, bearer(request))


# Reports that change nothing the scheduler acts on (a running job's progress): they do not wake it, so its pass does
# not compete with the job's first lines for the server's two cores at the moment its code starts.
_RUNNING_STATUSES = frozenset({"Starting", "Downloading", "Training", "Uploading"})


@router.post("/{name}/status")
async def report_status(name: str, body: StatusReport, request: Request) -> dict[str, Any]:
    """Apply a status report; 409 when the job's status does not allow it."""
    job = await _job(name, request)
    svc = _svc(request)
    result = await to_thread.run_sync(
        lambda: svc.report_status(
            job,
            status=body.status,
            message=body.message,
            failure_reason=body.failure_reason,
            host=body.host,
            model_stored=body.model_stored,
            lineage=body.lineage,
        )
    )
    if body.status not in _RUNNING_STATUSES:  # an end frees room: the scheduler looks at once
        request.app.state.jobs.wake.set()
    _log_bus(request).publish(name)  # a status transition is an event of the job's follow streams
    return result


@router.post("/{name}/logs")
async def append_logs(name: str, body: LogBatch, request: Request) -> dict[str, Any]:
    """Store a batch of lines; resending a batch never duplicates a line."""
    job = await _job(name, request)
    result = await to_thread.run_sync(_svc(request).append_logs, job, body.host, body.lines)
    _log_bus(request).publish(name)
    return result


@router.post("/{name}/heartbeat")
async def heartbeat(name: str, body: Heartbeat, request: Request) -> dict[str, Any]:
    """Note the host is alive; the reply carries ``stop_requested``."""
    job = await _job(name, request)
    return await to_thread.run_sync(_svc(request).heartbeat, job, body.host)


@router.post("/{name}/metrics")
async def append_metrics(name: str, body: MetricBatch, request: Request) -> dict[str, Any]:
    """Store metric points ``{name, value, timestamp[, seq]}``; a resent point with a ``seq`` is stored once."""
    job = await _job(name, request)
    return await to_thread.run_sync(_svc(request).append_metrics, job, body.host, body.points)


class EnvironmentLockBody(BaseModel):
    """A ``requirements.txt`` layer's resolution, as ``uv pip compile --generate-hashes`` wrote it."""

    resolution: str
    python: str


def _environment_locks(request: Request) -> EnvironmentLockStore:
    return EnvironmentLockStore(request.app.state.store.engine)


@router.get("/{name}/environment-locks/{key}")
async def get_environment_lock(name: str, key: str, request: Request) -> dict[str, Any]:
    """The resolution stored under ``key`` (``{"Key", "Resolution", "Python", "CreatedTime"}``); 404 when none is."""
    await _job(name, request)
    return await to_thread.run_sync(environment_locks.get_environment_lock, _environment_locks(request), key)


@router.put("/{name}/environment-locks/{key}")
async def put_environment_lock(name: str, key: str, body: EnvironmentLockBody, request: Request) -> JSONResponse:
    """Store a resolution under ``key`` unless one is stored (first writer wins): 201 with it when this request
    stored it, 200 with the stored one otherwise -- the caller installs what the reply holds."""
    await _job(name, request)
    stored, created = await to_thread.run_sync(
        lambda: environment_locks.put_environment_lock(
            _environment_locks(request), key, resolution=body.resolution, python=body.python
        )
    )
    return JSONResponse(stored, status_code=201 if created else 200)
