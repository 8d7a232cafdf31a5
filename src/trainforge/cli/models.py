"""``trainforge models list|describe``: the models endpoints and transform jobs are made from.

Every call goes through :mod:`trainforge.inference_client`; a user sees their own models (an admin everyone's).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainforge import inference_client as api
from trainforge.cli.output import fmt_time, print_fields, print_json, print_table
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List models, newest first."""
    with connect(settings, start=False) as client:
        models = api.list_models(client, name_contains=args.name_contains)
    if args.output == "json":
        print_json({"Models": models})
        return EXIT_OK
    print_table(("NAME", "CREATED"), [(m.get("ModelName"), fmt_time(m.get("CreationTime"))) for m in models])
    return EXIT_OK


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    """Show one model (``--output json``: the DescribeModel answer)."""
    with connect(settings, start=False) as client:
        desc = api.describe_model(client, args.name)
    if args.output == "json":
        print_json(desc)
        return EXIT_OK
    container: dict[str, Any] = desc.get("PrimaryContainer") or {}
    print_fields(
        [
            ("Name", desc.get("ModelName")),
            ("Arn", desc.get("ModelArn")),
            ("Image", container.get("Image")),
            ("Model data", container.get("ModelDataUrl")),
            ("Training job", desc.get("TrainingJobName")),
            ("Role", desc.get("ExecutionRoleArn")),
            ("Created", fmt_time(desc.get("CreationTime"))),
        ]
    )
    env = container.get("Environment") or {}
    if env:
        sys.stdout.write("Environment:\n")
        for key in sorted(env):
            sys.stdout.write(f"  {key} = {env[key]}\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``models`` command group."""
    group = groups.add_parser("models", help="list and inspect models", parents=[common])
    commands = group.add_subparsers(dest="command", required=True, metavar="{list,describe}")

    ls = commands.add_parser("list", help="list models", parents=[common])
    ls.add_argument("--name-contains", help="only models whose name contains this")
    ls.set_defaults(handler=cmd_list)

    describe = commands.add_parser("describe", help="show one model", parents=[common])
    describe.add_argument("name")
    describe.set_defaults(handler=cmd_describe)
