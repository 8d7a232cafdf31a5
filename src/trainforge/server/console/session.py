"""Console sign-in: a signed session cookie and one-time login tickets, both keyed from the API token.

The API token never leaves the server in a cookie or a link. A key is derived from it
(``HMAC-SHA256(token, "trainforge-console-v1")``) and signs:

- **sessions** ``<issued>.<nonce>.<mac>``: the value of an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to
  ``/console`` (``Secure`` when the request came over https), valid for :data:`SESSION_MAX_AGE_S`;
- **tickets** ``<expires>.<nonce>.<mac>``: what a login link carries; each is accepted once, until it expires
  (:data:`TICKET_MAX_AGE_S` after it was made).

Changing the token invalidates every session and ticket. Signing out revokes the session in this process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request, Response

COOKIE = "trainforge_console"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_S = 7 * 86400
TICKET_MAX_AGE_S = 300
_KEY_LABEL = b"trainforge-console-v1"


def console_key(token: str) -> bytes:
    """The signing key of the console for a server whose API token is ``token``."""
    return hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, ":".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_ticket(token: str, *, now: float | None = None) -> str:
    """A one-time login ticket for the server whose API token is ``token``, valid for five minutes."""
    expires = str(int((time.time() if now is None else now) + TICKET_MAX_AGE_S))
    nonce = secrets.token_urlsafe(12)
    return f"{expires}.{nonce}.{_mac(console_key(token), 'ticket', expires, nonce)}"


def _split(value: str) -> tuple[int, str, str] | None:
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1] or not parts[2] or len(value) > 256:
        return None
    return int(parts[0]), parts[1], parts[2]


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: its session nonce and the CSRF token its forms must send back."""

    nonce: str
    issued: int
    csrf: str


class Sessions:
    """Issues and checks the sessions and tickets of one server process (thread-safe)."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._key = console_key(token)
        self._lock = threading.Lock()
        self._used_tickets: dict[str, float] = {}
        self._revoked: dict[str, float] = {}

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is this server's API token (constant-time comparison)."""
        return hmac.compare_digest(given.strip().encode(), self._token.encode())

    def redeem_ticket(self, ticket: str, *, now: float | None = None) -> bool:
        """Accept a login ticket once: ``True`` the first time a valid, unexpired ticket is shown, else ``False``."""
        t = time.time() if now is None else now
        parts = _split(ticket)
        if parts is None:
            return False
        expires, nonce, mac = parts
        if expires < t or not hmac.compare_digest(mac, _mac(self._key, "ticket", str(expires), nonce)):
            return False
        with self._lock:
            self._forget_expired(t)
            if nonce in self._used_tickets:
                return False
            self._used_tickets[nonce] = expires
        return True

    def issue(self, *, now: float | None = None) -> str:
        """A new session cookie value."""
        issued = str(int(time.time() if now is None else now))
        nonce = secrets.token_urlsafe(16)
        return f"{issued}.{nonce}.{_mac(self._key, 'session', issued, nonce)}"

    def verify(self, value: str | None, *, now: float | None = None) -> ConsoleSession | None:
        """The session a cookie value stands for, or ``None`` if it is forged, expired or signed out."""
        if not value:
            return None
        parts = _split(value)
        if parts is None:
            return None
        issued, nonce, mac = parts
        t = time.time() if now is None else now
        if not issued - 60 <= t <= issued + SESSION_MAX_AGE_S:
            return None
        if not hmac.compare_digest(mac, _mac(self._key, "session", str(issued), nonce)):
            return None
        with self._lock:
            if nonce in self._revoked:
                return None
        return ConsoleSession(nonce=nonce, issued=issued, csrf=_mac(self._key, "csrf", nonce))

    def revoke(self, session: ConsoleSession, *, now: float | None = None) -> None:
        """Sign a session out: its cookie is refused from now on by this process."""
        with self._lock:
            self._forget_expired(time.time() if now is None else now)
            self._revoked[session.nonce] = session.issued + SESSION_MAX_AGE_S

    @staticmethod
    def csrf_ok(session: ConsoleSession, given: str | None) -> bool:
        """Whether a form carried the session's CSRF token."""
        return bool(given) and hmac.compare_digest(str(given), session.csrf)

    def _forget_expired(self, now: float) -> None:
        for table in (self._used_tickets, self._revoked):
            for nonce in [n for n, until in table.items() if until < now]:
                del table[nonce]


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (uvicorn applies trusted ``X-Forwarded-Proto``)."""
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    """Attach the session cookie: ``HttpOnly``, ``SameSite=Strict``, path ``/console``, ``Secure`` on https."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to drop the session cookie."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=is_https(request))
