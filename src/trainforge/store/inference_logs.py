"""``InferenceLogStore``: the log lines of endpoint instances and batch-transform instances.

Lines are kept under an *owner* (``endpoint/<name>/<creation ms>`` for one life of an endpoint,
``transform/<name>`` for a transform job), not under a row of another table, so an endpoint's lines outlive its
record (as CloudWatch keeps them after DeleteEndpoint). Appends are idempotent on (owner, attempt, host, seq).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from trainforge.store.records import LogRecord
from trainforge.store.tables import inference_log_lines


def endpoint_log_owner(name: str, creation_time: float) -> str:
    """The owner of the lines of the endpoint ``name`` created at ``creation_time`` (one life of that name)."""
    return f"endpoint/{name}/{int(creation_time * 1000)}"


def transform_log_owner(name: str) -> str:
    """The owner of a transform job's lines (transform job names are never reused)."""
    return f"transform/{name}"


class InferenceLogStore:
    """Append and read the lines of serving supervisors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, owner: str, attempt: int, host: str, lines: Sequence[Mapping[str, Any]]) -> int:
        """Store lines ``{seq, timestamp, stream, message}``; a stored (owner, attempt, host, seq) is skipped.

        Returns how many lines were new. Safe to call again with the same batch.
        """
        if not lines:
            return 0
        rows = [
            {
                "owner": owner,
                "attempt": attempt,
                "host": host,
                "seq": int(line["seq"]),
                "timestamp": float(line["timestamp"]),
                "stream": str(line.get("stream", "stdout")),
                "message": str(line["message"]),
            }
            for line in lines
        ]
        insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert(inference_log_lines)
        stmt = insert.on_conflict_do_nothing().returning(inference_log_lines.c.seq)
        with self.engine.begin() as conn:
            return len(conn.execute(stmt, rows).all())

    def read(
        self, owner: str, *, cursor: int = 0, limit: int = 1000, host: str | None = None, prefix: bool = False
    ) -> list[LogRecord]:
        """Lines of ``owner`` (every owner starting with it, with ``prefix``) stored after ``cursor``, in arrival
        order, at most ``limit``; ``host`` keeps one host's lines."""
        column = inference_log_lines.c.owner
        stmt = select(inference_log_lines).where(
            column.startswith(owner, autoescape=True) if prefix else column == owner,
            inference_log_lines.c.id > cursor,
        )
        if host:
            stmt = stmt.where(inference_log_lines.c.host == host)
        stmt = stmt.order_by(inference_log_lines.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [
                LogRecord(r.id, r.host, r.seq, r.timestamp, r.stream, r.message, r.attempt)
                for r in conn.execute(stmt).all()
            ]
