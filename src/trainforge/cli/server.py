"""``trainforge server start|stop|status|run|check``: the embedded server of ``TRAINFORGE_HOME``, and the
integrity check of its store."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainforge.cli.output import print_json
from trainforge.local_server import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ServerInfo,
    ensure_server,
    find_server,
    stop_server,
)
from trainforge.server import tls
from trainforge.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 4


def _embedded(settings: Settings) -> Settings:
    """The settings with any client endpoint removed: these commands manage the local server."""
    return settings.model_copy(update={"endpoint": None}) if settings.endpoint else settings


_SERVE_FLAGS = ("host", "port", "tls", "tls_cert", "tls_key", "insecure")


def _serving(args: argparse.Namespace, settings: Settings) -> tuple[Settings, tls.CertificateFiles | None]:
    """The embedded server's settings with ``--host/--port/--tls-cert/--tls-key/--insecure`` applied, checked, and
    with ``--tls self-signed`` the home's certificate made or reused (:func:`trainforge.server.tls.prepare`).

    Raises:
        ValidationError: A flag cannot work (names it), or the server would serve plain http to the network.
    """
    update: dict[str, Any] = {}
    if args.host is not None:
        update["host"] = args.host
    if args.port is not None:
        update["port"] = args.port
    if args.tls_cert is not None:
        update["tls_cert"] = Path(args.tls_cert)
    if args.tls_key is not None:
        update["tls_key"] = Path(args.tls_key)
    if args.insecure:
        update["insecure"] = True
    embedded = _embedded(settings)
    return tls.prepare(embedded.model_copy(update=update) if update else embedded, self_signed=args.tls is not None)


def _tls_lines(info: ServerInfo, generated: bool) -> str:
    if info.cert is None:
        return ""
    if info.self_signed:
        made = "made now" if generated else "reused"
        return (
            f"TLS: self-signed certificate {info.cert} ({made}). Clients on this machine trust it with\n"
            f"  export TRAINFORGE_CA_BUNDLE={info.cert}\n"
            "and on other machines with a copy of that file (it holds no secret; the key stays in the home).\n"
        )
    return f"TLS: serving {info.cert}; clients verify it with TRAINFORGE_CA_BUNDLE set to the CA that signed it\n"


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the embedded server detached (https with ``--tls-cert``/``--tls self-signed``), or report the one
    already running."""
    serving, cert = _serving(args, settings)
    info = ensure_server(serving, timeout_s=args.timeout)
    generated = bool(cert and cert.generated)
    if args.output == "json":
        print_json({**info.to_dict(), "cert_generated": generated})
        return EXIT_OK
    verb = "started" if info.started else "already running:"
    sys.stdout.write(f"trainforge server {verb} {info.url} (pid {info.pid}, home {info.home})\n")
    sys.stdout.write(_tls_lines(info, generated))
    if not info.started and any(getattr(args, flag) not in (None, False) for flag in _SERVE_FLAGS):
        sys.stdout.write("note: the running server keeps its settings; `trainforge server stop` first to change them\n")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the embedded server (SIGTERM, then SIGKILL after the timeout); succeed if none runs."""
    result = stop_server(_embedded(settings), timeout_s=args.timeout)
    if args.output == "json":
        print_json(asdict(result))
    else:
        sys.stdout.write(result.message + "\n")
    return EXIT_OK if result.stopped else EXIT_FAILED


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Report whether the server answers; exit 4 when it does not."""
    info = find_server(settings)
    if args.output == "json":
        data: dict[str, object] = {"running": info is not None, "url": None, "pid": None, "version": None}
        data["home"] = None if settings.endpoint else str(settings.resolved_home)
        if info is not None:
            data.update(info.to_dict())
            data.pop("started")  # whether *this call* started the server: status never does, so it says nothing
        print_json(data)
    elif info is None:
        where = f"at {settings.endpoint}" if settings.endpoint else f"for {settings.resolved_home}"
        sys.stdout.write(f"trainforge server: not running {where}\n")
    else:
        sys.stdout.write(f"trainforge server: running at {info.url} (pid {info.pid}, version {info.version})\n")
        sys.stdout.write(_tls_lines(info, False))
    return EXIT_OK if info is not None else EXIT_UNAVAILABLE


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the server in the foreground until interrupted (flags as for ``start``)."""
    from trainforge.server.main import serve

    serving, _ = _serving(args, settings)
    with contextlib.suppress(KeyboardInterrupt):
        serve(serving)
    return EXIT_OK


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Check the store's integrity (:mod:`trainforge.service.integrity`) in the database and object store the
    server of this home uses (``TRAINFORGE_DATABASE_URL``, ``TRAINFORGE_STORAGE``), running or not; exit 0
    when clean, 1 when problems were found.

    Raises:
        ValidationError: The database cannot be opened or is not a trainforge store (names the setting).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from trainforge.errors import ValidationError
    from trainforge.service.integrity import check_store
    from trainforge.store.engine import make_engine
    from trainforge.store.integrity import IntegrityQueries

    local = _embedded(settings)
    url = local.effective_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        raise ValidationError(
            f"TRAINFORGE_DATABASE_URL: no job store at {parsed.database}; set TRAINFORGE_HOME or "
            "TRAINFORGE_DATABASE_URL to the server's",
            field="database_url",
        )
    objects = None if args.artifacts == "skip" else _check_objects(local)
    engine = make_engine(url)
    try:
        report = check_store(IntegrityQueries(engine), objects, artifacts=args.artifacts)
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ValidationError(
            f"TRAINFORGE_DATABASE_URL: cannot read the job store ({cause}); is it a trainforge database whose "
            "server has started once with this version?",
            field="database_url",
        ) from None
    finally:
        engine.dispose()
    if args.output == "json":
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            sys.stdout.write(problem.line() + "\n")
        sys.stdout.write(f"trainforge server check: {report.summary()}\n")
    return EXIT_OK if report.clean else EXIT_FAILED


def _check_objects(settings: Settings) -> Any:
    """The object store the server of ``settings`` keeps artifacts in (local objects decrypted with the home's
    keys; S3 signed with this process's own ``AWS_*`` credentials)."""
    from trainforge.server.app import storage_config
    from trainforge.service.keys import server_keyring
    from trainforge.storage import open_store

    return open_store(storage_config(settings, credentials=False), keyring=server_keyring(settings))


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (TRAINFORGE_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (TRAINFORGE_PORT; default: the previous one)")
    parser.add_argument(
        "--tls",
        choices=(tls.SELF_SIGNED,),
        help="serve https with a self-signed certificate made once in <home>/tls/ (clients: TRAINFORGE_CA_BUNDLE)",
    )
    parser.add_argument(
        "--tls-cert", metavar="CERT", help="serve https with this certificate, PEM (TRAINFORGE_TLS_CERT)"
    )
    parser.add_argument("--tls-key", metavar="KEY", help="the private key of --tls-cert, PEM (TRAINFORGE_TLS_KEY)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain http on a non-loopback --host (TRAINFORGE_INSECURE): tokens and data travel in clear text",
    )


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``server`` command group."""
    server = groups.add_parser("server", help="start, stop or inspect the embedded server", parents=[common])
    commands = server.add_subparsers(dest="command", required=True, metavar="{start,stop,status,run,check}")

    start = commands.add_parser("start", help="start the server detached (no-op if running)", parents=[common])
    start.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for it to answer")
    _add_serve_flags(start)
    start.set_defaults(handler=cmd_start)

    stop = commands.add_parser("stop", help="stop the server (running jobs go on)", parents=[common])
    stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGKILL")
    stop.set_defaults(handler=cmd_stop)

    status = commands.add_parser("status", help="show url and pid; exit 4 if not running", parents=[common])
    status.set_defaults(handler=cmd_status)

    run = commands.add_parser("run", help="run the server in the foreground", parents=[common])
    _add_serve_flags(run)
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check",
        help="check the store's integrity (histories, logs, metrics, artifacts); exit 1 on problems",
        parents=[common],
    )
    check.add_argument(
        "--artifacts",
        choices=("read", "exists", "skip"),
        default="read",
        help="model.tar.gz of completed jobs: read each to its end (default), only look for it, or skip",
    )
    check.set_defaults(handler=cmd_check)
