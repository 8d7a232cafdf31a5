"""``trainforge users|tokens|audit``: manage users and API tokens, read the audit log (admins only).

A token is printed once, by the command that made it; the server keeps only its hash.
"""

from __future__ import annotations

import argparse
import sys
import time

from trainforge.admin_client import AdminClient
from trainforge.cli.output import fmt_time, print_json, print_table
from trainforge.client import TrainforgeClient
from trainforge.errors import ValidationError
from trainforge.local_server import connect
from trainforge.settings import Settings

EXIT_OK = 0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _admin(settings: Settings) -> tuple[TrainforgeClient, AdminClient]:
    client = connect(settings, start=False)
    return client, AdminClient(client)


def _show_token(token: str) -> None:
    sys.stdout.write(f"Token:   {token}\n")
    sys.stdout.write("Keep it now: it is shown only once (the server stores only its hash).\n")


# -- users --------------------------------------------------------------------------------------------------


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a user and print their first token (once)."""
    client, admin = _admin(settings)
    with client:
        user = admin.create_user(args.name, admin=args.admin)
    if args.output == "json":
        print_json(user)
        return EXIT_OK
    kind = "admin" if user.get("Admin") else "user"
    sys.stdout.write(f"Created {kind} {user['UserName']} (token id {user['TokenId']}).\n")
    _show_token(str(user["Token"]))
    return EXIT_OK


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    """List users."""
    client, admin = _admin(settings)
    with client:
        users = admin.list_users()
    if args.output == "json":
        print_json({"Users": users})
        return EXIT_OK
    rows = [
        (
            u["UserName"],
            "yes" if u.get("Admin") else "no",
            "disabled" if u.get("Disabled") else "enabled",
            u.get("DefaultRole"),
            fmt_time(u.get("CreationTime")),
        )
        for u in users
    ]
    print_table(("NAME", "ADMIN", "STATE", "DEFAULT ROLE", "CREATED"), rows)
    return EXIT_OK


def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    """Disable a user: their tokens and console sessions stop working at once."""
    client, admin = _admin(settings)
    with client:
        user = admin.disable_user(args.name)
    if args.output == "json":
        print_json(user)
    else:
        sys.stdout.write(f"Disabled {user['UserName']}: their tokens and console sessions no longer work.\n")
    return EXIT_OK


def cmd_users_me(args: argparse.Namespace, settings: Settings) -> int:
    """Who the configured token belongs to."""
    client, admin = _admin(settings)
    with client:
        me = admin.me()
    if args.output == "json":
        print_json(me)
    else:
        role = f", default role {me['DefaultRole']}" if me.get("DefaultRole") else ""
        sys.stdout.write(f"{me['UserName']}{' (admin)' if me.get('Admin') else ''}{role}\n")
    return EXIT_OK


# -- tokens -------------------------------------------------------------------------------------------------


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    """Create a token for a user and print it (once)."""
    client, admin = _admin(settings)
    with client:
        token = admin.create_token(args.user, expires_in=args.expires_in, description=args.description)
    if args.output == "json":
        print_json(token)
        return EXIT_OK
    expiry = f", expires {fmt_time(token['ExpiresTime'])}" if token.get("ExpiresTime") else ", never expires"
    sys.stdout.write(f"Created token {token['TokenId']} for {token['UserName']}{expiry}.\n")
    _show_token(str(token["Token"]))
    return EXIT_OK


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    """List tokens (ids and state, never secrets)."""
    client, admin = _admin(settings)
    with client:
        tokens = admin.list_tokens(args.user)
    if args.output == "json":
        print_json({"Tokens": tokens})
        return EXIT_OK
    rows = [
        (
            t["TokenId"],
            t["UserName"],
            t["Status"],
            fmt_time(t.get("CreationTime")),
            fmt_time(t.get("ExpiresTime")),
            fmt_time(t.get("LastUsedTime")),
            t.get("Description"),
        )
        for t in tokens
    ]
    print_table(("TOKEN ID", "USER", "STATUS", "CREATED", "EXPIRES", "LAST USED", "DESCRIPTION"), rows)
    return EXIT_OK


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke a token at once."""
    client, admin = _admin(settings)
    with client:
        token = admin.revoke_token(args.token_id)
    if args.output == "json":
        print_json(token)
    else:
        sys.stdout.write(f"Revoked token {token['TokenId']} of {token['UserName']}.\n")
    return EXIT_OK


