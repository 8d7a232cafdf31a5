"""``UserStore``: users, their API tokens (hashed) and the audit log, in the job store's database.

Tokens are never stored: only their public id and the SHA-256 of the whole token. Every method is one short
transaction; inserts that race on a unique name (two servers bootstrapping one PostgreSQL database) surface as
:class:`~trainforge.errors.ConflictError`, which callers that mean "get or create" answer by reading again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, and_, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from trainforge.errors import ConflictError, NotFoundError
from trainforge.store.records import AuditRecord, TokenRecord, UserRecord
from trainforge.store.tables import api_tokens, audit_events, users

MAX_AUDIT_RESULTS = 1000


@dataclass(frozen=True)
class TokenCheck:
    """What authenticating one token needs: the token, its stored hash, and its user."""

    token: TokenRecord
    secret_hash: str
    user: UserRecord


@dataclass(frozen=True)
class AuditQuery:
    """Filters of an audit listing; newest events first."""

    user: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100


def _user(row: Row[object]) -> UserRecord:
    m = row._mapping
    return UserRecord(
        id=int(m["id"]),
        name=str(m["name"]),
        admin=bool(m["admin"]),
        disabled=bool(m["disabled"]),
        default_role=m["default_role"],
        created_time=float(m["created_time"]),
    )


def _token(row: Row[object], user: str) -> TokenRecord:
    m = row._mapping
    return TokenRecord(
        token_id=str(m["token_id"]),
        user=user,
        description=m["description"],
        created_time=float(m["created_time"]),
        expires_time=m["expires_time"],
        revoked_time=m["revoked_time"],
        last_used_time=m["last_used_time"],
    )


def user_not_found(name: str) -> NotFoundError:
    """The error for an unknown user name."""
    return NotFoundError(f"user {name!r} does not exist (see 'trainforge users list')")


def token_not_found(token_id: str) -> NotFoundError:
    """The error for an unknown token id."""
    return NotFoundError(f"API token {token_id!r} does not exist (see 'trainforge tokens list')")


class UserStore:
    """Users, API tokens and audit events on one SQL engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users --------------------------------------------------------------------------------------------

    def create_user(self, name: str, *, admin: bool = False, now: float | None = None) -> UserRecord:
        """Insert a user; :class:`ConflictError` when the name is taken."""
        t = time.time() if now is None else now
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(users).values(name=name, admin=int(admin), disabled=0, created_time=t))
                return _user(conn.execute(select(users).where(users.c.name == name)).one())
        except IntegrityError:
            raise ConflictError(
                f"UserName: a user named {name!r} already exists", details={"field": "UserName", "name": name}
            ) from None

    def get_user(self, name: str) -> UserRecord:
        """The user called ``name``; :class:`NotFoundError` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            raise user_not_found(name)
        return _user(row)

    def ensure_user(self, name: str, *, admin: bool) -> UserRecord:
        """The user called ``name``, created (with ``admin``) when missing; safe when servers race to create it."""
        try:
            return self.get_user(name)
        except NotFoundError:
            pass
        try:
            return self.create_user(name, admin=admin)
        except ConflictError:
            return self.get_user(name)

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.name)).all()]

    def count_enabled_admins(self) -> int:
        """How many admins are not disabled."""
        stmt = select(func.count()).select_from(users).where(users.c.admin == 1, users.c.disabled == 0)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def set_disabled(self, name: str, disabled: bool) -> UserRecord:
        """Disable (or enable) a user; the change applies to the very next request. Idempotent."""
        with self.engine.begin() as conn:
            if conn.execute(update(users).where(users.c.name == name).values(disabled=int(disabled))).rowcount != 1:
                raise user_not_found(name)
            return _user(conn.execute(select(users).where(users.c.name == name)).one())

    def set_default_role(self, name: str, role: str | None) -> UserRecord:
        """Set (or clear) the role a user's jobs get when they name none."""
        with self.engine.begin() as conn:
            if conn.execute(update(users).where(users.c.name == name).values(default_role=role)).rowcount != 1:
                raise user_not_found(name)
            return _user(conn.execute(select(users).where(users.c.name == name)).one())

    # -- tokens -------------------------------------------------------------------------------------------

    def add_token(
        self,
        user: str,
        *,
        token_id: str,
        secret_hash: str,
        description: str | None = None,
        expires_time: float | None = None,
        now: float | None = None,
    ) -> TokenRecord:
        """Store a token of ``user`` by its id and hash; :class:`ConflictError` when the id is taken."""
        t = time.time() if now is None else now
        owner = self.get_user(user)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(api_tokens).values(
                        token_id=token_id,
                        user_id=owner.id,
                        secret_hash=secret_hash,
                        description=description,
                        created_time=t,
                        expires_time=expires_time,
                    )
                )
                row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).one()
                return _token(row, owner.name)
        except IntegrityError:
            raise ConflictError(f"API token id {token_id!r} is taken", details={"token_id": token_id}) from None

    def token_check(self, token_id: str) -> TokenCheck | None:
        """The token with this id, its stored hash and its user (one statement), or ``None``."""
        stmt = (
            select(
                api_tokens,
                users.c.name.label("u_name"),
                users.c.admin.label("u_admin"),
                users.c.disabled.label("u_disabled"),
                users.c.default_role.label("u_default_role"),
                users.c.created_time.label("u_created_time"),
            )
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.token_id == token_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        user = UserRecord(
            id=int(row.user_id),
            name=str(row.u_name),
            admin=bool(row.u_admin),
            disabled=bool(row.u_disabled),
            default_role=row.u_default_role,
            created_time=float(row.u_created_time),
        )
        return TokenCheck(token=_token(row, user.name), secret_hash=str(row.secret_hash), user=user)

    def touch_token(self, token_id: str, now: float) -> None:
        """Record that the token was used at ``now``."""
        with self.engine.begin() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.token_id == token_id).values(last_used_time=now))

    def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        """Tokens (of ``user`` only, when given), oldest first; :class:`NotFoundError` for an unknown user."""
        stmt = select(api_tokens, users.c.name.label("user_name")).join(users, users.c.id == api_tokens.c.user_id)
        if user is not None:
            self.get_user(user)
            stmt = stmt.where(users.c.name == user)
        stmt = stmt.order_by(api_tokens.c.created_time, api_tokens.c.id)
        with self.engine.connect() as conn:
            return [_token(r, r.user_name) for r in conn.execute(stmt).all()]

    def revoke_token(self, token_id: str, *, now: float | None = None) -> TokenRecord:
        """Revoke a token from now on; revoking it again keeps the first time. :class:`NotFoundError` if unknown."""
        t = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_time.is_(None))
                .values(revoked_time=t)
            )
        check = self.token_check(token_id)
        if check is None:
            raise token_not_found(token_id)
        return check.token

    # -- audit --------------------------------------------------------------------------------------------

    def append_audit(
        self,
        *,
        action: str,
        outcome: str,
        user: str | None = None,
        target: str | None = None,
        source: str | None = None,
        detail: str | None = None,
        now: float | None = None,
    ) -> None:
        """Append one audit event (values longer than their column are cut)."""
        values = {
            "time": time.time() if now is None else now,
            "user_name": user[:64] if user else None,
            "action": action[:64],
            "target": target[:255] if target else None,
            "source": source[:255] if source else None,
            "outcome": outcome[:16],
            "detail": detail,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(audit_events).values(**values))

    def list_audit(self, query: AuditQuery) -> list[AuditRecord]:
        """Events matching ``query``, newest first, at most ``query.limit``."""
        a = audit_events
        conds = []
        if query.user is not None:
            conds.append(a.c.user_name == query.user)
        if query.action is not None:
            conds.append(func.lower(a.c.action) == query.action.lower())
        if query.target is not None:
            conds.append(a.c.target == query.target)
        if query.since is not None:
            conds.append(a.c.time >= query.since)
        if query.until is not None:
            conds.append(a.c.time <= query.until)
        limit = max(1, min(query.limit, MAX_AUDIT_RESULTS))
        stmt = select(a).where(and_(True, *conds)).order_by(a.c.time.desc(), a.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [
                AuditRecord(r.id, r.time, r.user_name, r.action, r.target, r.source, r.outcome, r.detail)
                for r in conn.execute(stmt).all()
            ]
