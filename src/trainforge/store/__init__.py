"""The job store: SQLAlchemy tables, Alembic migrations and :class:`JobStore`."""

from __future__ import annotations

from trainforge.store.engine import make_engine
from trainforge.store.jobs import JobStore, ListQuery, NewJob
from trainforge.store.migrate import upgrade
from trainforge.store.records import (
    AuditRecord,
    JobRecord,
    LogRecord,
    MetricRecord,
    TokenRecord,
    TransitionRecord,
    UserRecord,
)
from trainforge.store.users import AuditQuery, TokenCheck, UserStore

__all__ = [
    "AuditQuery",
    "AuditRecord",
    "JobRecord",
    "JobStore",
    "ListQuery",
    "LogRecord",
    "MetricRecord",
    "NewJob",
    "TokenCheck",
    "TokenRecord",
    "TransitionRecord",
    "UserRecord",
    "UserStore",
    "make_engine",
    "open_job_store",
    "upgrade",
]


def open_job_store(url: str) -> JobStore:
    """A migrated :class:`JobStore` on the database at ``url``.

    Raises:
        ValidationError: The database cannot be reached or used (names ``TRAINFORGE_DATABASE_URL``).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from trainforge.errors import ValidationError

    engine = make_engine(url)
    try:
        upgrade(engine)
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ValidationError(
            f"TRAINFORGE_DATABASE_URL: cannot use the database at {engine.url.render_as_string(hide_password=True)} "
            f"({cause}); check that the server is running and the user may connect, or unset "
            "TRAINFORGE_DATABASE_URL to use SQLite in TRAINFORGE_HOME",
            field="TRAINFORGE_DATABASE_URL",
        ) from None
    return JobStore(engine)
