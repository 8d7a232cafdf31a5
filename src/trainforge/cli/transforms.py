"""``trainforge transform-jobs list|describe|logs|stop``: inspect and stop batch transform jobs.

Every call goes through :mod:`trainforge.inference_client`; a user sees their own jobs (an admin everyone's).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainforge import inference_client as api
from trainforge.cli.output import fmt_time, print_fields, print_json, print_table
from trainforge.cli.serving_logs import add_log_arguments, logs_command
from trainforge.client import TrainforgeClient
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0
STATUSES = ("InProgress", "Completed", "Failed", "Stopping", "Stopped")
TERMINAL = ("Completed", "Failed", "Stopped")


def _client(settings: Settings) -> TrainforgeClient:
    return connect(settings, start=False)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List transform jobs, newest first; ``--status`` keeps one status."""
    with _client(settings) as client:
        jobs = api.list_transform_jobs(client, status=args.status)
    if args.output == "json":
        print_json({"TransformJobSummaries": jobs})
        return EXIT_OK
    rows = [
        (
            j.get("TransformJobName"),
            j.get("TransformJobStatus"),
            fmt_time(j.get("CreationTime")),
            fmt_time(j.get("TransformEndTime")),
            j.get("FailureReason"),
        )
        for j in jobs
    ]
    print_table(("NAME", "STATUS", "CREATED", "ENDED", "FAILURE"), rows)
    return EXIT_OK


def _print_description(desc: dict[str, Any]) -> None:
    data_source = (desc.get("TransformInput") or {}).get("DataSource") or {}
    source = data_source.get("S3DataSource") or {}
    transform_input = desc.get("TransformInput") or {}
    output = desc.get("TransformOutput") or {}
    resources = desc.get("TransformResources") or {}
    print_fields(
        [
            ("Name", desc.get("TransformJobName")),
            ("Arn", desc.get("TransformJobArn")),
            ("Status", desc.get("TransformJobStatus")),
            ("Failure reason", desc.get("FailureReason")),
            ("Model", desc.get("ModelName")),
            ("Training job", desc.get("TrainingJobName")),
            ("Instances", f"{resources.get('InstanceCount')} x {resources.get('InstanceType')}"),
            ("Input", source.get("S3Uri")),
            ("Content type", transform_input.get("ContentType")),
            ("Split type", transform_input.get("SplitType")),
            ("Strategy", desc.get("BatchStrategy")),
            ("Output path", output.get("S3OutputPath")),
            ("Accept", output.get("Accept")),
            ("Assemble with", output.get("AssembleWith")),
            ("Created", fmt_time(desc.get("CreationTime"))),
            ("Started", fmt_time(desc.get("TransformStartTime"))),
            ("Ended", fmt_time(desc.get("TransformEndTime"))),
        ]
    )


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    """Show one transform job (``--output json``: the DescribeTransformJob answer)."""
    with _client(settings) as client:
        desc = api.describe_transform_job(client, args.name)
    if args.output == "json":
        print_json(desc)
    else:
        _print_description(desc)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print a transform job's log lines; ``--follow`` until it is Completed, Failed or Stopped."""
    return logs_command(
        args,
        settings,
        describe=api.describe_transform_job,
        status_key="TransformJobStatus",
        ended=TERMINAL,
        logs=api.transform_job_logs,
    )


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Ask a transform job to stop; it goes Stopping, then Stopped."""
    with _client(settings) as client:
        api.stop_transform_job(client, args.name)
        status = api.describe_transform_job(client, args.name).get("TransformJobStatus")
    if args.output == "json":
        print_json({"TransformJobName": args.name, "TransformJobStatus": status})
    else:
        sys.stdout.write(f"{args.name}: {status}\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``transform-jobs`` command group."""
    group = groups.add_parser("transform-jobs", help="list, inspect and stop batch transform jobs", parents=[common])
    commands = group.add_subparsers(dest="command", required=True, metavar="{list,describe,logs,stop}")

    ls = commands.add_parser("list", help="list transform jobs", parents=[common])
    ls.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ls.set_defaults(handler=cmd_list)

    describe = commands.add_parser("describe", help="show one transform job", parents=[common])
    describe.add_argument("name")
    describe.set_defaults(handler=cmd_describe)

    logs = commands.add_parser("logs", help="print a transform job's log lines", parents=[common])
    add_log_arguments(logs, "job ends")
    logs.set_defaults(handler=cmd_logs)

    stop = commands.add_parser("stop", help="stop a transform job", parents=[common])
    stop.add_argument("name")
    stop.set_defaults(handler=cmd_stop)
