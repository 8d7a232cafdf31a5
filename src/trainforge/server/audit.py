"""The audit middleware: one ``audit_events`` row for every write to the API and every console form post.

Audited: every request that is not ``GET``/``HEAD``/``OPTIONS`` under ``/v1/`` (except the supervisors'
``/v1/agent/...`` traffic) and under ``/console/``. The row is written before the response reaches the client
(so a client that reads the log right after its request finds the row), and holds:

- ``action``: the route's name (``create_training_job`` -> ``CreateTrainingJob``; console routes are named
  ``ConsoleSignIn``, ``ConsoleSignOut``, ``StopTrainingJob``, ``CloneTrainingJob``); an unknown path is
  ``"<METHOD> <path>"``;
- ``user``: who the request was authenticated as (``request.state.principal``), ``None`` when it was not;
- ``target``: the path's parameter (job name, user, token id), else the body's ``TrainingJobName`` or
  ``UserName``, or what the route put in ``request.state.audit_target``;
- ``source``: the client's address; ``outcome``: ``ok`` or the refusal's HTTP status (``401``, ``403``,
  ``404``, ``400``...); ``detail``: the refusal's message, the token id a refused request presented, and what
  the route put in ``request.state.audit_detail``.

A failed audit write is logged and never changes the response.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trainforge.service.audit import AuditLog, action_name

MAX_BODY_PEEK = 64 * 1024
_BODY_TARGETS = ("TrainingJobName", "UserName", "RoleName", "Name")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def audited(method: str, path: str) -> bool:
    """Whether a request is a write the audit log records."""
    if method.upper() in _READS or path.startswith("/v1/agent/") or path.endswith("/invocations"):
        return False  # supervisors' traffic, and endpoint invocations (data-plane calls, counted as metrics)
    return path.startswith("/v1/") or path.startswith("/console/")


def _body_target(body: bytes) -> str | None:
    if not body or len(body) >= MAX_BODY_PEEK:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in _BODY_TARGETS:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _error_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message", ""))[:500] or None
    return None


class AuditMiddleware:
    """Pure ASGI middleware writing the audit row of each audited request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # shared with the request objects the routes see
        body = bytearray()
        started: Message | None = None
        written = False

        async def peek_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < MAX_BODY_PEEK:
                body.extend(message.get("body", b"")[: MAX_BODY_PEEK + 1 - len(body)])
            return message

        async def audit_send(message: Message) -> None:
            nonlocal started, written
            if message["type"] == "http.response.start":
                started = message
                return
            if message["type"] == "http.response.body" and not written and started is not None:
                written = True
                last = not message.get("more_body", False)
                error = _error_message(message.get("body", b"")) if last and started["status"] >= 400 else None
                await self._write(scope, bytes(body), int(started["status"]), error)
                await send(started)
            await send(message)

        try:
            await self.app(scope, peek_receive, audit_send)
        except Exception:
            if not written:
                written = True
                await self._write(scope, bytes(body), 500, "internal error")
            raise

    async def _write(self, scope: Scope, body: bytes, status: int, error: str | None) -> None:
        app: Any = scope.get("app")
        audit: AuditLog | None = getattr(getattr(app, "state", None), "audit", None)
        if audit is None:
            return
        state: dict[str, Any] = scope.get("state", {})
        route = scope.get("route")
        name = getattr(route, "name", None)
        action = action_name(name) if name else f"{scope['method']} {scope['path']}"
        params: dict[str, Any] = scope.get("path_params") or {}
        target = state.get("audit_target") or next((str(v) for v in params.values() if v), None)
        target = target or _body_target(body)
        details = [d for d in (error, state.get("audit_detail")) if d]
        principal = state.get("principal")
        if principal is None and state.get("audit_token_id"):
            details.append(f"token {state['audit_token_id']}")
        client = scope.get("client")
        await to_thread.run_sync(
            partial(
                audit.record,
                action=action,
                outcome="ok" if status < 400 else str(status),
                user=getattr(principal, "user", None),
                target=target,
                source=client[0] if client else None,
                detail="; ".join(details) or None,
            )
        )
