"""``/v1/roles``: role administration (admins only), and the data-key routes of encryption at rest.

``POST /v1/data-keys`` gives a user the key of an encrypted local-store object one of their roles may read (the
SDK reads the local store directly); ``POST /v1/agent/training-jobs/{name}/data-key`` gives a job's supervisor, with
its agent token, the key its job writes with or the key of an object its role may read.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from trainforge.server.auth import Principal, bearer, current_user, require_admin
from trainforge.service.keys import DataKeyService, server_keyring
from trainforge.service.roles import RoleService
from trainforge.store.roles import RoleStore

router = APIRouter(tags=["roles"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRole(_Body):
    """A new role: its name and its ``s3://`` prefixes."""

    RoleName: str = Field(max_length=64)
    Read: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=100)
    Write: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=100)
    Description: str | None = Field(default=None, max_length=1024)


class Grant(_Body):
    """Grant a role to a user (``Default``: make it the user's default role)."""

    UserName: str = Field(max_length=64)
    Default: bool = False


class UserKeyRequest(_Body):
    """The encrypted object whose key is wanted."""

    uri: str = Field(max_length=2048)


class AgentKeyRequest(_Body):
    """What a supervisor needs: the key to write with (``for_write`` and its ``key_id``) or to read ``uri``."""

    key_id: str | None = Field(default=None, max_length=2048)
    uri: str | None = Field(default=None, max_length=2048)
    for_write: bool = False


def install(app: FastAPI, *, roles: RoleService) -> None:
    """Put the role and data-key services on ``app.state`` (needs ``.settings`` and ``.objects``) and add the
    routes."""
    app.state.roles = roles
    app.state.data_keys = DataKeyService(
        keyring=server_keyring(app.state.settings), objects=app.state.objects, roles=roles
    )
    app.include_router(router)


def open_roles(engine: Any, *, account_id: str, admin_user: str) -> RoleService:
    """The role service over the job store's database, with the built-in role granted to ``admin_user``."""
    service = RoleService(RoleStore(engine), account_id=account_id)
    service.ensure_builtin(admin_user)
    return service


def _roles(request: Request) -> RoleService:
    svc: RoleService = request.app.state.roles
    return svc


def _keys(request: Request) -> DataKeyService:
    svc: DataKeyService = request.app.state.data_keys
    return svc


@router.post("/v1/roles", summary="CreateRole", dependencies=[Depends(require_admin)])
async def create_role(body: CreateRole, request: Request) -> dict[str, Any]:
    """Create a role granting ``Read`` and ``Write`` prefixes (a write grant implies read)."""
    svc = _roles(request)
    return await to_thread.run_sync(
        lambda: svc.create(body.RoleName, read=body.Read, write=body.Write, description=body.Description)
    )


@router.get("/v1/roles", summary="ListRoles", dependencies=[Depends(require_admin)])
async def list_roles(request: Request) -> dict[str, Any]:
    """Every role with its prefixes and the users it is granted to."""
    return await to_thread.run_sync(_roles(request).list_roles)


@router.delete("/v1/roles/{name}", summary="DeleteRole", dependencies=[Depends(require_admin)])
async def delete_role(name: str, request: Request) -> dict[str, Any]:
    """Delete a role and its grants (jobs already submitted keep the role they resolved)."""
    await to_thread.run_sync(_roles(request).delete, name)
    return {}


@router.post("/v1/roles/{name}/grants", summary="GrantRole", dependencies=[Depends(require_admin)])
async def grant_role(name: str, body: Grant, request: Request) -> dict[str, Any]:
    """Let a user pass the role; the first role a user gets (or one granted with ``Default``) is their default."""
    svc = _roles(request)
    return await to_thread.run_sync(lambda: svc.grant(name, body.UserName, make_default=body.Default))


@router.delete("/v1/roles/{name}/grants/{user}", summary="RevokeRole", dependencies=[Depends(require_admin)])
async def revoke_role(name: str, user: str, request: Request) -> dict[str, Any]:
    """Take the role from the user."""
    svc = _roles(request)
    return await to_thread.run_sync(lambda: svc.revoke(name, user))


@router.post("/v1/data-keys", summary="GetDataKey")
async def user_data_key(
    body: UserKeyRequest, request: Request, principal: Annotated[Principal, Depends(current_user)]
) -> dict[str, Any]:
    """``{"KeyId", "Key"}`` (base64) of the encrypted local-store object ``uri``, if the caller may read it."""
    svc = _keys(request)
    return await to_thread.run_sync(lambda: svc.for_user(principal, body.uri))


@router.post("/v1/agent/training-jobs/{name}/data-key", tags=["agent"])
async def agent_data_key(name: str, body: AgentKeyRequest, request: Request) -> dict[str, Any]:
    """``{"KeyId", "Key"}`` for a job's supervisor (agent token): its own write key or a readable object's key."""
    job = await to_thread.run_sync(request.app.state.agent.authorize, name, bearer(request))
    svc = _keys(request)
    return await to_thread.run_sync(
        lambda: svc.for_job(job, uri=body.uri, key_id=body.key_id, for_write=body.for_write)
    )
