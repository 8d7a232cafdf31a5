"""Use cases on roles: administer them, and resolve the role a job runs with.

A role is a named grant of object-store prefixes (see :mod:`trainforge.storage.scoped` for the prefix rules; a
write grant implies read). Every server has the built-in role :data:`BUILTIN_ROLE` (read and write ``s3://``),
granted to the admin user as its default role.

Resolution of a job's ``RoleArn`` (:meth:`RoleService.resolve_for_job`): the role name is the ARN's last path
element (``arn:aws:iam::123456789012:role/path/SageMakerRole`` -> ``SageMakerRole``). A user must pass a role
granted to them. An admin may pass any role; an admin passing a name the server does not know (scripts written
for SageMaker pass e.g. ``SageMakerRole``) runs with the admin's default role.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Protocol

from trainforge.errors import ConflictError, ValidationError
from trainforge.spec.contract import DEFAULT_ROLE_NAME
from trainforge.storage.scoped import EVERYTHING, Grants, normalize_prefix, union
from trainforge.store.roles import RoleRecord, RoleStore

BUILTIN_ROLE = DEFAULT_ROLE_NAME
ROLE_NAME_RE = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")


class Caller(Protocol):
    """Who asks: a user name and whether that user is an admin (``trainforge.server.auth.Principal``)."""

    @property
    def user(self) -> str: ...

    @property
    def admin(self) -> bool: ...


def role_name_of(role_arn: str) -> str:
    """The role name an ARN (or a bare name) stands for: its last path element."""
    return role_arn.rstrip("/").rsplit("/", 1)[-1]


def role_arn(account_id: str, name: str) -> str:
    """``arn:aws:iam::<account_id>:role/<name>``."""
    return f"arn:aws:iam::{account_id}:role/{name}"


def check_role_name(name: str, *, field: str = "RoleName") -> str:
    """``name`` if it is a valid role name (IAM's: 1-64 of letters, digits and ``+=,.@_-``)."""
    if not isinstance(name, str) or not ROLE_NAME_RE.match(name):
        raise ValidationError(
            f"{field}: {name!r} is not a valid role name; use 1-64 letters, digits and +=,.@_- (as IAM role names)",
            field=field,
        )
    return name


class RoleService:
    """Roles over a :class:`RoleStore`; ``account_id`` makes role ARNs."""

    def __init__(self, store: RoleStore, *, account_id: str = "000000000000") -> None:
        self.store = store
        self.account_id = account_id

    def view(self, role: RoleRecord) -> dict[str, Any]:
        """A role as the API shows it."""
        return {
            "RoleName": role.name,
            "Arn": role_arn(self.account_id, role.name),
            "Read": list(role.read),
            "Write": list(role.write),
            "Description": role.description or "",
            "Users": list(role.users),
            "DefaultFor": list(role.default_for),
            "BuiltIn": role.name == BUILTIN_ROLE,
            "CreationTime": role.created_time,
        }

    def create(self, name: str, *, read: list[str], write: list[str], description: str | None = None) -> dict[str, Any]:
        """Create a role; prefixes must be ``s3://`` prefixes (``ValidationError`` naming ``--read``/``--write``).

        Raises:
            ValidationError: A bad name or prefix, or no prefix at all.
            ConflictError: The name is taken.
        """
        check_role_name(name)
        reads = [normalize_prefix(p, field="--read") for p in read]
        writes = [normalize_prefix(p, field="--write") for p in write]
        if not reads and not writes:
            raise ValidationError(
                "--read/--write: a role needs at least one prefix, e.g. --read s3://bucket/data/ --write s3://bucket/out/",
                field="--read",
            )
        return self.view(self.store.create(name, read=reads, write=writes, description=description))

    def list_roles(self) -> dict[str, Any]:
        """Every role, by name: ``{"Roles": [...]}``."""
        return {"Roles": [self.view(r) for r in self.store.all()]}

    def delete(self, name: str) -> None:
        """Delete a role and its grants. The built-in role cannot be deleted (``ValidationError``)."""
        if name == BUILTIN_ROLE:
            raise ValidationError(
                f"RoleName: {BUILTIN_ROLE} is built in (the admin's default role) and cannot be deleted",
                field="RoleName",
            )
        self.store.delete(name)

    def grant(self, role: str, user: str, *, make_default: bool = False) -> dict[str, Any]:
        """Grant ``role`` to ``user``: ``{"RoleName", "UserName", "Default": bool}``."""
        default = self.store.grant(role, user, make_default=make_default)
        return {"RoleName": role, "UserName": user, "Default": default}

    def revoke(self, role: str, user: str) -> dict[str, Any]:
        """Take ``role`` from ``user``: ``{"RoleName", "UserName", "DefaultRole": the user's default now}``."""
        self.store.revoke(role, user)
        return {"RoleName": role, "UserName": user, "DefaultRole": self.store.default_role(user)}

    def ensure_builtin(self, admin_user: str) -> None:
        """Make sure :data:`BUILTIN_ROLE` exists and is granted to ``admin_user``; it becomes the admin's default
        when the admin has none. Idempotent, safe when two servers start on one database."""
        if self.store.find(BUILTIN_ROLE) is None:
            with contextlib.suppress(ConflictError):  # made meanwhile by another server on the same database
                self.store.create(
                    BUILTIN_ROLE,
                    read=[EVERYTHING],
                    write=[EVERYTHING],
                    description="built in: read and write every bucket",
                )
        self.store.grant(BUILTIN_ROLE, admin_user)

    def default_role_arn(self, user: str) -> str | None:
        """The ARN of ``user``'s default role, or None."""
        name = self.store.default_role(user)
        return role_arn(self.account_id, name) if name else None

    def grants_of(self, caller: Caller) -> Grants | None:
        """What ``caller`` may read and write through their roles together (None: an admin, unrestricted)."""
        if caller.admin:
            return None
        return union((Grants.from_role(r.as_role()) for r in self.store.roles_of(caller.user)), caller.user)

    def resolve_for_job(self, caller: Caller, role_arn_value: str) -> dict[str, Any] | None:
        """The role a job submitted by ``caller`` with ``RoleArn`` runs with: ``{"name", "read", "write"}``.

        Raises:
            ValidationError: (field ``RoleArn``) a user passed a role not granted to them; the message names the
                roles they may pass and how an admin grants one.
        """
        name = role_name_of(role_arn_value)
        if caller.admin:
            role = self.store.find(name)
            if role is None:
                default = self.store.default_role(caller.user) or BUILTIN_ROLE
                role = self.store.find(default)
            return role.as_role() if role is not None else None
        granted = self.store.roles_of(caller.user)
        for role in granted:
            if role.name == name:
                return role.as_role()
        may = ", ".join(r.name for r in granted) or "none yet"
        known = self.store.find(name) is not None
        what = f"role '{name}' is not granted to user '{caller.user}'" if known else f"there is no role '{name}'"
        raise ValidationError(
            f"RoleArn: {what}; roles you may pass: {may}. Pass one of them (get_execution_role() returns your "
            f"default role), or ask an admin to run 'trainforge roles grant ROLE {caller.user}'",
            field="RoleArn",
            details={"roles": [r.name for r in granted]},
        )