# -- audit --------------------------------------------------------------------------------------------------


def since_epoch(text: str, *, now: float | None = None) -> float:
    """``--since``: an age like ``30m``, ``12h``, ``7d`` (that long ago) or epoch seconds."""
    value = text.strip()
    if value and value[-1] in _UNITS and value[:-1].isdigit():
        return (time.time() if now is None else now) - int(value[:-1]) * _UNITS[value[-1]]
    try:
        return float(value)
    except ValueError:
        raise ValidationError(
            f"--since: {text!r} is neither an age (30m, 12h, 7d) nor epoch seconds", field="since"
        ) from None


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Print audit events, newest first."""
    since = since_epoch(args.since) if args.since else None
    client, admin = _admin(settings)
    with client:
        events = admin.audit(user=args.user, action=args.action, target=args.job, since=since, max_results=args.limit)
    if args.output == "json":
        print_json({"Events": events})
        return EXIT_OK
    rows = [
        (
            fmt_time(e.get("Time")),
            e.get("UserName") or "(none)",
            e.get("Action"),
            e.get("Target"),
            e.get("Source"),
            e.get("Outcome"),
            e.get("Detail"),
        )
        for e in events
    ]
    print_table(("TIME", "USER", "ACTION", "TARGET", "SOURCE", "OUTCOME", "DETAIL"), rows)
    return EXIT_OK


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def register(groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the ``users``, ``tokens`` and ``audit`` command groups."""
    users = groups.add_parser("users", help="create, list and disable users (admin)", parents=[common])
    commands = users.add_subparsers(dest="command", required=True, metavar="{create,list,disable,me}")
    create = commands.add_parser("create", help="create a user and print their first token", parents=[common])
    create.add_argument("name", help="lowercase letters, digits, '-' or '_', starting with a letter")
    create.add_argument("--admin", action="store_true", help="the user may manage users, tokens and every job")
    create.set_defaults(handler=cmd_users_create)
    ls = commands.add_parser("list", help="list users", parents=[common])
    ls.set_defaults(handler=cmd_users_list)
    disable = commands.add_parser("disable", help="disable a user (their tokens stop working)", parents=[common])
    disable.add_argument("name")
    disable.set_defaults(handler=cmd_users_disable)
    me = commands.add_parser("me", help="show who your token belongs to", parents=[common])
    me.set_defaults(handler=cmd_users_me)

    tokens = groups.add_parser("tokens", help="create, list and revoke API tokens (admin)", parents=[common])
    commands = tokens.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}")
    tcreate = commands.add_parser("create", help="create a token for a user and print it", parents=[common])
    tcreate.add_argument("user")
    tcreate.add_argument("--expires-in", help="lifetime, e.g. 30d, 12h, 45m (default: never expires)")
    tcreate.add_argument("--description", help="what the token is for")
    tcreate.set_defaults(handler=cmd_tokens_create)
    tls = commands.add_parser("list", help="list tokens (never their secrets)", parents=[common])
    tls.add_argument("--user", help="only this user's tokens")
    tls.set_defaults(handler=cmd_tokens_list)
    revoke = commands.add_parser("revoke", help="revoke a token at once", parents=[common])
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=cmd_tokens_revoke)

    audit = groups.add_parser("audit", help="read the audit log of API writes (admin)", parents=[common])
    audit.add_argument("--user", help="only this user's events")
    audit.add_argument("--action", help="only this action, e.g. CreateTrainingJob, StopTrainingJob, CreateUser")
    audit.add_argument("--job", help="only events on this job (or user, or token id)")
    audit.add_argument("--since", help="only events after this: an age (30m, 12h, 7d) or epoch seconds")
    audit.add_argument("--limit", type=_limit, default=100, help="at most this many events (1-1000, default 100)")
    audit.set_defaults(handler=cmd_audit)
