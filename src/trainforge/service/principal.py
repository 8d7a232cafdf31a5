"""Who a request acts for, and which jobs that user may see."""

from __future__ import annotations

from dataclasses import dataclass

from trainforge.store.records import JobRecord

ADMIN_USER = "admin"  # made at first start; owns the server's own token and every job older than users


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user name, and whether that user is an admin."""

    user: str
    admin: bool


def owner_of(job: JobRecord) -> str:
    """The user a job belongs to: its ``created_by``, or the admin for jobs made before users existed."""
    return job.created_by or ADMIN_USER


def may_see(principal: Principal, job: JobRecord) -> bool:
    """Whether ``principal`` may see and act on ``job``: its owner, or any admin."""
    return principal.admin or owner_of(job) == principal.user
