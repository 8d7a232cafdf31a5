"""``RoleStore``: roles (named grants of object-store prefixes) and which users may pass them.

Tables ``roles`` and ``role_grants`` (migration 0004); a user's default role is ``users.default_role``. Every
method is one short transaction. Names are compared exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from trainforge.errors import ConflictError, NotFoundError
from trainforge.store.tables import role_grants, roles, users


@dataclass(frozen=True)
class RoleRecord:
    """A stored role, with the users it is granted to (sorted) and those for whom it is the default."""

    name: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    description: str | None
    created_time: float
    users: tuple[str, ...] = field(default=())
    default_for: tuple[str, ...] = field(default=())

    def as_role(self) -> dict[str, object]:
        """The role as a job carries it: ``{"name", "read": [...], "write": [...]}``."""
        return {"name": self.name, "read": list(self.read), "write": list(self.write)}


def role_not_found(name: str) -> NotFoundError:
    """The error for an unknown role name."""
    return NotFoundError(f"role {name!r} does not exist (see 'trainforge roles list')")


def _user_not_found(name: str) -> NotFoundError:
    return NotFoundError(f"user {name!r} does not exist (see 'trainforge users list')")


class RoleStore:
    """Roles and grants in the job store's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- reading -------------------------------------------------------------------------------------------

    @staticmethod
    def _record(conn: Connection, row: Row[object]) -> RoleRecord:
        m = row._mapping
        granted = conn.execute(
            select(users.c.name, users.c.default_role)
            .select_from(role_grants.join(users, role_grants.c.user_id == users.c.id))
            .where(role_grants.c.role_id == m["id"])
            .order_by(users.c.name)
        ).all()
        return RoleRecord(
            name=str(m["name"]),
            read=tuple(json.loads(m["read_prefixes"])),
            write=tuple(json.loads(m["write_prefixes"])),
            description=m["description"],
            created_time=float(m["created_time"]),
            users=tuple(str(u.name) for u in granted),
            default_for=tuple(str(u.name) for u in granted if u.default_role == m["name"]),
        )

    def get(self, name: str) -> RoleRecord:
        """The role ``name``; ``NotFoundError`` if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(roles).where(roles.c.name == name)).first()
            if row is None:
                raise role_not_found(name)
            return self._record(conn, row)

    def find(self, name: str) -> RoleRecord | None:
        """The role ``name``, or None."""
        try:
            return self.get(name)
        except NotFoundError:
            return None

    def all(self) -> list[RoleRecord]:
        """Every role, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(roles).order_by(roles.c.name)).all()
            return [self._record(conn, row) for row in rows]

    def roles_of(self, user: str) -> list[RoleRecord]:
        """The roles granted to ``user``, by name (empty for an unknown user)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(roles)
                .select_from(
                    roles.join(role_grants, role_grants.c.role_id == roles.c.id).join(
                        users, role_grants.c.user_id == users.c.id
                    )
                )
                .where(users.c.name == user)
                .order_by(roles.c.name)
            ).all()
            return [self._record(conn, row) for row in rows]

    def default_role(self, user: str) -> str | None:
        """The name of ``user``'s default role (None: none, or no such user)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(users.c.default_role).where(users.c.name == user)).scalar()
        return str(value) if value else None

    # -- writing -------------------------------------------------------------------------------------------

    def create(
        self, name: str, *, read: list[str], write: list[str], description: str | None = None, now: float | None = None
    ) -> RoleRecord:
        """Insert a role; ``ConflictError`` if the name is taken."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(roles).values(
                        name=name,
                        read_prefixes=json.dumps(read),
                        write_prefixes=json.dumps(write),
                        description=description,
                        created_time=time.time() if now is None else now,
                    )
                )
        except IntegrityError:
            raise ConflictError(f"role {name!r} already exists (see 'trainforge roles list')") from None
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove the role, its grants, and it as anyone's default; ``NotFoundError`` if there is none."""
        with self.engine.begin() as conn:
            role_id = conn.execute(select(roles.c.id).where(roles.c.name == name)).scalar()
            if role_id is None:
                raise role_not_found(name)
            holders = [
                int(u)
                for u in conn.execute(select(role_grants.c.user_id).where(role_grants.c.role_id == role_id)).scalars()
            ]
            conn.execute(delete(role_grants).where(role_grants.c.role_id == role_id))
            conn.execute(delete(roles).where(roles.c.id == role_id))
            for user_id in holders:
                self._fix_default(conn, user_id, removed=name)

    def _ids(self, conn: Connection, role: str, user: str) -> tuple[int, int]:
        role_id = conn.execute(select(roles.c.id).where(roles.c.name == role)).scalar()
        if role_id is None:
            raise role_not_found(role)
        user_id = conn.execute(select(users.c.id).where(users.c.name == user)).scalar()
        if user_id is None:
            raise _user_not_found(user)
        return int(role_id), int(user_id)

    def grant(self, role: str, user: str, *, make_default: bool = False, now: float | None = None) -> bool:
        """Let ``user`` pass ``role`` (idempotent); it becomes the user's default with ``make_default`` or when
        the user has none. Returns whether the role is now the user's default.

        Raises:
            NotFoundError: The role or the user does not exist.
        """
        with self.engine.begin() as conn:
            role_id, user_id = self._ids(conn, role, user)
            exists = conn.execute(
                select(role_grants.c.role_id).where(role_grants.c.role_id == role_id, role_grants.c.user_id == user_id)
            ).first()
            if exists is None:
                conn.execute(
                    insert(role_grants).values(
                        role_id=role_id, user_id=user_id, created_time=time.time() if now is None else now
                    )
                )
            current = conn.execute(select(users.c.default_role).where(users.c.id == user_id)).scalar()
            if make_default or not current:
                conn.execute(update(users).where(users.c.id == user_id).values(default_role=role))
                return True
            return bool(current == role)

    def revoke(self, role: str, user: str) -> None:
        """Take ``role`` from ``user`` (idempotent); if it was the default, the user's first remaining role (by
        name) becomes the default, or none.

        Raises:
            NotFoundError: The role or the user does not exist.
        """
        with self.engine.begin() as conn:
            role_id, user_id = self._ids(conn, role, user)
            conn.execute(delete(role_grants).where(role_grants.c.role_id == role_id, role_grants.c.user_id == user_id))
            self._fix_default(conn, user_id, removed=role)

    @staticmethod
    def _fix_default(conn: Connection, user_id: int, *, removed: str) -> None:
        current = conn.execute(select(users.c.default_role).where(users.c.id == user_id)).scalar()
        if current != removed:
            return
        remaining = conn.execute(
            select(roles.c.name)
            .select_from(roles.join(role_grants, role_grants.c.role_id == roles.c.id))
            .where(role_grants.c.user_id == user_id)
            .order_by(roles.c.name)
        ).scalar()
        conn.execute(update(users).where(users.c.id == user_id).values(default_role=remaining))
