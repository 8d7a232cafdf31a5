"""The transform-job store's contract, run against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.support.postgres import fresh_database
from trainforge.errors import ConflictError, NotFoundError
from trainforge.service.transforms import describe, summary
from trainforge.spec.transforms import InstanceStatus, TransformJobStatus
from trainforge.store import open_job_store
from trainforge.store.tables import transform_instances
from trainforge.store.transforms import NewTransformJob, TransformJobStore

T = TransformJobStatus
N = InstanceStatus


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> TransformJobStore:
    return TransformJobStore(open_job_store(db_url).engine)


def new(name: str, *, count: int = 1, owner: str | None = "alice") -> NewTransformJob:
    spec = {"TransformJobName": name, "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": count}}
    return NewTransformJob(
        name=name,
        arn=f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/{name}",
        spec_json=json.dumps(spec),
        model_spec_json=json.dumps({"ModelName": "m", "TrainingJobName": "train-1"}),
        created_by=owner,
        role_json=json.dumps({"name": "r", "read": ["s3://b/"], "write": []}),
    )


def test_the_migration_makes_the_table_the_store_uses(store: TransformJobStore) -> None:
    columns = {c["name"] for c in inspect(store.engine).get_columns("transform_instances")}
    assert columns == {c.name for c in transform_instances.columns}


def test_create_get_and_names_are_never_reused(store: TransformJobStore) -> None:
    job = store.create(new("t-1"), now=100.0)
    assert (job.status, job.creation_time, job.transform_start_time, job.attempt) == (T.IN_PROGRESS, 100.0, None, 1)
    assert job.spec["TransformResources"]["InstanceCount"] == 1 and job.model_spec["TrainingJobName"] == "train-1"
    assert (job.instance_type, job.instance_count, job.handle) == ("ml.m5.large", 1, None)
    assert store.get("t-1") == job
    with pytest.raises(ConflictError, match="already exists") as info:
        store.create(new("t-1"))
    assert info.value.details["field"] == "TransformJobName"
    store.transition("t-1", T.COMPLETED)
    with pytest.raises(ConflictError):
        store.create(new("t-1", owner="bob"))  # even a finished job's name, even for another user
    with pytest.raises(NotFoundError, match="transform job 'nope' does not exist"):
        store.get("nope")


def test_transitions_follow_the_table_and_terminal_is_final(store: TransformJobStore) -> None:
    store.create(new("t"), now=10.0)
    store.transition("t", T.STOPPING, set_fields={"stop_requested": "Stopped"}, now=11.0)
    with pytest.raises(ConflictError, match="is Stopping; it cannot move to Completed"):
        store.transition("t", T.COMPLETED)
    job = store.transition("t", T.STOPPED, now=12.0)
    assert (job.status, job.stop_requested, job.transform_end_time, job.terminal) == (T.STOPPED, "Stopped", 12.0, True)
    assert job.transform_start_time == 12.0  # never started: start = end
    for target in T:
        with pytest.raises(ConflictError):
            store.transition("t", target)
    with pytest.raises(NotFoundError):
        store.transition("nope", T.FAILED)


def test_conditions_make_the_update_a_compare_and_set(store: TransformJobStore) -> None:
    store.create(new("c"))
    assert store.set_fields("c", conditions={"backend_handle": None}, backend_handle='{"hosts": []}')
    assert not store.set_fields("c", conditions={"backend_handle": None}, backend_handle='{"hosts": [1]}')
    assert store.get("c").handle == {"hosts": []}
    with pytest.raises(ConflictError):
        store.transition("c", T.STOPPED, conditions={"backend_handle": None})
    with pytest.raises(ValueError, match="transition"):
        store.set_fields("c", status="Completed")
    job = store.transition("c", T.FAILED, failure_reason="x" * 5000, conditions={"attempt": 1})
    assert job.failure_reason == "x" * 1024


def test_instances_keep_their_own_status_per_attempt(store: TransformJobStore) -> None:
    job = store.create(new("i", count=2))
    hosts = store.record_instance(job.id, 1, "algo-1", N.IN_PROGRESS, now=50.0)
    assert {h: r.status for h, r in hosts.items()} == {"algo-1": N.IN_PROGRESS}
    assert store.get("i").transform_start_time == 50.0
    store.record_instance(job.id, 1, "algo-1", N.FAILED, "m", "ClientError: bad", now=51.0)
    hosts = store.record_instance(job.id, 1, "algo-1", N.COMPLETED, now=52.0)  # a terminal status is kept
    assert (hosts["algo-1"].status, hosts["algo-1"].failure_reason) == (N.FAILED, "ClientError: bad")
    store.record_instance(job.id, 1, "algo-2", N.IN_PROGRESS, now=53.0)
    assert store.get("i").transform_start_time == 50.0
    assert set(store.instances(job.id, 1)) == {"algo-1", "algo-2"}
    store.set_fields("i", attempt=2)
    with pytest.raises(ConflictError, match="attempt 1"):
        store.record_instance(job.id, 1, "algo-2", N.COMPLETED)
    assert store.instances(job.id, 2) == {}
    assert store.instances(job.id, 1)["algo-2"].status == N.IN_PROGRESS


def test_concurrent_final_reports_each_see_the_others(store: TransformJobStore) -> None:
    count = 6
    job = store.create(new("race", count=count))
    seen: list[int] = []
    barrier = threading.Barrier(count)

    def report(i: int) -> None:
        barrier.wait()
        hosts = store.record_instance(job.id, 1, f"algo-{i + 1}", N.COMPLETED)
        seen.append(sum(1 for r in hosts.values() if r.status == N.COMPLETED))

    threads = [threading.Thread(target=report, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, count + 1))  # serialized: exactly one report saw every instance done


def test_list_is_newest_first_per_owner_and_active_skips_terminal(store: TransformJobStore) -> None:
    for i, owner in enumerate(("alice", "bob", "alice", None)):
        store.create(new(f"job-{i}", owner=owner), now=float(i))
    store.transition("job-1", T.FAILED, failure_reason="boom")
    assert [j.name for j in store.list_jobs()] == ["job-3", "job-2", "job-1", "job-0"]
    assert [j.name for j in store.list_jobs(created_by="alice")] == ["job-2", "job-0"]
    assert [j.name for j in store.list_jobs(status_equals="Failed")] == ["job-1"]
    assert [j.name for j in store.list_jobs(name_contains="B-3")] == ["job-3"]
    assert [j.name for j in store.list_jobs(max_results=2)] == ["job-3", "job-2"]
    assert [j.name for j in store.active()] == ["job-0", "job-2", "job-3"]


def test_describe_and_summary_come_from_the_stored_record(store: TransformJobStore) -> None:
    store.create(new("d"), now=5.0)
    job = store.transition("d", T.FAILED, failure_reason="ClientError: boom", now=9.0)
    out = describe(job)
    assert out["TransformJobName"] == "d" and out["TransformJobStatus"] == "Failed"
    assert out["FailureReason"] == "ClientError: boom" and out["TrainingJobName"] == "train-1"
    assert (out["CreationTime"], out["TransformStartTime"], out["TransformEndTime"]) == (5.0, 9.0, 9.0)
    assert out["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert out["CreatedBy"] == {"UserProfileName": "alice"}
    assert summary(job) == {
        "TransformJobName": "d",
        "TransformJobArn": job.arn,
        "CreationTime": 5.0,
        "LastModifiedTime": 9.0,
        "TransformJobStatus": "Failed",
        "TransformEndTime": 9.0,
        "FailureReason": "ClientError: boom",
    }
