"""Use cases on users and API tokens: authenticate a bearer token, create and disable users, issue and revoke
tokens, read the audit log, and make sure the server's own token belongs to the admin.

A token is ``tf_<token id>_<secret>``; only the SHA-256 of the whole token is stored, and it is compared in
constant time. The server's own token (``$TRAINFORGE_HOME/token`` or ``TRAINFORGE_TOKEN``) predates this format:
its id is ``server-`` and the first 16 hex digits of its hash. Nothing about a token or a user is cached: a
disable or a revoke applies to the very next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from trainforge.errors import AuthError, ConflictError, PermissionDeniedError, ValidationError
from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.store.records import AuditRecord, TokenRecord, UserRecord
from trainforge.store.users import MAX_AUDIT_RESULTS, AuditQuery, UserStore

TOKEN_PREFIX = "tf_"
USER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TOKEN_RE = re.compile(r"^tf_([0-9a-f]{16})_([A-Za-z0-9_-]{20,200})$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_EXPIRY_S = 10 * 365 * 86400
LAST_USED_EVERY_S = 60.0  # last_used_time is written at most this often per token
SERVER_TOKEN_DESCRIPTION = "the server's own token ($TRAINFORGE_HOME/token or TRAINFORGE_TOKEN)"
HOW_TO_GET_A_TOKEN = "ask an admin for a new one ('trainforge tokens create USER')"


def hash_token(token: str) -> str:
    """The SHA-256 (hex) of a whole token: what the store keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str:
    """The public id of a token: the ``<token id>`` of ``tf_<token id>_<secret>``, else ``server-<hash prefix>``."""
    match = _TOKEN_RE.match(token)
    if match:
        return match.group(1)
    return "server-" + hash_token(token)[:16]


def new_token() -> tuple[str, str]:
    """A fresh ``(token, token id)``: 64 bits of id and 256 bits of secret."""
    token_id = secrets.token_hex(8)
    return f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}", token_id


def parse_duration(text: str, *, field: str = "ExpiresIn") -> int:
    """Seconds in ``30d``, ``12h``, ``45m``, ``90s``, ``2w`` or a plain number of seconds; ValidationError else."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValidationError(
            f"{field}: {text!r} is not a duration; write a number with a unit, e.g. 30d, 12h, 45m or 3600s",
            field=field,
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_EXPIRY_S:
        raise ValidationError(f"{field}: must be between 1 second and 10 years", field=field)
    return seconds


def check_user_name(name: str, *, field: str = "UserName") -> str:
    """``name`` if it is a valid user name, else a ValidationError saying what is allowed."""
    if not USER_NAME_RE.match(name):
        raise ValidationError(
            f"{field}: {name!r} is not a valid user name; use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter",
            field=field,
        )
    return name


@dataclass(frozen=True)
class Authenticated:
    """A request's verified identity: the user and the id of the token it presented."""

    principal: Principal
    token_id: str


def user_json(user: UserRecord) -> dict[str, Any]:
    """A user on the wire."""
    return {
        "UserName": user.name,
        "Admin": user.admin,
        "Disabled": user.disabled,
        "DefaultRole": user.default_role,
        "CreationTime": user.created_time,
    }


def token_json(token: TokenRecord, now: float) -> dict[str, Any]:
    """A token on the wire (never its secret)."""
    return {
        "TokenId": token.token_id,
        "UserName": token.user,
        "Description": token.description,
        "Status": token.state(now),
        "CreationTime": token.created_time,
        "ExpiresTime": token.expires_time,
        "RevokedTime": token.revoked_time,
        "LastUsedTime": token.last_used_time,
    }


def audit_json(event: AuditRecord) -> dict[str, Any]:
    """An audit event on the wire."""
    return {
        "Time": event.time,
        "UserName": event.user,
        "Action": event.action,
        "Target": event.target,
        "Source": event.source,
        "Outcome": event.outcome,
        "Detail": event.detail,
    }


