"""``ConsoleNonceStore``: the console's used one-time sign-in tickets and signed-out sessions, in the database.

Kept in the ``console_nonces`` table so that a restarted server, or another server on the same PostgreSQL
database, still refuses a signed-out cookie and an already used ticket. Each row lives until its
``expires_time`` (after which the ticket or cookie is refused by its own signature anyway); expired rows are
purged opportunistically, at most once per :data:`PURGE_INTERVAL_S` per process.

"Redeem once" is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on the nonce (the primary key): of two servers
that race on one ticket, exactly one inserts the row and so accepts it.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from trainforge.store.tables import console_nonces

NonceKind = Literal["ticket", "signout"]
PURGE_INTERVAL_S = 60.0


class ConsoleNonceStore:
    """Used tickets and signed-out session nonces of the console, shared by every server on one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def add_once(self, nonce: str, kind: NonceKind, expires: float, *, now: float | None = None) -> bool:
        """Record ``nonce``; ``True`` only for the one call (on any server) that stored it first.

        A nonce already present (of either kind) is left as it is and ``False`` is returned.
        """
        self._maybe_purge(time.time() if now is None else now)
        if self.engine.dialect.name == "postgresql":
            stmt = pg_insert(console_nonces).values(nonce=nonce, kind=kind, expires_time=float(expires))
            stmt = stmt.on_conflict_do_nothing(index_elements=[console_nonces.c.nonce])
        else:
            stmt = sqlite_insert(console_nonces).values(nonce=nonce, kind=kind, expires_time=float(expires))  # type: ignore[assignment]
            stmt = stmt.on_conflict_do_nothing(index_elements=[console_nonces.c.nonce])
        # RETURNING names the row only when this statement inserted it (rowcount is not reliable on psycopg).
        with self.engine.begin() as conn:
            return conn.execute(stmt.returning(console_nonces.c.nonce)).first() is not None

    def contains(self, nonce: str, kind: NonceKind) -> bool:
        """Whether ``nonce`` was recorded as ``kind`` (expired rows not yet purged still count: harmless, since
        the caller refuses expired values by their signature first)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(console_nonces.c.nonce).where(console_nonces.c.nonce == nonce, console_nonces.c.kind == kind)
            ).first()
        return row is not None

    def purge(self, now: float | None = None) -> int:
        """Delete every row whose ``expires_time`` has passed; return how many."""
        t = time.time() if now is None else now
        with self.engine.begin() as conn:
            return int(conn.execute(delete(console_nonces).where(console_nonces.c.expires_time < t)).rowcount or 0)

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_INTERVAL_S
        self.purge(now)
