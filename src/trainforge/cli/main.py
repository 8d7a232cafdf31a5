"""Entry point of the ``trainforge`` command.

Exit codes: 0 ok; 1 a waited-for job ended Failed/Stopped (or another error); 2 usage or validation
error; 3 not found; 4 server unavailable; 124 ``jobs wait --timeout`` ran out; 130 interrupted.
Errors print one line to stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

import pydantic

from trainforge import __version__
from trainforge.cli import console, costs, endpoints, jobs, models, server, transforms, users
from trainforge.cli import images as images_cli
from trainforge.cli import roles as roles_cli
from trainforge.errors import NotFoundError, ServerUnavailableError, TrainforgeError, ValidationError
from trainforge.settings import load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; ``--output json|text`` is accepted before or after any command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--output", "-o", choices=("text", "json"), default=argparse.SUPPRESS, help="output format (default text)"
    )
    parser = argparse.ArgumentParser(
        prog="trainforge", description="Self-hosted SageMaker-style training jobs.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"trainforge {__version__}")
    groups = parser.add_subparsers(
        dest="group",
        required=True,
        metavar="{server,jobs,endpoints,models,transform-jobs,console,users,tokens,audit,roles,costs,images}",
    )
    server.register(groups, common)
    jobs.register(groups, common)
    endpoints.register(groups, common)
    models.register(groups, common)
    transforms.register(groups, common)
    console.register(groups, common)
    users.register(groups, common)
    roles_cli.register(groups, common)
    costs.register(groups, common)
    images_cli.register(groups, common)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``output`` defaults to ``text`` (set here: the ``--output`` action is shared)."""
    args = parser.parse_args(argv)
    if not hasattr(args, "output"):
        args.output = "text"
    return args


def exit_code_for(error: TrainforgeError) -> int:
    """The exit code that reports ``error``."""
    if isinstance(error, ValidationError):
        return EXIT_USAGE
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, ServerUnavailableError):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        settings = load_settings()
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = "TRAINFORGE_" + str(first["loc"][0]).upper() if first.get("loc") else "TRAINFORGE_*"
        sys.stderr.write(f"error: invalid setting {field}: {first['msg']}\n")
        return EXIT_USAGE
    try:
        code: int = args.handler(args, settings)
    except TrainforgeError as exc:
        sys.stderr.write(f"error: {_one_line(exc.message)}\n")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    return code
