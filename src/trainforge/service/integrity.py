"""``trainforge server check``: is the job store consistent with itself and with the object store?

The rules (each broken one is a :class:`Problem` naming the job, what is wrong and how to fix it):

- **history**: every job's status history starts at ``Starting``, each step is allowed by
  :data:`trainforge.spec.status.ALLOWED`, steps are in time order, and every step but the last was closed;
- **job row**: the primary status follows from the secondary one (``PRIMARY_OF``), the secondary status is the
  last history step, and a terminal job has ``TrainingEndTime`` (and its last step an end);
- **logs**: per (job, attempt, host) the stored sequence numbers are exactly ``0, 1, ..., max``, once each.
  Supervisors number a host's lines from 0 in each attempt and deliver them in order, retrying until the
  server answers (spooled on disk), so a hole can only mean lost lines: the server refused a batch, or a
  row was deleted. The one loss nothing can see is a tail a host never delivered (a machine that died with
  its disk); it leaves no hole, so every hole is reported;
- **metrics**: each keyed metric point (job, attempt, host, name, seq) is stored once;
- **artifacts**: the ``ModelArtifacts.S3ModelArtifacts`` of every ``Completed`` job exists in the object store
  and, when compressed (``model.tar.gz``), reads to its end as a gzip'd tar (``--artifacts exists`` only looks
  for it; an uncompressed ``model/`` prefix may legitimately be empty and is not checked).

The check only reads: it runs beside a live server or on a stopped one's home or database.
"""

from __future__ import annotations

import io
import tarfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

from trainforge.archives import COPY_BUFFER, GZIP_MAGIC, open_archive
from trainforge.errors import NotFoundError, TrainforgeError
from trainforge.spec.contract import MODEL_ARCHIVE
from trainforge.storage import ObjectStore
from trainforge.store.integrity import Artifact, IntegrityQueries

ArtifactMode = Literal["read", "exists", "skip"]
ARTIFACT_THREADS = 8
MAX_PROBLEMS_PER_RULE = 10_000


@dataclass(frozen=True)
class Problem:
    """One broken rule: the job, the rule (``history``, ``job``, ``logs``, ``metrics``, ``artifacts``), what is
    wrong and a hint how to fix it."""

    job: str
    rule: str
    what: str
    fix: str

    def line(self) -> str:
        """The problem on one line."""
        return f"{self.job}: [{self.rule}] {self.what} (fix: {self.fix})"


@dataclass
class Report:
    """What the check looked at and what it found."""

    jobs: int = 0
    transitions: int = 0
    log_lines: int = 0
    metric_points: int = 0
    artifacts_checked: int = 0
    artifact_mode: str = "read"
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether no rule was broken."""
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        data = asdict(self)
        data["clean"] = self.clean
        return data

    def summary(self) -> str:
        """One line: what was checked and how many problems were found."""
        verdict = "clean" if self.clean else f"{len(self.problems)} problem(s)"
        return (
            f"checked {self.jobs} job(s), {self.transitions} status step(s), {self.log_lines} log line(s), "
            f"{self.metric_points} metric point(s), {self.artifacts_checked} model artifact(s) "
            f"[{self.artifact_mode}] in {self.seconds:.2f} s: {verdict}"
        )


_HISTORY_FIX = "a history is written only by the store's transition(); restore the job's rows from a backup"


def _history(queries: IntegrityQueries) -> Iterator[Problem]:
    for p in queries.transition_problems():
        step = f"status step {p.position}"
        if p.kind == "first":
            what = f"{step} is {p.status}; a history starts at Starting"
        elif p.kind == "illegal":
            what = f"{step} {p.previous} -> {p.status} is not an allowed transition"
        elif p.kind == "order":
            what = f"{step} {p.status} starts at {p.start:.3f}, before step {p.position - 1} ({p.previous_start:.3f})"
        else:
            what = f"{step} {p.status} was never closed (or ends before it starts) though later steps follow"
        yield Problem(p.job, "history", what, _HISTORY_FIX)


def _job_rows(queries: IntegrityQueries) -> Iterator[Problem]:
    for p in queries.job_row_problems():
        if p.kind == "status":
            what = f"TrainingJobStatus {p.status} does not follow from SecondaryStatus {p.secondary_status}"
            fix = "set the status from the secondary status (a row edited outside trainforge?)"
        elif p.kind == "no_history":
            what = f"no status history (SecondaryStatus {p.secondary_status})"
            fix = "a job is created with its Starting step; restore the job's rows from a backup"
        elif p.kind == "last":
            what = f"SecondaryStatus {p.secondary_status} is not the last status step ({p.last_transition})"
            fix = "the job row and its history changed separately; restore from a backup"
        else:
            what = f"terminal ({p.status}) without TrainingEndTime or with its last status step still open"
            fix = "set training_end_time (and the last step's end_time) to the time the job ended"
        yield Problem(p.job, "job", what, fix)


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _logs(queries: IntegrityQueries) -> Iterator[Problem]:
    for run in queries.log_runs_with_gaps():
        where = f"attempt {run.attempt} host {run.host}"
        if run.distinct != run.lines:
            yield Problem(
                run.job,
                "logs",
                f"{where}: {run.lines - run.distinct} duplicate log line(s)",
                "the (job, attempt, host, seq) key must be unique: re-run migrations ('trainforge server start')",
            )
        holes = queries.missing_ranges(run.job_id, run.attempt, run.host)
        missing = run.max_seq + 1 - run.distinct
        if missing > 0:
            yield Problem(
                run.job,
                "logs",
                f"{where}: {missing} log line(s) missing between 0 and {run.max_seq} (seq {_ranges(holes)})",
                "lines lost after they were numbered (a refused batch or deleted rows); the node's job.log "
                "under <home>/jobs/<job>/<host>/ still has them",
            )


def _metrics(queries: IntegrityQueries) -> Iterator[Problem]:
    for d in queries.metric_duplicates():
        yield Problem(
            d.job,
            "metrics",
            f"attempt {d.attempt} host {d.host}: metric {d.name!r} point {d.seq} stored {d.copies} times",
            "the metric point key must be unique: re-run migrations ('trainforge server start')",
        )


class _Chunks(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for streaming an object into ``tarfile``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _archive_problem(objects: ObjectStore, uri: str) -> str | None:
    """Why the object at ``uri`` is not a complete gzip'd tar (read to its end), or ``None`` if it is."""
    try:
        reader = io.BufferedReader(_Chunks(objects.read_chunks(uri)), COPY_BUFFER)
        if reader.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)] != GZIP_MAGIC:
            return "not a readable tar.gz (not gzip data)"
        with open_archive(reader, stream=True) as tar:
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        while extracted.read(1 << 20):
                            pass
    except NotFoundError:
        return "missing"
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        return f"not a readable tar.gz ({type(exc).__name__}: {exc})"
    return None


