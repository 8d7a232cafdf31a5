"""``trainforge jobs list|describe|logs|stop|wait|rerun|diff``: inspect, control and repeat training jobs.

A user sees their own jobs (an admin everyone's). Secret-looking environment values and hyperparameters are shown
as ``****``; ``jobs describe NAME --show-secrets`` shows them to the job's owner.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from trainforge.admin_client import AdminClient
from trainforge.cli.lineage import diff_lines, job_diff, lineage_lines, write_lines
from trainforge.cli.output import fmt_time, print_fields, print_json, print_json_line, print_table
from trainforge.client import TrainforgeClient
from trainforge.local_server import connect
from trainforge.logs import TERMINAL_PRIMARY, LogPrinter, format_status_line
from trainforge.settings import Settings

EXIT_OK = 0
EXIT_JOB_DID_NOT_COMPLETE = 1
EXIT_TIMEOUT = 124
STATUSES = ("InProgress", "Completed", "Failed", "Stopping", "Stopped")


def _client(settings: Settings) -> TrainforgeClient:
    return connect(settings, start=False)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List jobs, newest first by default."""
    filters: dict[str, Any] = {
        "name_contains": args.name_contains,
        "status_equals": args.status,
        "sort_by": args.sort_by,
        "sort_order": args.sort_order,
        "max_results": args.max_results,
    }
    with _client(settings) as client:
        if args.all:
            page: dict[str, Any] = {"TrainingJobSummaries": list(client.iter_training_jobs(**filters))}
        else:
            page = client.list_training_jobs(next_token=args.next_token, **filters)
    summaries = page.get("TrainingJobSummaries", [])
    if args.output == "json":
        print_json(page)
        return EXIT_OK
    rows = [
        (
            s.get("TrainingJobName"),
            s.get("TrainingJobStatus"),
            s.get("SecondaryStatus"),
            fmt_time(s.get("CreationTime")),
            fmt_time(s.get("TrainingEndTime")),
            (s.get("CreatedBy") or {}).get("UserProfileName"),
        )
        for s in summaries
    ]
    print_table(("NAME", "STATUS", "SECONDARY", "CREATED", "ENDED", "OWNER"), rows)
    if page.get("NextToken"):
        sys.stdout.write(f"(more: --next-token {page['NextToken']})\n")
    return EXIT_OK


