"""``trainforge server start|stop|status|run``: the embedded server of ``TRAINFORGE_HOME``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import asdict

from trainforge.cli.output import print_json
from trainforge.local_server import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ensure_server,
    find_server,
    stop_server,
)
from trainforge.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 4


def _embedded(settings: Settings) -> Settings:
    """The settings with any client endpoint removed: these commands manage the local server."""
    return settings.model_copy(update={"endpoint": None}) if settings.endpoint else settings


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the embedded server detached, or report the one already running."""
    info = ensure_server(_embedded(settings), timeout_s=args.timeout)
    if args.output == "json":
        print_json(info.to_dict())
    else:
        verb = "started" if info.started else "already running:"
        sys.stdout.write(f"trainforge server {verb} {info.url} (pid {info.pid}, home {info.home})\n")
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
        print_json(data)
    elif info is None:
        where = f"at {settings.endpoint}" if settings.endpoint else f"for {settings.resolved_home}"
        sys.stdout.write(f"trainforge server: not running {where}\n")
    else:
        sys.stdout.write(f"trainforge server: running at {info.url} (pid {info.pid}, version {info.version})\n")
    return EXIT_OK if info is not None else EXIT_UNAVAILABLE


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the server in the foreground until interrupted."""
    from trainforge.server.main import serve

    with contextlib.suppress(KeyboardInterrupt):
        serve(_embedded(settings))
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``server`` command group."""
    server = groups.add_parser("server", help="start, stop or inspect the embedded server", parents=[common])
    commands = server.add_subparsers(dest="command", required=True, metavar="{start,stop,status,run}")

    start = commands.add_parser("start", help="start the server detached (no-op if running)", parents=[common])
    start.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for it to answer")
    start.set_defaults(handler=cmd_start)

    stop = commands.add_parser("stop", help="stop the server (running jobs go on)", parents=[common])
    stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGKILL")
    stop.set_defaults(handler=cmd_stop)

    status = commands.add_parser("status", help="show url and pid; exit 4 if not running", parents=[common])
    status.set_defaults(handler=cmd_status)

    run = commands.add_parser("run", help="run the server in the foreground", parents=[common])
    run.set_defaults(handler=cmd_run)
