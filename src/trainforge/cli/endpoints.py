"""``trainforge endpoints list|describe|logs|delete``: inspect and delete endpoints.

Every call goes through :mod:`trainforge.inference_client`; a user sees their own endpoints (an admin everyone's).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainforge import inference_client as api
from trainforge.cli.output import fmt_time, print_fields, print_json, print_table
from trainforge.cli.serving_logs import add_log_arguments, logs_command
from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0
STATUSES = ("Creating", "InService", "Updating", "Deleting", "Failed")
ENDED = ("Failed",)


def _client(settings: Settings) -> TrainforgeClient:
    return connect(settings, start=False)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List endpoints, newest first; ``--status`` keeps one status."""
    with _client(settings) as client:
        endpoints = api.list_endpoints(client, status=args.status)
    if args.output == "json":
        print_json({"Endpoints": endpoints})
        return EXIT_OK
    rows = [
        (
            e.get("EndpointName"),
            e.get("EndpointStatus"),
            fmt_time(e.get("CreationTime")),
            fmt_time(e.get("LastModifiedTime")),
        )
        for e in endpoints
    ]
    print_table(("NAME", "STATUS", "CREATED", "MODIFIED"), rows)
    return EXIT_OK


def _print_description(desc: dict[str, Any], totals: dict[str, Any]) -> None:
    variants = desc.get("ProductionVariants") or []
    print_fields(
        [
            ("Name", desc.get("EndpointName")),
            ("Arn", desc.get("EndpointArn")),
            ("Status", desc.get("EndpointStatus")),
            ("Failure reason", desc.get("FailureReason")),
            ("Endpoint config", desc.get("EndpointConfigName")),
            ("Model", desc.get("ModelName")),
            ("Training job", desc.get("TrainingJobName")),
            ("Created", fmt_time(desc.get("CreationTime"))),
            ("Modified", fmt_time(desc.get("LastModifiedTime"))),
        ]
    )
    if variants:
        sys.stdout.write("Variants:\n")
        for v in variants:
            sys.stdout.write(
                f"  {v.get('VariantName')}: {v.get('CurrentInstanceCount')} of {v.get('DesiredInstanceCount')} "
                f"instances in service, weight {v.get('CurrentWeight')}\n"
            )
    instances = desc.get("Instances") or []
    if instances:
        sys.stdout.write("Instances:\n")
        for i in instances:
            address = f" {i['Address']}" if i.get("Address") else ""
            sys.stdout.write(f"  {i.get('Host')}: {i.get('Status')}{address}\n")
    if totals:
        sys.stdout.write("Metrics (totals):\n")
        for key in sorted(totals):
            sys.stdout.write(f"  {key} = {totals[key]}\n")


def _totals(client: TrainforgeClient, name: str) -> dict[str, Any]:
    try:
        totals = api.endpoint_metrics(client, name).get("totals")
    except NotFoundError:
        return {}
    return dict(totals) if isinstance(totals, dict) else {}


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    """Show one endpoint (``--output json``: the DescribeEndpoint answer) with its metric totals in text."""
    with _client(settings) as client:
        desc = api.describe_endpoint(client, args.name)
        totals = {} if args.output == "json" else _totals(client, args.name)
    if args.output == "json":
        print_json(desc)
    else:
        _print_description(desc, totals)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print an endpoint's log lines (kept after it is deleted); ``--follow`` until it is deleted or Failed."""
    return logs_command(
        args, settings, describe=api.describe_endpoint, status_key="EndpointStatus", ended=ENDED, logs=api.endpoint_logs
    )


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete an endpoint: it goes Deleting, its instances stop, then it is gone."""
    with _client(settings) as client:
        api.delete_endpoint(client, args.name)
    if args.output == "json":
        print_json({"EndpointName": args.name, "EndpointStatus": "Deleting"})
    else:
        sys.stdout.write(f"{args.name}: Deleting\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``endpoints`` command group."""
    group = groups.add_parser("endpoints", help="list, inspect and delete endpoints", parents=[common])
    commands = group.add_subparsers(dest="command", required=True, metavar="{list,describe,logs,delete}")

    ls = commands.add_parser("list", help="list endpoints", parents=[common])
    ls.add_argument("--status", choices=STATUSES, help="only endpoints in this status")
    ls.set_defaults(handler=cmd_list)

    describe = commands.add_parser("describe", help="show one endpoint", parents=[common])
    describe.add_argument("name")
    describe.set_defaults(handler=cmd_describe)

    logs = commands.add_parser("logs", help="print an endpoint's log lines", parents=[common])
    add_log_arguments(logs, "endpoint is deleted or fails")
    logs.set_defaults(handler=cmd_logs)

    delete = commands.add_parser("delete", help="delete an endpoint", parents=[common])
    delete.add_argument("name")
    delete.set_defaults(handler=cmd_delete)