def _print_description(desc: dict[str, Any]) -> None:
    resource = desc.get("ResourceConfig") or {}
    if resource.get("InstanceGroups"):
        instances = ", ".join(
            f"{g.get('InstanceCount')} x {g.get('InstanceType')} ({g.get('InstanceGroupName')})"
            for g in resource["InstanceGroups"]
        )
    else:
        instances = f"{resource.get('InstanceCount')} x {resource.get('InstanceType')}"
    training = desc.get("TrainingTimeInSeconds")
    billable = desc.get("BillableTimeInSeconds")
    print_fields(
        [
            ("Name", desc.get("TrainingJobName")),
            ("Arn", desc.get("TrainingJobArn")),
            ("Created by", (desc.get("CreatedBy") or {}).get("UserProfileName")),
            ("Status", f"{desc.get('TrainingJobStatus')} ({desc.get('SecondaryStatus')})"),
            ("Failure reason", desc.get("FailureReason")),
            ("Image", (desc.get("AlgorithmSpecification") or {}).get("TrainingImage")),
            ("Instances", instances),
            ("Created", fmt_time(desc.get("CreationTime"))),
            ("Training start", fmt_time(desc.get("TrainingStartTime"))),
            ("Training end", fmt_time(desc.get("TrainingEndTime"))),
            ("Training seconds", training),
            ("Billable seconds", billable),
            ("Output path", (desc.get("OutputDataConfig") or {}).get("S3OutputPath")),
            ("Model artifacts", (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")),
        ]
    )
    metrics = desc.get("FinalMetricDataList") or []
    if metrics:
        sys.stdout.write("Final metrics:\n")
        width = max(len(str(m.get("MetricName"))) for m in metrics)
        for m in metrics:
            value = m.get("Value")
            shown = f"{value:.6g}" if isinstance(value, int | float) else str(value)
            sys.stdout.write(f"  {str(m.get('MetricName')).ljust(width)}  {shown}  ({fmt_time(m.get('Timestamp'))})\n")
    hps = desc.get("HyperParameters") or {}
    if hps:
        sys.stdout.write("Hyperparameters:\n")
        for key in sorted(hps):
            sys.stdout.write(f"  {key} = {hps[key]}\n")
    env = desc.get("Environment") or {}
    if env:
        sys.stdout.write("Environment:\n")
        for key in sorted(env):
            sys.stdout.write(f"  {key} = {env[key]}\n")
    channels = desc.get("InputDataConfig") or []
    if channels:
        sys.stdout.write("Channels:\n")
        for ch in channels:
            uri = ((ch.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
            content = f" ({ch['ContentType']})" if ch.get("ContentType") else ""
            sys.stdout.write(f"  {ch.get('ChannelName')}: {uri}{content}\n")
    transitions = desc.get("SecondaryStatusTransitions") or []
    if transitions:
        sys.stdout.write("Status transitions:\n")
        for t in transitions:
            line = format_status_line(t.get("Status", ""), t.get("StatusMessage"), t.get("StartTime"))
            sys.stdout.write(f"  {line}\n")


def cmd_describe(args: argparse.Namespace, settings: Settings) -> int:
    """Show one job (``--output json``: the full DescribeTrainingJob answer); ``--show-secrets`` for its owner."""
    with _client(settings) as client:
        desc = AdminClient(client).describe_training_job(args.name, show_secrets=args.show_secrets)
    if args.lineage:
        if args.output == "json":
            print_json(desc.get("Lineage"))
        else:
            write_lines(lineage_lines(args.name, desc.get("Lineage")))
    elif args.output == "json":
        print_json(desc)
    else:
        _print_description(desc)
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace, settings: Settings) -> int:
    """Submit a job's spec again (same image, code object, data, hyperparameters) and say what changed since;
    with ``--wait``, wait for the new job to end (exit 0 Completed, 1 otherwise)."""
    with _client(settings) as client:
        result = client.rerun_training_job(args.name, new_name=args.new_name)
        new = str(result["TrainingJobName"])
        if args.output == "json":
            print_json(result)
        else:
            sys.stdout.write(f"{new}\n")
        for warning in result.get("Warnings") or []:
            sys.stderr.write(f"warning: {warning}\n")
        if not args.wait:
            return EXIT_OK
        while True:
            desc = client.describe_training_job(new)
            if desc.get("TrainingJobStatus") in TERMINAL_PRIMARY:
                return _wait_result(desc, "text" if args.output == "json" else args.output, stream=sys.stderr)
            time.sleep(args.poll)


def cmd_diff(args: argparse.Namespace, settings: Settings) -> int:
    """Show what differs between two jobs: hyperparameters, image and environment, code, data, final metrics and
    the model's content hash. Exits 0 whether or not they differ."""
    with _client(settings) as client:
        a = client.describe_training_job(args.a)
        b = client.describe_training_job(args.b)
    diff = job_diff(a, b)
    if args.output == "json":
        print_json(diff)
    else:
        write_lines(diff_lines(diff))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print a job's log lines; ``--follow`` streams them (and status changes) until the job ends."""
    printer = LogPrinter()
    as_json = args.output == "json"
    with _client(settings) as client:
        if args.follow:
            for event in client.follow_logs(args.name, cursor=args.cursor, host=args.host, attempt=args.attempt):
                if as_json:
                    print_json_line(event)
                elif event.get("type") == "status":
                    printer.status(str(event.get("SecondaryStatus", "")), event.get("StatusMessage"), event.get("Time"))
                elif event.get("type") == "log":
                    printer.log(str(event.get("message", "")), event.get("host"), event.get("attempt"))
            return EXIT_OK
        cursor = args.cursor
        while True:
            page = client.logs(args.name, cursor=cursor, host=args.host, attempt=args.attempt)
            events = page.get("events") or []
            if not events:
                return EXIT_OK
            for event in events:
                if as_json:
                    print_json_line({"type": "log", **event})
                else:
                    printer.log(str(event.get("message", "")), event.get("host"), event.get("attempt"))
            cursor = int(page.get("next_cursor", events[-1].get("cursor", cursor)))


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Ask a job to stop; it goes Stopping, then Stopped."""
    with _client(settings) as client:
        client.stop_training_job(args.name)
        desc = client.describe_training_job(args.name)
    result = {
        "TrainingJobName": args.name,
        "TrainingJobStatus": desc.get("TrainingJobStatus"),
        "SecondaryStatus": desc.get("SecondaryStatus"),
    }
    if args.output == "json":
        print_json(result)
    else:
        sys.stdout.write(f"{args.name}: {result['TrainingJobStatus']} ({result['SecondaryStatus']})\n")
    return EXIT_OK


def _wait_result(desc: dict[str, Any], output: str, *, stream: TextIO | None = None) -> int:
    status = desc.get("TrainingJobStatus")
    result = {
        "TrainingJobName": desc.get("TrainingJobName"),
        "TrainingJobStatus": status,
        "SecondaryStatus": desc.get("SecondaryStatus"),
        "FailureReason": desc.get("FailureReason"),
        "ModelArtifacts": (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
    }
    if output == "json":
        print_json(result)
    else:
        line = f"{result['TrainingJobName']}: {status} ({result['SecondaryStatus']})"
        if result["FailureReason"]:
            line += f". Reason: {result['FailureReason']}"
        (stream or sys.stdout).write(line + "\n")
    return EXIT_OK if status == "Completed" else EXIT_JOB_DID_NOT_COMPLETE


def cmd_wait(args: argparse.Namespace, settings: Settings) -> int:
    """Wait until a job is Completed (exit 0), Failed or Stopped (exit 1); exit 124 on ``--timeout``."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    printer = LogPrinter(sys.stderr if args.output == "json" else None)
    with _client(settings) as client:
        if args.logs:
            for event in client.follow_logs(args.name):
                if event.get("type") == "status":
                    printer.status(str(event.get("SecondaryStatus", "")), event.get("StatusMessage"), event.get("Time"))
                elif event.get("type") == "log":
                    printer.log(str(event.get("message", "")), event.get("host"), event.get("attempt"))
        while True:
            desc = client.describe_training_job(args.name)
            if desc.get("TrainingJobStatus") in TERMINAL_PRIMARY:
                return _wait_result(desc, args.output)
            if deadline is not None and time.monotonic() >= deadline:
                sys.stderr.write(
                    f"error: {args.name} is still {desc.get('TrainingJobStatus')} "
                    f"({desc.get('SecondaryStatus')}) after {args.timeout:g} s\n"
                )
                return EXIT_TIMEOUT
            time.sleep(args.poll if deadline is None else max(0.0, min(args.poll, deadline - time.monotonic())))


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return value


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``jobs`` command group."""
    jobs = groups.add_parser("jobs", help="list, inspect and control training jobs", parents=[common])
    commands = jobs.add_subparsers(dest="command", required=True, metavar="{list,describe,logs,stop,wait,rerun,diff}")

    ls = commands.add_parser("list", help="list training jobs", parents=[common])
    ls.add_argument("--name-contains", help="only jobs whose name contains this")
    ls.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    ls.add_argument("--sort-by", choices=("Name", "CreationTime", "Status"), default="CreationTime")
    ls.add_argument("--sort-order", choices=("Ascending", "Descending"), default="Descending")
    ls.add_argument("--max-results", type=_positive_int, default=100, help="page size (1-100)")
    ls.add_argument("--next-token", help="continue a previous listing")
    ls.add_argument("--all", action="store_true", help="follow every page")
    ls.set_defaults(handler=cmd_list)

    describe = commands.add_parser("describe", help="show one job", parents=[common])
    describe.add_argument("name")
    describe.add_argument(
        "--show-secrets",
        action="store_true",
        help="show secret-looking environment values and hyperparameters (only for the job's owner)",
    )
    describe.add_argument(
        "--lineage",
        action="store_true",
        help="show what the job ran on: environment fingerprint, code sha256, data manifest, image digest",
    )
    describe.set_defaults(handler=cmd_describe)

    logs = commands.add_parser("logs", help="print a job's log lines", parents=[common])
    logs.add_argument("name")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    logs.add_argument("--cursor", type=int, default=0, help="start after this log cursor")
    logs.add_argument("--host", help="only lines of this host (e.g. algo-1)")
    logs.add_argument(
        "--attempt",
        type=int,
        help="only lines of this attempt (1 = the first run; 2, 3, ... = retries after a lost host)",
    )
    logs.set_defaults(handler=cmd_logs)

    stop = commands.add_parser("stop", help="stop a job", parents=[common])
    stop.add_argument("name")
    stop.set_defaults(handler=cmd_stop)

    wait = commands.add_parser(
        "wait", help="wait for a job to end (exit 0 Completed, 1 Failed/Stopped)", parents=[common]
    )
    wait.add_argument("name")
    wait.add_argument("--poll", type=float, default=2.0, help="seconds between status checks")
    until = wait.add_mutually_exclusive_group()
    until.add_argument("--timeout", type=float, default=None, help="give up (exit 124) after this many seconds")
    until.add_argument("--logs", action="store_true", help="print status and log lines while waiting")
    wait.set_defaults(handler=cmd_wait)

    rerun = commands.add_parser(
        "rerun", help="run a job again with the same spec, environment, code and data", parents=[common]
    )
    rerun.add_argument("name")
    rerun.add_argument("--name", dest="new_name", help="the new job's name (default <name>-rerun-<n>)")
    rerun.add_argument("--wait", action="store_true", help="wait for the new job to end (exit 1 unless Completed)")
    rerun.add_argument("--poll", type=float, default=2.0, help="seconds between status checks with --wait")
    rerun.set_defaults(handler=cmd_rerun)

    diff = commands.add_parser("diff", help="show what differs between two jobs", parents=[common])
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.set_defaults(handler=cmd_diff)
