"""The console's per-app state, its sign-in guard, and HTML responses (Jinja2, autoescaped, strict headers)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from trainforge.errors import AuthError, ValidationError
from trainforge.server.console import views
from trainforge.server.console.session import COOKIE, ConsoleSession, NonceStore, Sessions
from trainforge.service.principal import Principal
from trainforge.service.users import UserService
from trainforge.storage import ObjectStore

BASE = "/console"
PACKAGE_DIR = Path(str(resources.files("trainforge.server.console")))
STATIC_DIR = PACKAGE_DIR / "static"
MAX_FORM_BYTES = 64 * 1024

# No inline script or style anywhere: data reaches scripts as JSON in <script type="application/json">.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """Raised by :func:`require_session`: pages redirect to the login page, ``/console/api`` answers 401."""


@dataclass
class Console:
    """What the console keeps per app: sessions, templates, the object store it serves artifacts from."""

    sessions: Sessions
    templates: jinja2.Environment
    objects: ObjectStore
    static_version: str


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def build_console(*, secret: bytes, objects: ObjectStore, nonces: NonceStore | None = None) -> Console:
    """The console state for a server whose console key is ``secret``, whose artifacts are in ``objects`` and
    whose used tickets and sign-outs are kept in ``nonces`` (the database; this process's memory if not given)."""
    version = _static_version()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(base=BASE, static=lambda name: f"{BASE}/static/{quote(name)}?v={version}")
    env.filters.update(
        duration=views.fmt_duration,
        time=views.fmt_time,
        size=views.fmt_size,
        metric=views.fmt_value,
        q=lambda value: quote(str(value), safe=""),
    )
    return Console(
        sessions=Sessions(secret, nonces),
        templates=env,
        objects=objects,
        static_version=version,
    )


def console_of(request: Request) -> Console:
    """The console state of the app serving ``request``."""
    console: Console = request.app.state.console
    return console


def current_session(request: Request) -> ConsoleSession | None:
    """The signed-in session of ``request``: its cookie is valid, its token neither revoked nor expired and its
    user enabled, checked now (nothing is cached). The session's ``principal`` is filled in and kept on
    ``request.state.principal``."""
    cached: ConsoleSession | None = getattr(request.state, "console_session", None)
    if cached is not None:
        return cached
    session = console_of(request).sessions.verify(request.cookies.get(COOKIE))
    if session is None:
        return None
    users: UserService = request.app.state.users
    try:
        principal = users.recheck(session.user, session.token_id)
    except AuthError:
        return None
    session = replace(session, principal=principal)
    request.state.principal = principal
    request.state.console_session = session
    return session


def principal_of(session: ConsoleSession) -> Principal:
    """The user a checked session acts for."""
    if session.principal is None:
        raise LoginRequired()
    return session.principal


def require_session(request: Request) -> ConsoleSession:
    """Dependency: the request's session; :class:`LoginRequired` when it has none."""
    session = current_session(request)
    if session is None:
        raise LoginRequired()
    return session


def safe_next(target: str | None) -> str:
    """A post-login destination inside the console (anything else becomes the jobs list)."""
    if target and target.startswith(BASE + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{BASE}/jobs"


def login_redirect(request: Request) -> Response:
    """Answer to a request without a session: a redirect to the login page, or 401 JSON for ``/console/api``."""
    if request.url.path.startswith(f"{BASE}/api/"):
        err = AuthError("sign in to the console first")
        return JSONResponse(err.to_body(), status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{BASE}/login?next={quote(target, safe='')}", status_code=303)


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: ConsoleSession | None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` (autoescaped) with the console's security headers."""
    console = console_of(request)
    html = console.templates.get_template(template).render(
        session=session, csrf=session.csrf if session else "", **context
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(request: Request, *, status_code: int, title: str, message: str) -> HTMLResponse:
    """A plain HTML error page (404 for unknown jobs and routes)."""
    return page(
        request,
        "error.html",
        {"title": title, "message": message, "status_code": status_code},
        session=current_session(request),
        status_code=status_code,
    )


def redirect(url: str) -> RedirectResponse:
    """A 303 See Other to ``url`` (after a form POST), with the security headers."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body (first value of each); at most 64 KiB."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationError("the form is too large", field="(body)")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("the form could not be read", field="(body)") from exc
    return {key: values[0] for key, values in fields.items()}
