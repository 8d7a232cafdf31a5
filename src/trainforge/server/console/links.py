"""Links that sign a browser straight into the console (what ``trainforge console`` opens or prints)."""

from __future__ import annotations

import json
from urllib.parse import quote

from trainforge.errors import AuthError, ServerUnavailableError
from trainforge.server.console.session import make_ticket
from trainforge.settings import Settings


def _server_url(settings: Settings) -> str:
    if settings.endpoint:
        return settings.endpoint.rstrip("/")
    try:
        url = json.loads(settings.server_file.read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        url = None
    if not url:
        raise ServerUnavailableError(
            f"no trainforge server is running for TRAINFORGE_HOME={settings.resolved_home} "
            "(start one with 'trainforge server start')"
        )
    return str(url).rstrip("/")


def _token(settings: Settings) -> str:
    if settings.token:
        return settings.token
    try:
        token = settings.token_path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise AuthError(f"no API token: set TRAINFORGE_TOKEN or create the server's token file ({settings.token_path})")
    return token


def console_login_url(settings: Settings) -> str:
    """``<server url>/console/login?ticket=...``: a link that signs a browser into the console once.

    The server is ``settings.endpoint`` or, for the embedded server, the url in ``server.json``; the ticket is
    signed with a key derived from the API token (``settings.token`` or ``$TRAINFORGE_HOME/token``), so the token
    itself is not in the link. The link works once, within five minutes; then the browser holds a session cookie.
    No request is made. Raises :class:`~trainforge.errors.ServerUnavailableError` when no server url is known
    and :class:`~trainforge.errors.AuthError` when no token is.
    """
    url = _server_url(settings)
    return f"{url}/console/login?ticket={quote(make_ticket(_token(settings)), safe='')}"
