"""Read-only, set-based queries behind ``trainforge server check`` (see :mod:`trainforge.service.integrity`).

Each query scans a table once (window functions and ``GROUP BY`` on SQLite and PostgreSQL alike) and returns
only the rows that break a rule, so a clean store of 100k jobs costs a handful of scans, not one query per job.
Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, and_, case, func, literal, or_, select

from trainforge.spec.status import ALLOWED, PRIMARY_OF, TERMINAL, SecondaryStatus, TrainingJobStatus
from trainforge.store.tables import jobs, log_lines, metric_points, transitions

_TERMINAL_PRIMARY = sorted(
    {PRIMARY_OF[s].value for s in TERMINAL} - {TrainingJobStatus.IN_PROGRESS.value, TrainingJobStatus.STOPPING.value}
)
_ALLOWED_PAIRS = sorted(f"{src.value}>{dst.value}" for src, dests in ALLOWED.items() for dst in dests)


@dataclass(frozen=True)
class Counts:
    """How much the store holds."""

    jobs: int
    transitions: int
    log_lines: int
    metric_points: int


@dataclass(frozen=True)
class TransitionProblem:
    """A status-history row that breaks a rule: ``kind`` is ``first``, ``illegal``, ``order`` or ``unclosed``."""

    job: str
    kind: str
    position: int  # 1-based place in the job's history
    previous: str | None
    status: str
    previous_start: float | None
    start: float


@dataclass(frozen=True)
class JobRowProblem:
    """A job row inconsistent with itself or its history: ``status``, ``last``, ``no_history`` or ``end_time``."""

    job: str
    kind: str
    status: str
    secondary_status: str
    last_transition: str | None


@dataclass(frozen=True)
class LogRun:
    """The stored lines of one (job, attempt, host) whose sequence numbers are not exactly ``0..max``."""

    job: str
    job_id: int
    job_status: str
    failure_reason: str | None
    attempt: int
    host: str
    lines: int
    distinct: int
    min_seq: int
    max_seq: int


@dataclass(frozen=True)
class MetricDuplicate:
    """A metric point key stored more than once."""

    job: str
    attempt: int
    host: str
    name: str
    seq: int
    copies: int


@dataclass(frozen=True)
class Artifact:
    """A completed job and the model artifact its description names."""

    job: str
    uri: str


class IntegrityQueries:
    """The integrity check's read queries over one job store database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def counts(self) -> Counts:
        """Row counts of the checked tables."""
        with self.engine.connect() as conn:

            def n(table: object) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)  # type: ignore[arg-type]

            return Counts(n(jobs), n(transitions), n(log_lines), n(metric_points))

    def transition_problems(self) -> list[TransitionProblem]:
        """Every history row that is not a legal step from the one before it (:data:`ALLOWED`), is not
        ``Starting`` while first, starts before the one before it, or was left open though another followed."""
        t = transitions.c
        ordered = select(
            t.job_id,
            t.status,
            t.start_time,
            t.end_time,
            func.row_number().over(partition_by=t.job_id, order_by=t.id).label("position"),
            func.lag(t.status).over(partition_by=t.job_id, order_by=t.id).label("previous"),
            func.lag(t.start_time).over(partition_by=t.job_id, order_by=t.id).label("previous_start"),
            func.lead(t.id).over(partition_by=t.job_id, order_by=t.id).label("next_id"),
        ).subquery()
        o = ordered.c
        pair = o.previous.concat(literal(">")).concat(o.status)
        first = and_(o.previous.is_(None), o.status != SecondaryStatus.STARTING.value)
        illegal = and_(o.previous.is_not(None), pair.not_in(_ALLOWED_PAIRS))
        out_of_order = and_(o.previous_start.is_not(None), o.start_time < o.previous_start)
        unclosed = or_(and_(o.end_time.is_(None), o.next_id.is_not(None)), o.end_time < o.start_time)
        kind = case((first, "first"), (illegal, "illegal"), (out_of_order, "order"), else_="unclosed")
        stmt = (
            select(jobs.c.name, kind.label("kind"), o.position, o.previous, o.status, o.previous_start, o.start_time)
            .join(jobs, jobs.c.id == o.job_id)
            .where(or_(first, illegal, out_of_order, unclosed))
            .order_by(jobs.c.name, o.position)
        )
        with self.engine.connect() as conn:
            return [
                TransitionProblem(
                    r.name, r.kind, int(r.position), r.previous, r.status, r.previous_start, float(r.start_time)
                )
                for r in conn.execute(stmt)
            ]

    def job_row_problems(self) -> list[JobRowProblem]:
        """Jobs whose primary status does not follow from their secondary status, whose secondary status is not
        their last history row, that have no history, or that are terminal without ``TrainingEndTime`` (or with
        their last history row still open)."""
        j = jobs.c
        last_ids = (
            select(transitions.c.job_id, func.max(transitions.c.id).label("last_id"))
            .group_by(transitions.c.job_id)
            .subquery()
        )
        last = transitions.alias("last")
        expected_primary = case(
            *((j.secondary_status == s.value, PRIMARY_OF[s].value) for s in SecondaryStatus), else_=None
        )
        terminal = j.status.in_(_TERMINAL_PRIMARY)
        bad_status = or_(expected_primary.is_(None), j.status != expected_primary)
        no_history = last_ids.c.last_id.is_(None)
        bad_last = and_(last_ids.c.last_id.is_not(None), last.c.status != j.secondary_status)
        no_end = and_(terminal, or_(j.training_end_time.is_(None), last.c.end_time.is_(None)))
        kind = case((bad_status, "status"), (no_history, "no_history"), (bad_last, "last"), else_="end_time")
        stmt = (
            select(j.name, kind.label("kind"), j.status, j.secondary_status, last.c.status.label("last_status"))
            .select_from(jobs)
            .outerjoin(last_ids, last_ids.c.job_id == j.id)
            .outerjoin(last, last.c.id == last_ids.c.last_id)
            .where(or_(bad_status, no_history, bad_last, no_end))
            .order_by(j.name)
        )
        with self.engine.connect() as conn:
            return [
                JobRowProblem(r.name, r.kind, r.status, r.secondary_status, r.last_status) for r in conn.execute(stmt)
            ]

    def log_runs_with_gaps(self) -> list[LogRun]:
        """Each (job, attempt, host) whose stored sequence numbers are not exactly ``0, 1, ..., max`` once each."""
        ll = log_lines.c
        runs = (
            select(
                ll.job_id,
                ll.attempt,
                ll.host,
                func.count().label("lines"),
                func.count(func.distinct(ll.seq)).label("distinct"),
                func.min(ll.seq).label("min_seq"),
                func.max(ll.seq).label("max_seq"),
            )
            .group_by(ll.job_id, ll.attempt, ll.host)
            .having(
                or_(
                    func.min(ll.seq) != 0,
                    func.count() != func.max(ll.seq) + 1,
                    func.count(func.distinct(ll.seq)) != func.count(),
                )
            )
            .subquery()
        )
        r = runs.c
        stmt = (
            select(jobs.c.name, jobs.c.id, jobs.c.status, jobs.c.failure_reason, runs)
            .join(jobs, jobs.c.id == r.job_id)
            .order_by(jobs.c.name, r.attempt, r.host)
        )
        with self.engine.connect() as conn:
            return [
                LogRun(
                    row.name,
                    int(row.id),
                    row.status,
                    row.failure_reason,
                    int(row.attempt),
                    row.host,
                    int(row.lines),
                    int(row.distinct),
                    int(row.min_seq),
                    int(row.max_seq),
                )
                for row in conn.execute(stmt)
            ]

    def missing_ranges(self, job_id: int, attempt: int, host: str, *, limit: int = 20) -> list[tuple[int, int]]:
        """The first ``limit`` runs of sequence numbers missing between ``0`` and the largest stored one, as
        inclusive ``(first, last)`` pairs (only called for a run :meth:`log_runs_with_gaps` named)."""
        ll = log_lines.c
        where = and_(ll.job_id == job_id, ll.attempt == attempt, ll.host == host)
        seqs = select(ll.seq, func.lag(ll.seq, 1, -1).over(order_by=ll.seq).label("previous")).where(where).subquery()
        stmt = (
            select(seqs.c.previous, seqs.c.seq)
            .where(seqs.c.seq > seqs.c.previous + 1)
            .order_by(seqs.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(int(r.previous) + 1, int(r.seq) - 1) for r in conn.execute(stmt)]

    def metric_duplicates(self) -> list[MetricDuplicate]:
        """Metric point keys (job, attempt, host, name, seq) stored more than once (points without a ``seq``,
        extracted from log lines, have no key and are not counted)."""
        m = metric_points.c
        stmt = (
            select(jobs.c.name, m.attempt, m.host, m.name.label("metric"), m.seq, func.count().label("copies"))
            .join(jobs, jobs.c.id == m.job_id)
            .where(m.seq.is_not(None))
            .group_by(jobs.c.name, m.attempt, m.host, m.name, m.seq)
            .having(func.count() > 1)
            .order_by(jobs.c.name)
        )
        with self.engine.connect() as conn:
            return [
                MetricDuplicate(r.name, int(r.attempt), r.host, r.metric, int(r.seq), int(r.copies))
                for r in conn.execute(stmt)
            ]

    def completed_artifacts(self, *, batch: int = 5000) -> Iterator[list[Artifact]]:
        """The model artifact URI of every ``Completed`` job, in batches (keyset-paged by job id)."""
        after = 0
        while True:
            stmt = (
                select(jobs.c.id, jobs.c.name, jobs.c.model_artifacts)
                .where(jobs.c.status == TrainingJobStatus.COMPLETED.value, jobs.c.id > after)
                .order_by(jobs.c.id)
                .limit(batch)
            )
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).all()
            if not rows:
                return
            after = int(rows[-1].id)
            yield [Artifact(r.name, r.model_artifacts) for r in rows]


__all__ = [
    "Artifact",
    "Counts",
    "IntegrityQueries",
    "JobRowProblem",
    "LogRun",
    "MetricDuplicate",
    "TransitionProblem",
]