def _artifact_problem(objects: ObjectStore, artifact: Artifact, mode: ArtifactMode) -> Problem | None:
    uri = artifact.uri
    if not uri.endswith("/" + MODEL_ARCHIVE):
        return None  # an uncompressed model/ prefix: an empty model directory publishes nothing
    try:
        why = (None if objects.exists(uri) else "missing") if mode == "exists" else _archive_problem(objects, uri)
    except TrainforgeError as exc:
        why = f"cannot be read: {exc.message}"
    if why is None:
        return None
    what = f"model artifact {uri} is missing" if why == "missing" else f"model artifact {uri} {why}"
    return Problem(
        artifact.job,
        "artifacts",
        what,
        "restore the object from a backup, or re-run the job; the host's model directory may still be under "
        "<home>/jobs/<job>/algo-1/opt/ml/model",
    )


def _artifacts(
    queries: IntegrityQueries, objects: ObjectStore, mode: ArtifactMode, report: Report
) -> Iterator[Problem]:
    with ThreadPoolExecutor(max_workers=ARTIFACT_THREADS) as pool:
        for batch in queries.completed_artifacts():
            report.artifacts_checked += sum(1 for a in batch if a.uri.endswith("/" + MODEL_ARCHIVE))
            for problem in pool.map(lambda a: _artifact_problem(objects, a, mode), batch):
                if problem is not None:
                    yield problem


def check_store(queries: IntegrityQueries, objects: ObjectStore | None, *, artifacts: ArtifactMode = "read") -> Report:
    """Run every rule over the store (artifacts in ``objects`` unless ``artifacts`` is ``skip`` or there is no
    object store) and return the report; never writes. At most :data:`MAX_PROBLEMS_PER_RULE` problems are kept
    per rule."""
    started = time.monotonic()
    counts = queries.counts()
    mode: ArtifactMode = artifacts if objects is not None else "skip"
    report = Report(
        jobs=counts.jobs,
        transitions=counts.transitions,
        log_lines=counts.log_lines,
        metric_points=counts.metric_points,
        artifact_mode=mode,
    )
    rules: list[Iterator[Problem]] = [_history(queries), _job_rows(queries), _logs(queries), _metrics(queries)]
    if mode != "skip" and objects is not None:
        rules.append(_artifacts(queries, objects, mode, report))
    for rule in rules:
        for n, problem in enumerate(rule):
            if n < MAX_PROBLEMS_PER_RULE:
                report.problems.append(problem)
    report.seconds = time.monotonic() - started
    return report
