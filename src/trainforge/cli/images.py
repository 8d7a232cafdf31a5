"""``trainforge images``: the catalogue images -- ``build`` makes a container image of each (its locked environment
and trainforge's helper modules on a Python base, see :mod:`trainforge.runtime.imagebuild`), ``list`` shows their
locks and the engine's builds, ``lock`` regenerates (or checks) their full locks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from trainforge.cli.output import print_json, print_table
from trainforge.errors import ValidationError
from trainforge.settings import Settings

EXIT_OK = 0
EXIT_DRIFT = 1


def _images(names: list[str]) -> list[Any]:
    from trainforge.runtime.locks import lockable_images

    known = {image.name: image for image in lockable_images()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValidationError(
            f"NAME: {', '.join(unknown)} is not a catalogue image with an environment; known: {', '.join(known)}",
            field="NAME",
        )
    return [known[name] for name in names] if names else list(known.values())


def cmd_lock(args: argparse.Namespace, settings: Settings) -> int:
    """Regenerate the locks of the named catalogue images (all without names) with uv, or with ``--check`` only
    compare the checked-in locks with the catalogue's pins: exit 1 when one no longer matches."""
    from trainforge.runtime.environment import uv_environment
    from trainforge.runtime.locks import LOCKS_DIR, generate_lock, lock_for, lock_problems, write_lock

    directory = Path(args.directory) if args.directory else LOCKS_DIR
    rows: list[dict[str, Any]] = []
    for image in _images(args.names):
        before = lock_for(image, directory=directory)
        if args.check:
            problems = lock_problems(image, before)
            rows.append(
                {
                    "Image": image.name,
                    "Status": "drifted" if problems else "ok",
                    "Packages": len(before.packages) if before else 0,
                    "Sha256": before.sha256 if before else None,
                    "Problems": problems,
                }
            )
            continue
        text = generate_lock(image, env=uv_environment(os.environ))
        if before is not None and before.text == text:
            lock, status = before, "unchanged"
        else:
            lock, status = write_lock(image, text, directory=directory), "written"
        rows.append(
            {
                "Image": image.name,
                "Status": status,
                "Packages": len(lock.packages),
                "Sha256": lock.sha256,
                "Problems": [],
            }
        )
    if args.output == "json":
        print_json({"Locks": rows, "Directory": str(directory)})
    else:
        print_table(
            ["IMAGE", "STATUS", "PACKAGES", "SHA256"],
            [[r["Image"], r["Status"], r["Packages"], r["Sha256"]] for r in rows],
        )
        for row in rows:
            for problem in row["Problems"]:
                sys.stderr.write(f"{problem}\n")
    return EXIT_DRIFT if any(row["Problems"] for row in rows) else EXIT_OK


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    """Build the container image of each named catalogue image (every one with ``--all``) in the engine of
    ``DOCKER_HOST``; the engine's build output streams to stderr, the result goes to stdout."""
    from trainforge.runtime.imagebuild import DEFAULT_BASE, build_image, buildable, image_lock, require_engine

    base = args.base or DEFAULT_BASE
    images, notes = buildable(args.names, every=args.all)
    for note in notes:
        sys.stderr.write(f"{note}\n")
    if images:
        for image in images:  # every lock is there before the first (long) build starts
            image_lock(image)
        require_engine()

    def stream(_stream: str, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    built = []
    for image in images:
        sys.stderr.write(f"Building {image.name} on {base}\n")
        built.append(build_image(image, base=base, sink=stream))
    rows = [{"Name": b.name, "ImageId": b.image_id, "LockSha256": b.lock_sha256, "Base": b.base} for b in built]
    if args.output == "json":
        print_json({"Images": rows, "Skipped": notes})
    else:
        print_table(
            ["IMAGE", "IMAGE ID", "LOCK", "BASE"],
            [[r["Name"], r["ImageId"][:19], r["LockSha256"][:12], r["Base"]] for r in rows],
        )
    return EXIT_OK


def _container_status(row: Any) -> str:
    if row.image.uses_server_interpreter:
        return "n/a (the server's interpreter)"
    if row.engine_reason is not None:
        return "unknown (engine not reachable)"
    if row.container is None:
        return "not built"
    return f"stale (built from lock {str(row.built_lock)[:12]})" if row.stale else "built"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every catalogue image: its lock's hash, and whether the engine holds its container image (and its
    digest, and whether it was built from the current lock)."""
    from trainforge.runtime.imagebuild import present_images

    rows = present_images()
    reason = next((row.engine_reason for row in rows if row.engine_reason), None)
    if args.output == "json":
        print_json(
            {
                "Images": [
                    {
                        "Name": row.image.name,
                        "LockSha256": row.lock.sha256 if row.lock else None,
                        "Container": None
                        if row.container is None
                        else {"Digest": row.digest, "LockSha256": row.built_lock, "Stale": row.stale},
                        "Status": _container_status(row),
                    }
                    for row in rows
                ],
                "Engine": {"Available": reason is None, "Reason": reason},
            }
        )
        return EXIT_OK
    print_table(
        ["IMAGE", "LOCK", "CONTAINER", "DIGEST"],
        [
            [row.image.name, row.lock.sha256[:12] if row.lock else "-", _container_status(row), row.digest or "-"]
            for row in rows
        ],
    )
    if reason is not None:
        sys.stderr.write(f"container engine not reachable: {reason}\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``images`` (``build``, ``list``, ``lock``) to the command line."""
    images = groups.add_parser(
        "images", help="catalogue images: container builds and locked environments", parents=[common]
    )
    commands = images.add_subparsers(dest="command", required=True, metavar="{build,list,lock}")
    build = commands.add_parser(
        "build",
        help="build a container image of catalogue images (Python + the locked environment + helper modules)",
        parents=[common],
    )
    build.add_argument("names", nargs="*", metavar="NAME", help="catalogue images, e.g. trainforge/sklearn:1.2-1")
    build.add_argument("--all", action="store_true", help="every catalogue image")
    build.add_argument(
        "--base",
        metavar="IMAGE",
        help="the Python 3.11 base image, pulled through the engine if it lacks it "
        "(default python:3.11-slim-bookworm, imagebuild.DEFAULT_BASE)",
    )
    build.set_defaults(handler=cmd_build)
    listing = commands.add_parser(
        "list", help="catalogue images, their lock hashes and their container builds in the engine", parents=[common]
    )
    listing.set_defaults(handler=cmd_list)
    # ``images lock`` (full locks with uv) lives below.
    register_lock(commands, common)


def register_lock(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``images lock`` to the ``images`` group."""
    lock = commands.add_parser(
        "lock",
        help="regenerate the full locks of catalogue images with uv (--check: compare them with the catalogue)",
        parents=[common],
    )
    lock.add_argument("names", nargs="*", metavar="NAME", help="catalogue images (default: every one with a lock)")
    lock.add_argument(
        "--check", action="store_true", help="only check that each lock matches its image's pins; exit 1 if not"
    )
    lock.add_argument("--directory", help="where the lock files are (default: the installed trainforge's)")
    lock.set_defaults(handler=cmd_lock)
