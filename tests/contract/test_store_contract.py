"""One contract suite for the job store, run against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database
from trainforge.errors import ConflictError, NotFoundError, ValidationError
from trainforge.spec.status import SecondaryStatus as S
from trainforge.spec.status import TrainingJobStatus
from trainforge.store import JobStore, ListQuery, NewJob, open_job_store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> JobStore:
    return open_job_store(db_url)


def new(name: str, spec: dict | None = None) -> NewJob:
    return NewJob(
        name=name,
        arn=f"arn:{name}",
        spec_json=json.dumps(spec or {"a": 1}),
        instance_type="ml.m5.large",
        instance_count=1,
        model_artifacts=f"s3://b/{name}/output/model.tar.gz",
    )


def test_create_get_and_idempotent_resubmit(store: JobStore) -> None:
    job, created = store.create(new("job-1"))
    assert created and job.status == TrainingJobStatus.IN_PROGRESS and job.secondary_status == S.STARTING
    assert [t.status for t in job.transitions] == ["Starting"]
    again, created_again = store.create(new("job-1"))
    assert not created_again and again.id == job.id
    with pytest.raises(ConflictError, match="already exists"):
        store.create(new("job-1", {"a": 2}))
    with pytest.raises(NotFoundError):
        store.get("nope")


def test_transitions_follow_the_table_and_terminal_is_final(store: JobStore) -> None:
    store.create(new("j"))
    store.transition("j", S.DOWNLOADING, "Downloading input data")
    with pytest.raises(ConflictError, match="cannot move to Completed"):
        store.transition("j", S.COMPLETED)
    store.transition("j", S.TRAINING, "Training")
    store.transition("j", S.UPLOADING, "Uploading")
    job = store.transition("j", S.COMPLETED, "Training job completed")
    assert job.status == TrainingJobStatus.COMPLETED
    assert job.training_start_time is not None and job.training_end_time is not None
    assert [t.status for t in job.transitions] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all(t.end_time is not None for t in job.transitions)
    for target in (S.FAILED, S.STOPPING, S.TRAINING, S.COMPLETED):
        with pytest.raises(ConflictError):
            store.transition("j", target)


def test_compare_and_set_has_exactly_one_winner(store: JobStore) -> None:
    store.create(new("race"))
    wins: list[str] = []
    errors: list[Exception] = []

    def claim(i: int) -> None:
        try:
            store.transition(
                "race",
                S.STARTING,
                f"claim {i}",
                expected_from={S.STARTING},
                conditions={"backend_handle": None},
                set_fields={"backend_handle": f"h{i}"},
            )
            wins.append(f"h{i}")
        except ConflictError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(errors) == 7
    assert store.get("race").backend_handle == wins[0]


def test_logs_are_idempotent_by_host_and_sequence(store: JobStore) -> None:
    job, _ = store.create(new("logs"))
    batch = [{"seq": i, "timestamp": 1.0 + i, "stream": "stdout", "message": f"line {i}"} for i in range(5)]
    assert store.append_logs(job.id, "algo-1", batch) == 5
    assert store.append_logs(job.id, "algo-1", batch[2:]) == 0
    assert store.append_logs(job.id, "algo-2", batch[:2]) == 2
    lines = store.read_logs(job.id)
    assert [(r.host, r.seq) for r in lines] == [("algo-1", i) for i in range(5)] + [
        ("algo-2", 0),
        ("algo-2", 1),
    ]
    after = store.read_logs(job.id, cursor=lines[3].cursor, host="algo-1")
    assert [r.seq for r in after] == [4]
    assert store.log_hosts(job.id) == ["algo-1", "algo-2"]


def test_list_filters_sorts_and_paginates(store: JobStore) -> None:
    for i in range(7):
        store.create(new(f"train-{i}"), now=1000.0 + i)
    store.create(new("other"), now=2000.0)
    store.transition("train-3", S.FAILED, "failed", failure_reason="boom")
    page, token = store.list_jobs(ListQuery(name_contains="TRAIN", max_results=3))
    assert [j.name for j in page] == ["train-0", "train-1", "train-2"] and token
    page2, token2 = store.list_jobs(ListQuery(name_contains="train", max_results=3, next_token=token))
    assert [j.name for j in page2] == ["train-3", "train-4", "train-5"]
    page3, token3 = store.list_jobs(ListQuery(name_contains="train", max_results=3, next_token=token2))
    assert [j.name for j in page3] == ["train-6"] and token3 is None
    failed, _ = store.list_jobs(ListQuery(status_equals="Failed"))
    assert [j.name for j in failed] == ["train-3"]
    desc, _ = store.list_jobs(ListQuery(sort_by="Name", sort_order="Descending", max_results=2))
    assert [j.name for j in desc] == ["train-6", "train-5"]
    recent, _ = store.list_jobs(ListQuery(creation_time_after=1500.0))
    assert [j.name for j in recent] == ["other"]
    with pytest.raises(ValidationError):
        store.list_jobs(ListQuery(next_token="garbage"))


def test_metrics_round_trip(store: JobStore) -> None:
    job, _ = store.create(new("m"))
    store.append_metrics(
        job.id,
        "algo-1",
        [{"name": "loss", "value": 0.5, "timestamp": 2.0}, {"name": "loss", "value": 0.4, "timestamp": 3.0}],
    )
    assert [p.value for p in store.read_metrics(job.id, ["loss"])] == [0.5, 0.4]


def test_points_extracted_from_a_resent_log_batch_are_stored_once(store: JobStore) -> None:
    job, _ = store.create(new("extract"))
    lines = [{"seq": i, "timestamp": 10.0 + i, "message": f"loss={i}"} for i in range(4)]
    per_line = {i: [{"name": "loss", "value": float(i), "timestamp": 10.0 + i}] for i in range(4)}
    assert store.append_logs(job.id, "algo-1", lines[:2], line_metrics=per_line) == 2
    # The first batch again (its reply was lost) plus two new lines: only the new lines add points.
    assert store.append_logs(job.id, "algo-1", lines, line_metrics=per_line) == 2
    assert store.append_logs(job.id, "algo-1", lines, line_metrics=per_line) == 0
    points = store.read_metrics(job.id)
    assert [(p.host, p.value, p.timestamp) for p in points] == [("algo-1", float(i), 10.0 + i) for i in range(4)]
    # The same seqs from another host are other lines.
    assert store.append_logs(job.id, "algo-2", lines[:1], line_metrics=per_line) == 1
    assert [p.host for p in store.read_metrics(job.id, host="algo-2")] == ["algo-2"]


def test_posted_points_with_a_seq_are_stored_once_per_host_and_name(store: JobStore) -> None:
    job, _ = store.create(new("posted"))
    batch = [
        {"name": "system/cpu_percent", "value": 12.5, "timestamp": 5.0, "seq": 5000},
        {"name": "system/memory_percent", "value": 40.0, "timestamp": 5.0, "seq": 5000},
    ]
    assert store.append_metrics(job.id, "algo-1", batch) == 2
    assert store.append_metrics(job.id, "algo-1", batch) == 0
    assert store.append_metrics(job.id, "algo-2", batch) == 2
    later = [{"name": "system/cpu_percent", "value": 80.0, "timestamp": 6.0, "seq": 6000}]
    assert store.append_metrics(job.id, "algo-1", [*batch, *later]) == 1
    no_seq = [{"name": "loss", "value": 1.0, "timestamp": 5.0}]
    assert store.append_metrics(job.id, "algo-1", no_seq) == 1
    assert store.append_metrics(job.id, "algo-1", no_seq) == 1  # without a key nothing tells them apart
    cpu = store.read_metrics(job.id, ["system/cpu_percent"], host="algo-1")
    assert [(p.value, p.timestamp) for p in cpu] == [(12.5, 5.0), (80.0, 6.0)]
    assert len(store.read_metrics(job.id)) == 7


def test_metric_reads_filter_by_time_and_the_last_points_skip_a_prefix(store: JobStore) -> None:
    job, _ = store.create(new("last"))
    other, _ = store.create(new("other"))
    store.append_metrics(
        job.id,
        "algo-1",
        [
            {"name": "loss", "value": 0.9, "timestamp": 1.0},
            {"name": "loss", "value": 0.5, "timestamp": 3.0},
            {"name": "loss", "value": 0.7, "timestamp": 2.0},
            {"name": "acc", "value": 0.1, "timestamp": 4.0},
            {"name": "acc", "value": 0.2, "timestamp": 4.0},  # same time: the last stored wins
            {"name": "system/cpu_percent", "value": 99.0, "timestamp": 9.0},
        ],
    )
    store.append_metrics(other.id, "algo-1", [{"name": "loss", "value": 5.0, "timestamp": 10.0}])
    assert [p.value for p in store.read_metrics(job.id, ["loss"], start_time=2.0, end_time=3.0)] == [0.7, 0.5]
    last = store.last_metric_points(job.id, exclude_prefix="system/")
    assert [(p.name, p.value, p.timestamp) for p in last] == [("acc", 0.2, 4.0), ("loss", 0.5, 3.0)]
    assert [p.name for p in store.last_metric_points(job.id)] == ["acc", "loss", "system/cpu_percent"]
    assert store.last_metric_points(store.create(new("empty"))[0].id) == []


_WRITER = textwrap.dedent(
    """
    import sys
    from trainforge.store import open_job_store, NewJob
    from trainforge.spec.status import SecondaryStatus as S
    store = open_job_store(sys.argv[1])
    tag = sys.argv[2]
    for i in range(60):
        name = f"w{tag}-{i}"
        job, _ = store.create(NewJob(name, "arn", "{}", "ml.m5.large", 1, "s3://b/x"))
        store.append_logs(job.id, "algo-1", [{"seq": k, "timestamp": 1.0, "message": "x"} for k in range(20)])
        store.transition(name, S.DOWNLOADING, "d")
    print("ok")
    """
)


def test_two_writer_processes_never_see_database_is_locked(db_url: str) -> None:
    open_job_store(db_url)  # migrate once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, db_url, tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and "database is locked" not in err, err[-2000:]
        assert out.strip() == "ok"
    store = open_job_store(db_url)
    jobs, _ = store.list_jobs(ListQuery(max_results=100, name_contains="w"))
    assert len(jobs) == 100
