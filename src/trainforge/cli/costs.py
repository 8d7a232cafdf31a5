"""``trainforge costs``: what your jobs and endpoints cost (everyone's for an admin), by user, day or instance type.

Prints one row per group and the total (``--output json``: the ``GET /v1/costs`` answer as it is). Amounts are shown
to six decimals, as the server rounds each job's cost once: the rows add up to the total.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from trainforge.cli.output import iso_time, print_json, print_table
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0
BY_CHOICES = ("user", "day", "instance-type")


def _amount(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6f}"


def _hours(instance_seconds: Any) -> str:
    return f"{float(instance_seconds) / 3600:.3f}"


def _period(report: dict[str, Any]) -> str:
    since, until = report.get("Since"), report.get("Until")
    start = iso_time(since) if since is not None else "the beginning"
    end = iso_time(until) if until is not None else "now"
    return f"from {start} until {end}"


def cmd_costs(args: argparse.Namespace, settings: Settings) -> int:
    """Ask the server for the totals and print them."""
    params = {
        "by": args.by,
        **({"since": args.since} if args.since else {}),
        **({"until": args.until} if args.until else {}),
    }
    with connect(settings, start=False) as client:
        report: dict[str, Any] = client.request("GET", "/v1/costs", params=params)
    if args.output == "json":
        print_json(report)
        return EXIT_OK
    currency = report["Currency"]
    heading = {"user": "USER", "day": "DAY (UTC)", "instance-type": "INSTANCE TYPE"}[report["By"]]
    rows = [
        (
            g["Key"],
            _amount(g["Amount"]),
            g["TrainingJobs"],
            g["TransformJobs"],
            g["Endpoints"],
            _hours(g["InstanceSeconds"]),
        )
        for g in report["Groups"]
    ]
    sys.stdout.write(f"Costs {_period(report)}, in {currency}\n")
    if rows:
        print_table(
            (heading, f"AMOUNT ({currency})", "TRAINING JOBS", "TRANSFORM JOBS", "ENDPOINTS", "INSTANCE HOURS"), rows
        )
    else:
        sys.stdout.write("Nothing ran in this period.\n")
    sys.stdout.write(f"Total: {_amount(report['Total'])} {currency}\n")
    unpriced = report.get("UnpricedInstanceTypes") or []
    if unpriced:
        types = ", ".join(unpriced)
        sys.stdout.write(
            f"Not counted (no price in this server's table): {types}; price them in TRAINFORGE_PRICES_FILE\n"
        )
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``costs`` command."""
    costs = groups.add_parser(
        "costs",
        help="what jobs and endpoints cost, by user, day or instance type",
        description="Totals of training jobs (including @remote functions), transform jobs and endpoints: yours, or "
        "everyone's for an admin. A job counts whole on the UTC day its training started.",
        parents=[common],
    )
    costs.add_argument("--by", choices=BY_CHOICES, default="user", help="how to group the costs (default user)")
    costs.add_argument("--since", help="from this time: an age (7d, 12h, 30m), an ISO date or time, or epoch seconds")
    costs.add_argument("--until", help="until this time (same forms as --since; default now)")
    costs.set_defaults(handler=cmd_costs)
