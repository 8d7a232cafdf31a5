"""``/v1/models`` and ``/v1/endpoint-configs``: thin routes calling one :class:`ModelService` method each, for the
caller's user (another user's model or config is answered like an unknown one)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request

from trainforge.server.auth import Principal, current_user
from trainforge.service.models import ModelService

router = APIRouter(prefix="/v1", tags=["models"])
Caller = Annotated[Principal, Depends(current_user)]


def _svc(request: Request) -> ModelService:
    svc: ModelService = request.app.state.models
    return svc


async def _body(request: Request, target: str) -> Any:
    body = await request.json()
    if isinstance(body, dict) and isinstance(body.get(target), str):
        request.state.audit_target = body[target]
    return body


@router.post("/models", summary="CreateModel")
async def create_model(request: Request, caller: Caller) -> dict[str, Any]:
    """Record a model of the caller: ``{"ModelArn"}``."""
    body = await _body(request, "ModelName")
    return await to_thread.run_sync(_svc(request).create_model, body, caller)


@router.get("/models", summary="ListModels")
async def list_models(
    request: Request,
    caller: Caller,
    NameContains: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """The caller's models (an admin's: everyone's), newest first."""
    return await to_thread.run_sync(partial(_svc(request).list_models, caller, name_contains=NameContains))


@router.get("/models/{name}", summary="DescribeModel")
async def describe_model(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """DescribeModel."""
    return await to_thread.run_sync(_svc(request).describe_model, name, caller)


@router.delete("/models/{name}", summary="DeleteModel")
async def delete_model(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Delete a model (endpoints serving it keep their copy)."""
    return await to_thread.run_sync(_svc(request).delete_model, name, caller)


@router.post("/endpoint-configs", summary="CreateEndpointConfig")
async def create_endpoint_config(request: Request, caller: Caller) -> dict[str, Any]:
    """Record an endpoint config of the caller: ``{"EndpointConfigArn"}``."""
    body = await _body(request, "EndpointConfigName")
    return await to_thread.run_sync(_svc(request).create_endpoint_config, body, caller)


@router.get("/endpoint-configs", summary="ListEndpointConfigs")
async def list_endpoint_configs(request: Request, caller: Caller) -> dict[str, Any]:
    """The caller's endpoint configs (an admin's: everyone's), newest first."""
    return await to_thread.run_sync(_svc(request).list_endpoint_configs, caller)


@router.get("/endpoint-configs/{name}", summary="DescribeEndpointConfig")
async def describe_endpoint_config(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """DescribeEndpointConfig."""
    return await to_thread.run_sync(_svc(request).describe_endpoint_config, name, caller)


@router.delete("/endpoint-configs/{name}", summary="DeleteEndpointConfig")
async def delete_endpoint_config(name: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Delete an endpoint config (endpoints made from it keep their copy)."""
    return await to_thread.run_sync(_svc(request).delete_endpoint_config, name, caller)
