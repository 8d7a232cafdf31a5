"""The job store: SQLAlchemy tables, Alembic migrations and :class:`JobStore`."""

from __future__ import annotations

from trainforge.store.engine import make_engine
from trainforge.store.jobs import JobStore, ListQuery, NewJob
from trainforge.store.migrate import upgrade
from trainforge.store.records import JobRecord, LogRecord, MetricRecord, TransitionRecord

__all__ = [
    "JobRecord",
    "JobStore",
    "ListQuery",
    "LogRecord",
    "MetricRecord",
    "NewJob",
    "TransitionRecord",
    "make_engine",
    "open_job_store",
    "upgrade",
]


def open_job_store(url: str) -> JobStore:
    """A migrated :class:`JobStore` on the database at ``url``."""
    engine = make_engine(url)
    upgrade(engine)
    return JobStore(engine)
