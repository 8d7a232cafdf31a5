"""``trainforge roles create|list|grant|revoke|delete``: roles, named grants of object-store prefixes (admins only).

A role grants ``--read`` and ``--write`` prefixes (``s3://bucket/prefix/``; ``s3://bucket`` for a whole bucket;
``s3://`` for everything); a write grant implies read. A user may pass (``role=`` / ``RoleArn``) only the roles
granted to them; their first role, or one granted with ``--default``, is their default role
(``get_execution_role()``).
"""

from __future__ import annotations

import argparse
import sys

from trainforge import roles_client
from trainforge.cli.output import fmt_time, print_json, print_table
from trainforge.client import TrainforgeClient
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0


def _client(settings: Settings) -> TrainforgeClient:
    return connect(settings, start=False)


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a role."""
    with _client(settings) as client:
        role = roles_client.create_role(
            client, args.name, read=args.read or [], write=args.write or [], description=args.description
        )
    if args.output == "json":
        print_json(role)
    else:
        sys.stdout.write(f"Created role {role['RoleName']} ({role['Arn']})\n")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List roles with their prefixes and users."""
    with _client(settings) as client:
        roles = roles_client.list_roles(client)
    if args.output == "json":
        print_json({"Roles": roles})
        return EXIT_OK
    rows = [
        (
            r["RoleName"],
            ", ".join(r["Read"]) or "-",
            ", ".join(r["Write"]) or "-",
            ", ".join(u + ("*" if u in r.get("DefaultFor", []) else "") for u in r["Users"]) or "-",
            fmt_time(r.get("CreationTime")),
        )
        for r in roles
    ]
    print_table(("NAME", "READ", "WRITE", "USERS (*default)", "CREATED"), rows)
    return EXIT_OK


def cmd_grant(args: argparse.Namespace, settings: Settings) -> int:
    """Grant a role to a user."""
    with _client(settings) as client:
        result = roles_client.grant_role(client, args.role, args.user, default=args.default)
    if args.output == "json":
        print_json(result)
    else:
        default = " (default role)" if result.get("Default") else ""
        sys.stdout.write(f"Granted role {args.role} to {args.user}{default}\n")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Take a role from a user."""
    with _client(settings) as client:
        result = roles_client.revoke_role(client, args.role, args.user)
    if args.output == "json":
        print_json(result)
    else:
        sys.stdout.write(
            f"Revoked role {args.role} from {args.user}; default role now: {result.get('DefaultRole') or 'none'}\n"
        )
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a role."""
    with _client(settings) as client:
        roles_client.delete_role(client, args.name)
    if args.output == "json":
        print_json({"RoleName": args.name, "Deleted": True})
    else:
        sys.stdout.write(f"Deleted role {args.name}\n")
    return EXIT_OK


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``roles`` command group."""
    roles = groups.add_parser(
        "roles", help="administer roles: named grants of object-store prefixes (admins)", parents=[common]
    )
    commands = roles.add_subparsers(dest="command", required=True, metavar="{create,list,grant,revoke,delete}")

    create = commands.add_parser(
        "create", help="create a role (a write grant implies read of the same prefix)", parents=[common]
    )
    create.add_argument("name", help="role name (letters, digits and +=,.@_-; at most 64)")
    create.add_argument("--read", action="append", metavar="S3_PREFIX", help="readable prefix, e.g. s3://bucket/data/")
    create.add_argument("--write", action="append", metavar="S3_PREFIX", help="writable (and readable) prefix")
    create.add_argument("--description", help="what the role is for")
    create.set_defaults(handler=cmd_create)

    ls = commands.add_parser("list", help="list roles", parents=[common])
    ls.set_defaults(handler=cmd_list)

    grant = commands.add_parser("grant", help="let a user pass a role", parents=[common])
    grant.add_argument("role")
    grant.add_argument("user")
    grant.add_argument("--default", action="store_true", help="make it the user's default role")
    grant.set_defaults(handler=cmd_grant)

    revoke = commands.add_parser("revoke", help="take a role from a user", parents=[common])
    revoke.add_argument("role")
    revoke.add_argument("user")
    revoke.set_defaults(handler=cmd_revoke)

    delete = commands.add_parser("delete", help="delete a role and its grants", parents=[common])
    delete.add_argument("name")
    delete.set_defaults(handler=cmd_delete)
