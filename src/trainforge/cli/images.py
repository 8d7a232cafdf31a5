"""``trainforge images``: the catalogue images' environments -- ``lock`` regenerates (or checks) their full locks."""

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


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add ``images`` to the command line."""
    images = groups.add_parser("images", help="catalogue images: their locked environments", parents=[common])
    commands = images.add_subparsers(dest="command", required=True, metavar="{lock}")
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
