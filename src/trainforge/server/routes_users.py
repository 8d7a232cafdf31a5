"""``/v1/users``, ``/v1/tokens``, ``/v1/audit`` (admins only), ``/v1/users/me`` and ``/v1/console/ticket``.

A new user's first token, and every new token, is in the answer to the request that made it and nowhere else.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from trainforge.server.auth import Principal, current_user, require_admin
from trainforge.server.console.render import console_of
from trainforge.service.users import UserService, audit_json, token_json, user_json
from trainforge.store.users import MAX_AUDIT_RESULTS, AuditQuery

router = APIRouter(prefix="/v1", tags=["users"])
Caller = Annotated[Principal, Depends(current_user)]
Admin = Annotated[Principal, Depends(require_admin)]


class CreateUserRequest(BaseModel):
    """``POST /v1/users``."""

    model_config = ConfigDict(extra="forbid")
    UserName: str = Field(min_length=1, max_length=64)
    Admin: bool = False


class CreateTokenRequest(BaseModel):
    """``POST /v1/tokens``."""

    model_config = ConfigDict(extra="forbid")
    UserName: str = Field(min_length=1, max_length=64)
    ExpiresIn: str | None = Field(default=None, max_length=32, description="e.g. 30d, 12h, 45m, 3600s")
    Description: str | None = Field(default=None, max_length=255)


def _svc(request: Request) -> UserService:
    svc: UserService = request.app.state.users
    return svc


@router.get("/users/me", summary="The caller's user")
async def get_me(request: Request, caller: Caller) -> dict[str, Any]:
    """``{"UserName", "Admin", "DefaultRole"}`` of the user whose token made the request."""
    return await to_thread.run_sync(_svc(request).me, caller)


@router.post("/users", summary="CreateUser (admin)")
async def create_user(body: CreateUserRequest, request: Request, _admin: Admin) -> dict[str, Any]:
    """Create a user and their first token, returned here only (``Token``)."""
    user, token, record = await to_thread.run_sync(partial(_svc(request).create_user, body.UserName, admin=body.Admin))
    request.state.audit_detail = f"token {record.token_id}"
    return {**user_json(user), "Token": token, "TokenId": record.token_id}


@router.get("/users", summary="ListUsers (admin)")
async def list_users(request: Request, _admin: Admin) -> dict[str, Any]:
    """Every user, by name."""
    users = await to_thread.run_sync(_svc(request).list_users)
    return {"Users": [user_json(u) for u in users]}


@router.post("/users/{name}/disable", summary="DisableUser (admin)")
async def disable_user(name: str, request: Request, admin: Admin) -> dict[str, Any]:
    """Disable a user: their tokens and console sessions are refused from the next request on."""
    user = await to_thread.run_sync(partial(_svc(request).disable_user, name, by=admin))
    return user_json(user)


@router.post("/tokens", summary="CreateToken (admin)")
async def create_token(body: CreateTokenRequest, request: Request, _admin: Admin) -> dict[str, Any]:
    """A new token for a user, returned here only (``Token``); ``ExpiresIn`` like ``30d`` or ``12h``."""
    call = partial(_svc(request).create_token, body.UserName, expires_in=body.ExpiresIn, description=body.Description)
    token, record = await to_thread.run_sync(call)
    request.state.audit_detail = f"token {record.token_id}"
    return {**token_json(record, time.time()), "Token": token}


@router.get("/tokens", summary="ListTokens (admin)")
async def list_tokens(
    request: Request, _admin: Admin, UserName: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    """Tokens (of ``UserName`` only, when given), oldest first; never their secrets."""
    tokens = await to_thread.run_sync(_svc(request).list_tokens, UserName)
    now = time.time()
    return {"Tokens": [token_json(t, now) for t in tokens]}


@router.post("/tokens/{token_id}/revoke", summary="RevokeToken (admin)")
async def revoke_token(token_id: str, request: Request, _admin: Admin) -> dict[str, Any]:
    """Revoke a token: refused from the next request on. Revoking it again changes nothing."""
    record = await to_thread.run_sync(_svc(request).revoke_token, token_id)
    return token_json(record, time.time())


@router.get("/audit", summary="Read the audit log (admin)")
async def read_audit(
    request: Request,
    _admin: Admin,
    UserName: Annotated[str | None, Query(max_length=64)] = None,
    Action: Annotated[str | None, Query(max_length=64)] = None,
    Target: Annotated[str | None, Query(max_length=255)] = None,
    Since: float | None = None,
    Until: float | None = None,
    MaxResults: Annotated[int, Query(ge=1, le=MAX_AUDIT_RESULTS)] = 100,
) -> dict[str, Any]:
    """Audit events, newest first: filter by user, action, target (job, user, token id) and time (epoch seconds)."""
    query = AuditQuery(user=UserName, action=Action, target=Target, since=Since, until=Until, limit=MaxResults)
    events = await to_thread.run_sync(_svc(request).audit, query)
    return {"Events": [audit_json(e) for e in events]}


@router.post("/console/ticket", summary="A one-time console sign-in ticket for the caller")
async def create_console_ticket(request: Request, caller: Caller) -> dict[str, Any]:
    """``{"Ticket", "ExpiresTime"}``: open ``/console/login?ticket=<Ticket>`` once, within five minutes."""
    token_id = request.state.audit_token_id
    ticket, expires = console_of(request).sessions.make_ticket(caller.user, token_id)
    return {"Ticket": ticket, "ExpiresTime": expires}
