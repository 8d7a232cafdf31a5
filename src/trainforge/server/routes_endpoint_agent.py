"""``/v1/agent/endpoints/{name}/...``: the routes an endpoint's serving supervisors call with their launch's token."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from trainforge.server.auth import bearer
from trainforge.service.endpoint_agent import EndpointAgentService
from trainforge.store.inference import EndpointRecord

router = APIRouter(prefix="/v1/agent/endpoints", tags=["agent"])


class InstanceReport(BaseModel):
    """One instance's status: ``Pending``, ``InService`` (with ``address``), ``Failed`` (with the reason),
    ``Stopped``."""

    host: str = "algo-1"
    status: str
    message: str | None = None
    failure_reason: str | None = None
    address: str | None = None


class LogBatch(BaseModel):
    """Lines of one instance, each with its sequence number."""

    host: str = "algo-1"
    lines: list[dict[str, Any]] = Field(default_factory=list, max_length=20000)


class Heartbeat(BaseModel):
    """An instance saying it is alive."""

    host: str = "algo-1"


def _svc(request: Request) -> EndpointAgentService:
    svc: EndpointAgentService = request.app.state.endpoint_agent
    return svc


async def _launch(name: str, request: Request) -> tuple[EndpointRecord, int]:
    return await to_thread.run_sync(_svc(request).authorize, name, bearer(request))


@router.post("/{name}/status")
async def report_endpoint_instance_status(name: str, body: InstanceReport, request: Request) -> dict[str, Any]:
    """Store an instance's status; the reply is ``{"EndpointStatus", "stop_requested"}``."""
    endpoint, attempt = await _launch(name, request)
    svc = _svc(request)
    return await to_thread.run_sync(
        lambda: svc.report_status(
            endpoint,
            attempt,
            host=body.host,
            status=body.status,
            message=body.message,
            failure_reason=body.failure_reason,
            address=body.address,
        )
    )


@router.post("/{name}/logs")
async def append_endpoint_logs(name: str, body: LogBatch, request: Request) -> dict[str, Any]:
    """Store a batch of lines; resending a batch never duplicates a line."""
    endpoint, attempt = await _launch(name, request)
    return await to_thread.run_sync(_svc(request).append_logs, endpoint, attempt, body.host, body.lines)


@router.post("/{name}/heartbeat")
async def endpoint_heartbeat(name: str, body: Heartbeat, request: Request) -> dict[str, Any]:
    """Note the instance is alive; the reply says whether it should stop."""
    endpoint, attempt = await _launch(name, request)
    return await to_thread.run_sync(_svc(request).heartbeat, endpoint, attempt, body.host)
