"""Links that sign a browser straight into the console (what ``trainforge console`` opens or prints)."""

from __future__ import annotations

from urllib.parse import quote

from trainforge.admin_client import AdminClient
from trainforge.errors import AuthError
from trainforge.local_server import connect
from trainforge.settings import Settings


def console_login_url(settings: Settings) -> str:
    """``<server url>/console/login?ticket=...``: a link that signs a browser into the console once, as the user
    whose token these settings use.

    The server is ``settings.endpoint`` (with ``settings.token``) or the embedded server of the home (with its
    token file). The server issues the ticket to the token's user (``POST /v1/console/ticket``), so the token is
    not in the link. The link works once, within five minutes; then the browser holds a session cookie.

    Raises:
        ServerUnavailableError: No server url is known or the server cannot be reached.
        AuthError: No token is known, or the server refuses it.
    """
    if settings.endpoint and not settings.token:
        raise AuthError(f"no API token: set TRAINFORGE_TOKEN to your token for {settings.endpoint}")
    with connect(settings, start=False) as client:
        ticket = str(AdminClient(client).console_ticket()["Ticket"])
        base = client.base_url
    return f"{base}/console/login?ticket={quote(ticket, safe='')}"
