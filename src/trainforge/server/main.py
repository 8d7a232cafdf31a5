"""Run the server in the foreground: bind, serve (http, or https with a certificate), and keep ``server.json``
true while it runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import uvicorn

from trainforge.errors import TrainforgeError, ValidationError
from trainforge.server import tls
from trainforge.server.app import create_app
from trainforge.settings import Settings

EXIT_SETTINGS = 2
"""Exit code of a server that could not start because of a setting (the CLI's usage/validation code)."""


def _previous_port(server_file: Path) -> int | None:
    try:
        return int(json.loads(server_file.read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def bind_socket(host: str, port: int, previous: int | None = None) -> socket.socket:
    """A listening socket on ``host:port``; with port 0 the previous run's port is tried first, so
    supervisors of running jobs find a restarted server where they left it."""
    candidates = [port] if port else ([previous] if previous else []) + [0]
    last_error: OSError | None = None
    for candidate in candidates:
        # IPPROTO_TCP (not 0) so asyncio turns on TCP_NODELAY for accepted connections: without it every
        # response on a kept-alive connection waits ~40 ms for the client's delayed ACK.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    raise OSError(f"could not bind {host}:{port}: {last_error}")


def write_server_file(
    path: Path, *, url: str, host: str, port: int, cert: Path | None = None, self_signed: bool = False
) -> None:
    """Publish ``{url, pid, host, port, started_at}`` atomically; an https server adds ``cert`` (the certificate it
    serves) and ``self_signed`` (whether that is the home's ``--tls self-signed`` certificate), so clients on this
    machine can say which file to trust."""
    record: dict[str, object] = {"url": url, "pid": os.getpid(), "host": host, "port": port, "started_at": time.time()}
    if cert is not None:
        record.update(cert=str(cert), self_signed=self_signed)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _refuse(exc: TrainforgeError) -> SystemExit:
    """Print ``exc`` as one ``error: ...`` line on stderr; the ``SystemExit`` to raise (2 for a bad setting)."""
    sys.stderr.write(f"error: {' '.join(exc.message.split())}\n")
    sys.stderr.flush()
    return SystemExit(EXIT_SETTINGS if isinstance(exc, ValidationError) else 1)


def serve(settings: Settings, *, self_signed: bool = False) -> None:
    """Serve until SIGINT/SIGTERM. Jobs keep running when the server stops: their supervisors are detached.

    With ``tls_cert``/``tls_key`` (or ``self_signed``: the home's own certificate, made once) it serves https and
    its URL in ``server.json`` is ``https://...``. A wildcard bind (``0.0.0.0``) is recorded as the loopback URL.
    A setting that keeps the server from starting (a certificate that cannot be served, plain http on a
    non-loopback host without ``insecure``, or ``create_app`` raising a ``TrainforgeError``, e.g. an S3 endpoint
    that cannot be reached) is printed as one ``error: ...`` line on stderr, then ``SystemExit`` with code 2
    (``ValidationError``) or 1.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    log = logging.getLogger(__name__)
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True)
    try:
        settings, cert = tls.prepare(settings, self_signed=self_signed)
    except TrainforgeError as exc:
        raise _refuse(exc) from None
    sock = bind_socket(settings.host, settings.port, _previous_port(settings.server_file))
    port = sock.getsockname()[1]
    scheme = "https" if cert is not None else "http"
    url = f"{scheme}://{tls.loopback_url_host(settings.host)}:{port}"
    if cert is not None:
        log.info(
            "serving https with %s certificate %s; clients verify it with TRAINFORGE_CA_BUNDLE=%s",
            "the self-signed" if cert.self_signed else "the",
            cert.cert,
            cert.cert if cert.self_signed else "<the CA certificate that signed it>",
        )

    def started() -> None:
        write_server_file(
            settings.server_file,
            url=url,
            host=settings.host,
            port=port,
            cert=cert.cert if cert else None,
            self_signed=bool(cert and cert.self_signed),
        )

    def stopped() -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(settings.server_file.read_text()).get("pid") == os.getpid():
                settings.server_file.unlink()

    try:
        app = create_app(settings, server_url=url, on_started=started, on_stopped=stopped)
    except TrainforgeError as exc:
        # A setting that cannot work (e.g. an unreachable S3 endpoint): one line saying which and how to fix it,
        # no traceback; ``trainforge server start`` shows this line. Exit 2 as the CLI does for bad settings.
        sock.close()
        raise _refuse(exc) from None
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        ssl_certfile=str(cert.cert) if cert else None,
        ssl_keyfile=str(cert.key) if cert else None,
    )
    uvicorn.Server(config).run(sockets=[sock])
