"""Who a request acts for: the bearer token resolved to its user on every ``/v1`` request (no caching).

The server's own token is created once per home directory (mode 0600) and belongs to the admin user.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import Request

from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.service.users import UserService, require_admin_principal, token_id_of

__all__ = ["ADMIN_USER", "Principal", "bearer", "current_user", "ensure_token", "require_admin"]


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


def current_user(request: Request) -> Principal:
    """Dependency: the user the request's bearer token belongs to.

    Raises ``AuthError`` (401) for a missing, unknown, expired or revoked token or a disabled user. The user is
    kept on ``request.state.principal`` for the audit log.
    """
    users: UserService = request.app.state.users
    token = bearer(request)
    if token is not None:
        request.state.audit_token_id = token_id_of(token)
    principal = users.authenticate(token).principal
    request.state.principal = principal
    return principal


def require_admin(request: Request) -> Principal:
    """Dependency: the request's user, who must be an admin (``PermissionDeniedError``, 403, otherwise)."""
    return require_admin_principal(current_user(request))
