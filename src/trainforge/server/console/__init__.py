"""The web console at ``/console``: server-rendered pages over the job store, with small scripts of our own.

All assets (CSS, scripts, the SVG chart code) are served from this package; the console loads nothing from
the internet. Call :func:`install` once from the app factory.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

from trainforge.server.console import api, costs, inference_pages, pages
from trainforge.server.console.links import console_login_url
from trainforge.server.console.render import STATIC_DIR, LoginRequired, build_console, login_redirect
from trainforge.store.console import ConsoleNonceStore

__all__ = ["console_login_url", "install"]


def install(app: FastAPI) -> None:
    """Serve the console on ``app``: its state, static files, pages and JSON for its scripts.

    Needs ``app.state.settings``, ``.console_secret``, ``.users``, ``.store``, ``.jobs`` and ``.objects`` (the
    object store, local or S3; set by the app factory first). Requests without a session are sent to the login
    page (pages) or answered 401 (``/console/api``).
    """
    app.state.console = build_console(
        secret=app.state.console_secret,
        objects=app.state.objects,
        nonces=ConsoleNonceStore(app.state.store.engine),  # sign-outs and used tickets outlive the process
    )

    async def _login_required(request: Request, _exc: Exception) -> Response:
        return login_redirect(request)

    app.add_exception_handler(LoginRequired, _login_required)
    # Static files first: the pages router ends with a catch-all 404 page for /console/...
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(api.router)
    app.include_router(inference_pages.router)  # before pages: its catch-all 404 route comes last
    app.include_router(costs.router)  # before pages too
    app.include_router(pages.router)
