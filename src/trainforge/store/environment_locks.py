"""``EnvironmentLockStore``: each ``requirements.txt`` layer's resolution, stored once under its key.

Table ``environment_locks`` (migration 0008). A key's resolution never changes: the first writer wins, and a later
write of another resolution for the same key leaves the stored one, which it is handed back (so every node of
every job installs the same packages). Every method is one short transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from trainforge.store.tables import environment_locks


@dataclass(frozen=True)
class EnvironmentLockRecord:
    """A stored resolution: its key, text, the Python version it was resolved for, and when it was stored."""

    key: str
    resolution: str
    python: str
    created_time: float


def _record(row: Row[object]) -> EnvironmentLockRecord:
    m = row._mapping
    return EnvironmentLockRecord(str(m["key"]), str(m["resolution"]), str(m["python"]), float(m["created_time"]))


class EnvironmentLockStore:
    """Layer resolutions in the job store's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> EnvironmentLockRecord | None:
        """The resolution stored under ``key``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(environment_locks).where(environment_locks.c.key == key)).first()
        return _record(row) if row is not None else None

    def put(
        self, key: str, resolution: str, python: str, *, now: float | None = None
    ) -> tuple[EnvironmentLockRecord, bool]:
        """Store ``resolution`` under ``key`` unless a resolution is stored there already.

        Returns the stored record and whether this call stored it; racing writers each get the one record that won.
        """
        record = EnvironmentLockRecord(key, resolution, python, time.time() if now is None else now)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(environment_locks).values(
                        key=key, resolution=resolution, python=python, created_time=record.created_time
                    )
                )
            return record, True
        except IntegrityError:
            stored = self.get(key)
            if stored is None:  # a key is never deleted: the conflict was something else
                raise
            return stored, False
