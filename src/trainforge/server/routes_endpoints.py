"""``/v1/endpoints``: endpoints, their invocations, logs and metrics, for the caller's user.

Another user's endpoint is answered like an unknown one: 404 ``Could not find endpoint "<name>".``. The invocation
route reads nothing from the database on its way (see :mod:`trainforge.service.invocations`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from trainforge.scheduler.endpoints import EndpointReconciler
from trainforge.server import routes_endpoint_agent, routes_models
from trainforge.server.auth import Principal, bearer, current_user
from trainforge.server.log_events import log_page
from trainforge.service.endpoint_agent import EndpointAgentService
from trainforge.service.endpoints import EndpointService
from trainforge.service.invocations import InvocationMetrics, InvocationRouter
from trainforge.service.models import ModelService
from trainforge.spec.endpoints import INVOCABLE
from trainforge.store.inference import EndpointConfigStore, EndpointStore, ModelStore
from trainforge.store.inference_logs import InferenceLogStore
from trainforge.store.users import UserStore

if TYPE_CHECKING:
    from trainforge.scheduler.loop import Scheduler

router = APIRouter(prefix="/v1", tags=["endpoints"])
Caller = Annotated[Principal, Depends(current_user)]
AUTH_CACHE_S = 5.0  # how long the invocation route trusts a token it checked (a revoked token: at most this long)
_AUTH_CACHE_MAX = 4096


def _svc(request: Request) -> EndpointService:
    svc: EndpointService = request.app.state.endpoints
    return svc


@router.post("/endpoints", summary="CreateEndpoint")
async def create_endpoint(request: Request, caller: Caller) -> dict[str, Any]:
    """Create an endpoint of the caller (``Creating``): ``{"EndpointArn"}``."""
    body = await request.json()
    if isinstance(body, dict) and isinstance(body.get("EndpointName"), str):
        request.state.audit_target = body["EndpointName"]
    return await to_thread.run_sync(_svc(request).create, body, caller)


@router.get("/endpoints", summary="ListEndpoints")
async def list_endpoints(request: Request, caller: Caller, StatusEquals: str | None = None) -> dict[str, Any]:
    """The caller's endpoints (an admin's: everyone's), newest first."""
    return await to_thread.run_sync(partial(_svc(request).list_endpoints, caller, status=StatusEquals))


@router.get("/endpoints/{name}", summary="DescribeEndpoint")
async def describe_endpoint(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """DescribeEndpoint plus ``ModelName``, ``TrainingJobName`` and ``Instances``."""
    return await to_thread.run_sync(_svc(request).describe, name, caller)


@router.post("/endpoints/{name}/update", summary="UpdateEndpoint")
async def update_endpoint(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Serve another endpoint config (``Updating``, then ``InService`` on it)."""
    body = await request.json()
    return await to_thread.run_sync(_svc(request).update, name, body, caller)


@router.delete("/endpoints/{name}", summary="DeleteEndpoint")
async def delete_endpoint(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Delete an endpoint (``Deleting``; its instances are stopped, then the record is removed)."""
    return await to_thread.run_sync(_svc(request).delete, name, caller)


@router.get("/endpoints/{name}/logs", summary="Read an endpoint's log")
async def endpoint_logs(
    name: str,
    request: Request,
    caller: Caller,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    host: str | None = None,
) -> dict[str, Any]:
    """Lines of the endpoint's instances after ``cursor`` (kept after the endpoint is deleted)."""
    lines, status = await to_thread.run_sync(
        partial(_svc(request).logs, name, caller, cursor=cursor, limit=limit, host=host)
    )
    out = log_page(lines, cursor)
    if status is not None:
        out["EndpointStatus"] = status
    return out


@router.get("/endpoints/{name}/metrics", summary="An endpoint's invocation metrics")
async def endpoint_metrics(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Per-minute ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors``, ``ModelLatency``,
    ``OverheadLatency`` points, and their totals."""
    return await to_thread.run_sync(_svc(request).metrics_of, name, caller)


async def _principal(request: Request) -> Principal:
    """The caller, from a short in-memory cache of checked tokens (the full check at most every few seconds)."""
    token = bearer(request) or ""
    key = hashlib.sha256(token.encode()).hexdigest()
    cache: dict[str, tuple[Principal, float]] = request.app.state.invocation_auth
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        request.state.principal = hit[0]
        return hit[0]
    principal = await to_thread.run_sync(current_user, request)
    if len(cache) >= _AUTH_CACHE_MAX:
        cache.clear()
    cache[key] = (principal, now + AUTH_CACHE_S)
    return principal


@router.post("/endpoints/{name}/invocations", summary="InvokeEndpoint", response_model=None)
async def invoke_endpoint(name: str, request: Request) -> Response:
    """Forward the raw body (``Content-Type``, ``Accept``, ``X-Amzn-SageMaker-Custom-Attributes``) to a serving
    instance and answer with the model's body, ``Content-Type`` and ``X-Amzn-Invoked-Production-Variant``."""
    started = time.perf_counter()
    principal = await _principal(request)
    invocations: InvocationRouter = request.app.state.invocations
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        invocations.check_size(int(declared))
    route = invocations.route(name)
    if route is None or route.status not in INVOCABLE or not route.instances:
        # Unknown here, or not serving: the store decides (the reconciler may have moved it since its last pass).
        route = await to_thread.run_sync(_svc(request).route, name)
    route = invocations.check(route, name, principal)
    body = await request.body()
    invocations.check_size(len(body))
    content, content_type, extra = await invocations.invoke(
        route, body, invocations.forwarded_headers(request.headers), started
    )
    return Response(content=content, headers={"Content-Type": content_type, **extra})


def install(
    app: FastAPI,
    *,
    scheduler: Scheduler,
    storage: dict[str, Any],
    resolve_role: Callable[[Principal, str], dict[str, Any] | None] | None,
    users: UserStore | None,
) -> None:
    """Put the model, endpoint and endpoint-agent services on ``app.state``, include their routes, and make the
    endpoint reconciler part of each ``scheduler`` pass."""
    engine = scheduler.store.engine
    endpoints_store = EndpointStore(engine)
    logs = InferenceLogStore(engine)
    metrics = InvocationMetrics(endpoints_store)
    invocations = InvocationRouter(endpoints_store, metrics)
    models = ModelService(
        models=ModelStore(engine),
        configs=EndpointConfigStore(engine),
        settings=scheduler.settings,
        machine=scheduler.machine,
        backend=scheduler.backend,
        resolve_role=resolve_role,
    )
    service = EndpointService(
        store=endpoints_store,
        models=models,
        logs_store=logs,
        settings=scheduler.settings,
        router=invocations,
        metrics=metrics,
        users=users,
        wake=scheduler.wake,
    )
    app.state.models = models
    app.state.endpoints = service
    app.state.endpoint_agent = EndpointAgentService(store=endpoints_store, logs=logs, wake=scheduler.wake)
    app.state.invocations = invocations
    app.state.invocation_auth = {}
    app.include_router(routes_models.router)
    app.include_router(router)
    app.include_router(routes_endpoint_agent.router)
    scheduler.endpoints = EndpointReconciler(
        store=endpoints_store,
        backend=scheduler.backend,
        settings=scheduler.settings,
        machine=scheduler.machine,
        server_url=scheduler.server_url,
        storage=storage,
        on_pass=service.refresh_routes,
    )
