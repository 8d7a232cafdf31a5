"""Console sign-in: signed session cookies and one-time login tickets, each naming a user and a token id.

Both are signed (HMAC-SHA256) with the console secret, a random key kept in ``$TRAINFORGE_HOME/console.secret``
(mode 0600), not derived from anyone's API token:

- **sessions** ``<issued>.<user>.<token id>.<nonce>.<mac>``: the value of an ``HttpOnly``, ``SameSite=Strict``
  cookie scoped to ``/console`` (``Secure`` when the request came over https), valid for :data:`SESSION_MAX_AGE_S`;
- **tickets** ``<expires>.<user>.<token id>.<nonce>.<mac>``: what a login link carries, issued by the server to
  the holder of a token (``POST /v1/console/ticket``); each is accepted once, until it expires
  (:data:`TICKET_MAX_AGE_S` after it was made).

A session names the token it was signed in with: every request re-checks that the token is neither revoked nor
expired and that its user is still enabled (see ``render.current_session``), so disabling a user or revoking the
token ends the session at the next page load. Replacing the secret file ends every session.

Signed-out session nonces and used ticket nonces are kept in the job store's ``console_nonces`` table
(:class:`~trainforge.store.console.ConsoleNonceStore`), so a restarted server, or another server on the same
database, still refuses them; redeeming a ticket is one insert-if-absent, so two servers cannot both accept it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from fastapi import Request, Response

from trainforge.service.principal import Principal
from trainforge.service.remote_keys import ensure_secret

COOKIE = "trainforge_console"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_S = 7 * 86400
TICKET_MAX_AGE_S = 300
SECRET_FILE = "console.secret"
_FIELD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def ensure_console_secret(home: Path) -> bytes:
    """The console's signing key, kept in ``home/console.secret`` (0600), created on first use."""
    return ensure_secret(home / SECRET_FILE)


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, ":".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _split(value: str) -> tuple[int, str, str, str, str] | None:
    if len(value) > 512:
        return None
    parts = value.split(".")
    if len(parts) != 5 or not parts[0].isdigit() or not all(_FIELD.match(p) for p in parts[1:]):
        return None
    return int(parts[0]), parts[1], parts[2], parts[3], parts[4]


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser: its user, the token it signed in with, its nonce and the CSRF token its forms send.

    ``principal`` is filled in by the console once the user and token were re-checked for this request.
    """

    nonce: str
    issued: int
    csrf: str
    user: str
    token_id: str
    principal: Principal | None = None


class NonceStore(Protocol):
    """Where used tickets and signed-out sessions are kept (:class:`trainforge.store.console.ConsoleNonceStore`)."""

    def add_once(
        self, nonce: str, kind: Literal["ticket", "signout"], expires: float, *, now: float | None = None
    ) -> bool:
        """Record ``nonce``; ``True`` only for the call that stored it first."""
        ...

    def contains(self, nonce: str, kind: Literal["ticket", "signout"]) -> bool:
        """Whether ``nonce`` was recorded as ``kind``."""
        ...


class MemoryNonces:
    """A :class:`NonceStore` in this process's memory: forgotten at exit, for tools and tests without a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[str, float]] = {}

    def add_once(
        self, nonce: str, kind: Literal["ticket", "signout"], expires: float, *, now: float | None = None
    ) -> bool:
        """Record ``nonce``; ``True`` only the first time (expired entries are forgotten on the way)."""
        t = time.time() if now is None else now
        with self._lock:
            for old in [n for n, (_, until) in self._rows.items() if until < t]:
                del self._rows[old]
            if nonce in self._rows:
                return False
            self._rows[nonce] = (kind, expires)
            return True

    def contains(self, nonce: str, kind: Literal["ticket", "signout"]) -> bool:
        """Whether ``nonce`` was recorded as ``kind``."""
        with self._lock:
            row = self._rows.get(nonce)
        return row is not None and row[0] == kind


class Sessions:
    """Issues and checks the console's sessions and tickets (thread-safe); used tickets and sign-outs are kept
    in ``nonces`` (the database for a server, so they outlive it; this process's memory when not given)."""

    def __init__(self, secret: bytes, nonces: NonceStore | None = None) -> None:
        self._key = hmac.new(secret, b"trainforge-console-v2", hashlib.sha256).digest()
        self._nonces: NonceStore = nonces if nonces is not None else MemoryNonces()

    def make_ticket(self, user: str, token_id: str, *, now: float | None = None) -> tuple[str, float]:
        """A one-time login ticket for ``user`` (signed in with ``token_id``) and when it expires."""
        expires = int((time.time() if now is None else now) + TICKET_MAX_AGE_S)
        nonce = secrets.token_urlsafe(12)
        mac = _mac(self._key, "ticket", str(expires), user, token_id, nonce)
        return f"{expires}.{user}.{token_id}.{nonce}.{mac}", float(expires)

    def redeem_ticket(self, ticket: str, *, now: float | None = None) -> tuple[str, str] | None:
        """``(user, token id)`` the first time a valid, unexpired ticket is shown; ``None`` otherwise."""
        t = time.time() if now is None else now
        parts = _split(ticket)
        if parts is None:
            return None
        expires, user, token_id, nonce, mac = parts
        expected = _mac(self._key, "ticket", str(expires), user, token_id, nonce)
        if expires < t or not hmac.compare_digest(mac, expected):
            return None
        if not self._nonces.add_once(nonce, "ticket", float(expires), now=t):
            return None
        return user, token_id

    def issue(self, user: str, token_id: str, *, now: float | None = None) -> str:
        """A new session cookie value for ``user``, signed in with ``token_id``."""
        issued = str(int(time.time() if now is None else now))
        nonce = secrets.token_urlsafe(16)
        return f"{issued}.{user}.{token_id}.{nonce}.{_mac(self._key, 'session', issued, user, token_id, nonce)}"

    def verify(self, value: str | None, *, now: float | None = None) -> ConsoleSession | None:
        """The session a cookie value stands for, or ``None`` if it is forged, expired or signed out.

        Only the signature and age are checked here; the caller re-checks the user and the token.
        """
        if not value:
            return None
        parts = _split(value)
        if parts is None:
            return None
        issued, user, token_id, nonce, mac = parts
        t = time.time() if now is None else now
        if not issued - 60 <= t <= issued + SESSION_MAX_AGE_S:
            return None
        if not hmac.compare_digest(mac, _mac(self._key, "session", str(issued), user, token_id, nonce)):
            return None
        if self._nonces.contains(nonce, "signout"):
            return None
        csrf = _mac(self._key, "csrf", nonce)
        return ConsoleSession(nonce=nonce, issued=issued, csrf=csrf, user=user, token_id=token_id)

    def revoke(self, session: ConsoleSession, *, now: float | None = None) -> None:
        """Sign a session out: its cookie is refused from now on (by every server sharing the nonce store)."""
        self._nonces.add_once(session.nonce, "signout", float(session.issued + SESSION_MAX_AGE_S), now=now)

    @staticmethod
    def csrf_ok(session: ConsoleSession, given: str | None) -> bool:
        """Whether a form carried the session's CSRF token."""
        return bool(given) and hmac.compare_digest(str(given), session.csrf)


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
