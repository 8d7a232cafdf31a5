"""The API token: created once per home directory (mode 0600) and checked on every ``/v1`` route."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from trainforge.errors import AuthError, PermissionDeniedError


def ensure_token(path: Path) -> str:
    """The token stored at ``path``, creating it (0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def bearer(request: Request) -> str | None:
    """The bearer token of a request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


ADMIN_USER = "admin"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user name, and whether that user is an admin."""

    user: str
    admin: bool


def current_user(request: Request) -> Principal:
    """Dependency: the user the request's bearer token belongs to (401 otherwise)."""
    require_user(request)
    return Principal(user=ADMIN_USER, admin=True)


def require_admin(request: Request) -> Principal:
    """Dependency: the request's user, who must be an admin (403 otherwise)."""
    principal = current_user(request)
    if not principal.admin:
        raise PermissionDeniedError(f"user {principal.user!r} is not an admin; ask an admin to do this")
    return principal


def require_user(request: Request) -> None:
    """Dependency: the request carries the server's API token, else 401."""
    expected: str = request.app.state.token
    given = bearer(request)
    if given is None:
        raise AuthError(
            "missing credentials: send 'Authorization: Bearer <token>' (the token is in $TRAINFORGE_HOME/token)"
        )
    if not hmac.compare_digest(given, expected):
        raise AuthError("the API token is not valid for this server")
