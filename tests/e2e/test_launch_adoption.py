"""A server that dies in the middle of launching a job (``Starting`` recorded, the supervisors started, their
handle not yet stored) loses nothing: the next server takes the running supervisors over, or launches the job
again when none runs. Real SQLite store, real scheduler, real local backend and supervisor processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_retries import _store_job
from tests.support.wait import wait_for
from trainforge.backends.local import LocalBackend, process_alive
from trainforge.scheduler.instances import lookup, place, this_machine
from trainforge.scheduler.loop import Scheduler
from trainforge.settings import Settings
from trainforge.spec.status import SecondaryStatus as S
from trainforge.store import JobStore, open_job_store

SPEC = {"TrainingJobName": "a", "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}


def _scheduler(store: JobStore, backend: LocalBackend, tmp_path: Path) -> Scheduler:
    machine = this_machine()
    # Supervisors report to a port nobody listens on: they keep retrying, so they stay alive for the test.
    return Scheduler(
        store=store,
        backend=backend,
        settings=Settings(home=tmp_path / "home"),
        machine=machine,
        server_url="http://127.0.0.1:9",
        storage={},
    )


def test_a_launch_the_server_died_in_is_taken_over(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'store.db'}")
    _store_job(store, "a", SPEC)
    machine = this_machine()
    backend = LocalBackend(tmp_path / "jobs", machine=machine)
    first = _scheduler(store, backend, tmp_path)
    first._launch(store.get("a"), place(lookup("ml.m5.large", machine), machine))
    launched = json.loads(store.get("a").backend_handle or "{}")
    try:
        pid = int(launched["hosts"][0]["pid"])
        # The server died after starting the supervisor and before storing its handle.
        store.set_fields("a", backend_handle=json.dumps({"backend": "local", "hosts": [], "gpu_ids": []}))
        _scheduler(store, LocalBackend(tmp_path / "jobs", machine=machine), tmp_path).run_once()
        job = store.get("a")
        adopted = json.loads(job.backend_handle or "{}")
        assert [(h["host"], h["pid"]) for h in adopted["hosts"]] == [("algo-1", pid)]
        assert job.secondary_status == S.STARTING and not job.terminal
        assert process_alive(pid, adopted["hosts"][0]["start_time"])
    finally:
        backend.kill(launched)
    wait_for(lambda: not process_alive(pid, launched["hosts"][0]["start_time"]), what="the supervisor to be killed")


def test_a_launch_that_started_nothing_is_launched_again(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'store.db'}")
    _store_job(store, "a", SPEC)
    # The server died after recording Starting and before starting any supervisor.
    store.transition(
        "a",
        S.STARTING,
        "Launching requested ML instances",
        set_fields={"backend_handle": json.dumps({"backend": "local", "hosts": []}), "agent_token_hash": "x"},
    )
    backend = LocalBackend(tmp_path / "jobs", machine=this_machine())
    scheduler = _scheduler(store, backend, tmp_path)
    changed: list[str] = []
    scheduler.on_change = changed.append  # the server wakes the job's log followers here
    scheduler.run_once()  # back to Pending
    scheduler.run_once()  # launched again
    job = store.get("a")
    handle = json.loads(job.backend_handle or "{}")
    try:
        assert [t.status for t in job.transitions][-3:] == ["Starting", "Pending", "Starting"]
        assert changed == ["a", "a"]
        assert "launching it again" in (job.transitions[-2].message or "")
        assert not job.terminal and len(handle["hosts"]) == 1
    finally:
        backend.kill(handle)
