"""How the statuses of a job's hosts make the job's status (``spec/hosts.py``)."""

from __future__ import annotations

from trainforge.spec.hosts import JobMove, job_hosts, job_move, name_host
from trainforge.spec.status import SecondaryStatus as S


def move(reported: S, hosts: dict[str, S], current: S, count: int = 2, host: str = "algo-1") -> JobMove:
    return job_move(
        host=host, reported=reported, message="m", failure_reason="AlgorithmError: boom" if reported is S.FAILED
        else None, hosts=hosts, count=count, current=current,
    )  # fmt: skip


def test_a_single_host_job_follows_its_host() -> None:
    assert move(S.TRAINING, {"algo-1": S.TRAINING}, S.DOWNLOADING, count=1) == JobMove(S.TRAINING, "m")
    assert move(S.FAILED, {"algo-1": S.FAILED}, S.TRAINING, count=1).failure_reason == "AlgorithmError: boom"


def test_the_job_trains_once_every_host_trains() -> None:
    hosts = {"algo-1": S.TRAINING, "algo-2": S.DOWNLOADING}
    assert move(S.TRAINING, hosts, S.DOWNLOADING).status is None
    hosts["algo-2"] = S.TRAINING
    assert move(S.TRAINING, hosts, S.DOWNLOADING, host="algo-2") == JobMove(S.TRAINING, "m")


def test_a_host_that_never_reported_holds_the_job_at_starting() -> None:
    assert move(S.DOWNLOADING, {"algo-1": S.DOWNLOADING}, S.STARTING).status is None
    assert move(S.DOWNLOADING, {"algo-1": S.DOWNLOADING, "algo-2": S.DOWNLOADING}, S.STARTING).status is S.DOWNLOADING


def test_the_job_completes_when_the_last_host_completes() -> None:
    assert move(S.COMPLETED, {"algo-1": S.UPLOADING, "algo-2": S.COMPLETED}, S.UPLOADING, host="algo-2").status is None
    done = {"algo-1": S.COMPLETED, "algo-2": S.COMPLETED}
    assert move(S.COMPLETED, done, S.UPLOADING).status is S.COMPLETED
    # A host ahead of the others while the job still trains moves nothing.
    assert move(S.UPLOADING, {"algo-1": S.TRAINING, "algo-2": S.UPLOADING}, S.TRAINING, host="algo-2").status is None


def test_one_failed_host_fails_the_job_naming_the_host() -> None:
    got = move(S.FAILED, {"algo-1": S.TRAINING, "algo-2": S.FAILED}, S.TRAINING, host="algo-2")
    assert got.status is S.FAILED
    assert got.failure_reason == "AlgorithmError: host algo-2: boom"


def test_a_stop_ends_the_job_once_every_host_ended() -> None:
    assert move(S.STOPPING, {"algo-1": S.STOPPING}, S.TRAINING).status is S.STOPPING
    assert move(S.STOPPED, {"algo-1": S.STOPPED, "algo-2": S.STOPPING}, S.STOPPING).status is None
    assert move(S.STOPPED, {"algo-1": S.STOPPED, "algo-2": S.STOPPED}, S.STOPPING).status is S.STOPPED
    ended = {"algo-1": S.MAX_RUNTIME_EXCEEDED, "algo-2": S.MAX_RUNTIME_EXCEEDED}
    assert move(S.MAX_RUNTIME_EXCEEDED, ended, S.STOPPING).status is S.MAX_RUNTIME_EXCEEDED


def test_host_names_and_reasons() -> None:
    assert job_hosts(3) == ["algo-1", "algo-2", "algo-3"]
    assert name_host("ClientError: no data", "algo-3") == "ClientError: host algo-3: no data"
    assert name_host("no prefix here", "algo-2") == "host algo-2: no prefix here"
