"""``trainforge console``: open (or print) a link that signs a browser straight into the web console."""

from __future__ import annotations

import argparse
import sys
import webbrowser

from trainforge.cli.output import print_json
from trainforge.local_server import ensure_server
from trainforge.settings import Settings

EXIT_OK = 0


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    """Find or start the server, then open the one-time sign-in link (or only print it)."""
    from trainforge.server.console import console_login_url

    ensure_server(settings)
    url = console_login_url(settings)
    opened = False
    if not args.print_only and args.output != "json":
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    if args.output == "json":
        print_json({"url": url, "opened": opened})
    else:
        verb = "Opened" if opened else "Open this link (it signs you in once, within 5 minutes)"
        sys.stdout.write(f"{verb}: {url}\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``console`` to the command line."""
    console = groups.add_parser(
        "console", help="open the web console, signed in (starts the server if needed)", parents=[common]
    )
    console.add_argument("--print", dest="print_only", action="store_true", help="print the link, open no browser")
    console.set_defaults(handler=cmd_console)
