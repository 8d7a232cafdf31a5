"""Engines for the job store: SQLite (WAL, ``BEGIN IMMEDIATE`` writes) by default, PostgreSQL for teams."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from trainforge.errors import ValidationError

SQLITE_BUSY_TIMEOUT_MS = 60_000
WRITER_QUEUE_TIMEOUT_S = SQLITE_BUSY_TIMEOUT_MS / 1000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (the pysqlite recipe), so writes can use IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # This process's threads queue for the write lock on a Python lock, handed over the moment the holder commits
    # or rolls back; SQLite's own busy handler (still there for other processes) polls with sleeps of up to
    # 100 ms, which made each of many concurrent requests wait for seconds (bench/api_load.py).
    queue = threading.RLock()
    held = threading.local()

    def _release() -> None:
        if getattr(held, "depth", 0) > 0:
            held.depth -= 1
            queue.release()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every transaction takes the write lock up front: two writers queue on busy_timeout instead of
        # failing with "database is locked" when a read transaction tries to upgrade.
        if queue.acquire(timeout=WRITER_QUEUE_TIMEOUT_S):  # on timeout: fall back to SQLite's busy handler
            held.depth = getattr(held, "depth", 0) + 1
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release()
            raise

    dialect = engine.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def _commit(dbapi_conn: Any) -> None:
        try:
            do_commit(dbapi_conn)
        finally:
            _release()

    def _rollback(dbapi_conn: Any) -> None:
        try:
            do_rollback(dbapi_conn)
        finally:
            _release()

    dialect.do_commit = _commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = _rollback  # type: ignore[method-assign,assignment]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a long busy timeout and ``BEGIN IMMEDIATE`` writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValidationError(
            f"TRAINFORGE_DATABASE_URL: {parsed.get_backend_name()!r} databases are not supported; use sqlite:///path "
            "or postgresql+psycopg://user@host/db",
            field="database_url",
        )
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, future=True)