@dataclass
class UserService:
    """Users, tokens and the audit log; routes call one method each."""

    store: UserStore

    # -- authentication -----------------------------------------------------------------------------------

    def authenticate(self, token: str | None, *, now: float | None = None) -> Authenticated:
        """The user ``token`` belongs to.

        Raises:
            AuthError: No token, an unknown one, or one that is expired or revoked, or whose user is disabled;
                the message says which and what to do.
        """
        t = time.time() if now is None else now
        if not token:
            raise AuthError(
                "missing credentials: send 'Authorization: Bearer <token>' (set TRAINFORGE_TOKEN; the embedded "
                "server's admin token is in $TRAINFORGE_HOME/token)"
            )
        token_id = token_id_of(token)
        check = self.store.token_check(token_id)
        if check is None or not hmac.compare_digest(check.secret_hash, hash_token(token)):
            raise AuthError(f"the API token is not valid for this server (unknown token); {HOW_TO_GET_A_TOKEN}")
        principal = self._usable(check.user, check.token, t)
        if check.token.last_used_time is None or t - check.token.last_used_time >= LAST_USED_EVERY_S:
            self.store.touch_token(token_id, t)
        return Authenticated(principal=principal, token_id=token_id)

    def recheck(self, user: str, token_id: str, *, now: float | None = None) -> Principal:
        """A signed-in console session's user, if its token and user are still good (AuthError otherwise)."""
        t = time.time() if now is None else now
        check = self.store.token_check(token_id)
        if check is None or check.user.name != user:
            raise AuthError(f"the API token {token_id} no longer exists; sign in again")
        return self._usable(check.user, check.token, t)

    @staticmethod
    def _usable(user: UserRecord, token: TokenRecord, now: float) -> Principal:
        state = token.state(now)
        if state == "Revoked":
            raise AuthError(f"the API token {token.token_id} was revoked; {HOW_TO_GET_A_TOKEN}")
        if state == "Expired":
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(token.expires_time or 0))
            raise AuthError(f"the API token {token.token_id} expired at {when}; {HOW_TO_GET_A_TOKEN}")
        if user.disabled:
            raise AuthError(f"user {user.name!r} is disabled; ask an admin if you still need access")
        return Principal(user=user.name, admin=user.admin)

    # -- the server's own token ---------------------------------------------------------------------------

    def register_server_token(self, token: str) -> TokenRecord | None:
        """Make ``token`` (the home token or ``TRAINFORGE_TOKEN``) a token of the admin user ``admin``.

        On an empty database this creates ``admin`` first. A token already registered (even revoked) is left as
        it is, so a revoke survives restarts. Safe when several servers start at once on one database. Returns
        the newly registered token, or ``None`` when it was already there.
        """
        token_id = token_id_of(token)
        if self.store.token_check(token_id) is not None:
            return None
        self.store.ensure_user(ADMIN_USER, admin=True)
        try:
            return self.store.add_token(
                ADMIN_USER, token_id=token_id, secret_hash=hash_token(token), description=SERVER_TOKEN_DESCRIPTION
            )
        except ConflictError:
            return None

    # -- users --------------------------------------------------------------------------------------------

    def create_user(
        self, name: str, *, admin: bool = False, description: str | None = None
    ) -> tuple[UserRecord, str, TokenRecord]:
        """A new user and their first token ``(user, token, token record)``; the token is shown only here."""
        user = self.store.create_user(check_user_name(name), admin=admin)
        token, record = self._issue(user.name, expires_time=None, description=description or "first token")
        return user, token, record

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        return self.store.list_users()

    def disable_user(self, name: str, *, by: Principal) -> UserRecord:
        """Disable a user: their tokens and console sessions stop working at the next request.

        Raises:
            NotFoundError: No such user.
            ValidationError: It would leave no enabled admin.
        """
        user = self.store.get_user(name)
        if user.admin and not user.disabled and self.store.count_enabled_admins() <= 1:
            who = "yourself" if by.user == name else f"{name!r}"
            raise ValidationError(
                f"UserName: cannot disable {who}: {name!r} is the only enabled admin; make another admin first "
                "('trainforge users create NAME --admin')",
                field="UserName",
            )
        return self.store.set_disabled(name, True)

    # -- tokens -------------------------------------------------------------------------------------------

    def create_token(
        self, user: str, *, expires_in: str | None = None, description: str | None = None
    ) -> tuple[str, TokenRecord]:
        """A new token of ``user`` ``(token, record)``, expiring after ``expires_in`` (e.g. ``30d``) if given."""
        owner = self.store.get_user(check_user_name(user))
        if description is not None and len(description) > 255:
            raise ValidationError("Description: at most 255 characters", field="Description")
        expires = None if expires_in is None else time.time() + parse_duration(expires_in)
        return self._issue(owner.name, expires_time=expires, description=description)

    def _issue(self, user: str, *, expires_time: float | None, description: str | None) -> tuple[str, TokenRecord]:
        token, token_id = new_token()
        record = self.store.add_token(
            user, token_id=token_id, secret_hash=hash_token(token), description=description, expires_time=expires_time
        )
        return token, record

    def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        """Tokens (of one user when given), oldest first."""
        return self.store.list_tokens(user)

    def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke a token at once; idempotent."""
        return self.store.revoke_token(token_id)

    def me(self, principal: Principal) -> dict[str, Any]:
        """``{"UserName", "Admin", "DefaultRole"}`` of the caller."""
        user = self.store.get_user(principal.user)
        return {"UserName": user.name, "Admin": user.admin, "DefaultRole": user.default_role}

    # -- audit --------------------------------------------------------------------------------------------

    def audit(self, query: AuditQuery) -> list[AuditRecord]:
        """Audit events matching ``query``, newest first."""
        if not 1 <= query.limit <= MAX_AUDIT_RESULTS:
            raise ValidationError(f"MaxResults: must be between 1 and {MAX_AUDIT_RESULTS}", field="MaxResults")
        return self.store.list_audit(query)


def require_admin_principal(principal: Principal) -> Principal:
    """``principal`` if an admin, else PermissionDeniedError naming the user."""
    if not principal.admin:
        raise PermissionDeniedError(f"user {principal.user!r} is not an admin; ask an admin to do this")
    return principal
