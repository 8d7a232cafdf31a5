"""Printing the log lines of endpoints and transform jobs (``endpoints logs``, ``transform-jobs logs``).

Both routes answer pages of ``{"events": [{"cursor", "host", "seq", "timestamp", "stream", "message"}],
"next_cursor"}``, oldest first; ``--follow`` polls for more until the resource is done.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Collection
from typing import Any

from trainforge.cli.output import print_json_line
from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError
from trainforge.local_server import connect
from trainforge.logs import LogPrinter
from trainforge.settings import Settings

FOLLOW_POLL_SECONDS = 1.0

Fetch = Callable[[int], dict[str, Any]]
"""One page of log events after a cursor."""


def print_logs(args: argparse.Namespace, fetch: Fetch, finished: Callable[[], bool]) -> int:
    """Print every log line after ``args.cursor`` (``--output json``: one JSON event per line); return 0.

    With ``args.follow``, keeps polling until ``finished()`` is true; the lines written before the end are
    printed too (one more page is read after ``finished()`` says so).
    """
    printer = LogPrinter()
    as_json = args.output == "json"
    cursor = int(args.cursor)

    def drain() -> None:
        nonlocal cursor
        while True:
            page = fetch(cursor)
            events = page.get("events") or []
            if not events:
                return
            for event in events:
                if as_json:
                    print_json_line({"type": "log", **event})
                else:
                    printer.log(str(event.get("message", "")), event.get("host"))
            cursor = int(page.get("next_cursor", events[-1].get("cursor", cursor)))

    drain()
    if args.follow:
        while not finished():
            time.sleep(FOLLOW_POLL_SECONDS)
            drain()
        drain()
    return 0


def add_log_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The arguments of a ``logs`` command: name, ``--follow``, ``--cursor``, ``--host``."""
    parser.add_argument("name")
    parser.add_argument("--follow", "-f", action="store_true", help=f"keep printing new lines until the {what}")
    parser.add_argument("--cursor", type=int, default=0, help="start after this log cursor")
    parser.add_argument("--host", help="only lines of this instance (e.g. algo-1)")


def logs_command(
    args: argparse.Namespace,
    settings: Settings,
    *,
    describe: Callable[[TrainforgeClient, str], dict[str, Any]],
    status_key: str,
    ended: Collection[str],
    logs: Callable[..., dict[str, Any]],
) -> int:
    """A ``logs`` command: print ``args.name``'s log lines (:func:`print_logs`); ``--follow`` until
    ``describe(client, name)[status_key]`` is one of ``ended`` or the resource is gone.

    ``logs`` is the :mod:`~trainforge.inference_client` call (``endpoint_logs``, ``transform_job_logs``)."""
    with connect(settings, start=False) as client:

        def finished() -> bool:
            try:
                return describe(client, args.name).get(status_key) in ended
            except NotFoundError:
                return True

        return print_logs(args, lambda cursor: logs(client, args.name, cursor=cursor, host=args.host), finished)
