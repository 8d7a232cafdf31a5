"""Retries (``RetryStrategy.MaximumRetryAttempts``): a job whose host is lost runs again as its next attempt.

A supervisor killed with SIGKILL mid-training is a lost host: the job goes ``Interrupted`` -> ``Restarting`` ->
``Starting`` ... and completes as attempt 2, each attempt's log kept apart; a job with checkpoints resumes from
its last uploaded checkpoint; without retries left the job goes ``Interrupted`` then ``Failed`` naming the host;
code that fails is never retried. The scheduler's retry steps are stored states: a job found ``Restarting`` (by a
restarted server) is launched again, one whose new attempt cannot launch fails, and a stop between attempts ends
it ``Stopped``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.backends.local import LocalBackend
from trainforge.errors import UnexpectedStatusError
from trainforge.scheduler.instances import this_machine
from trainforge.scheduler.loop import Scheduler
from trainforge.service.jobs import JobService
from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.settings import Settings
from trainforge.spec.status import SecondaryStatus as S
from trainforge.store import JobStore, NewJob, open_job_store

STEPS = """
import os, sys, time
for step in range(int(os.environ.get("STEPS", "8"))):
    print(f"step {step}", flush=True)
    time.sleep(0.4)
"""

# Writes /opt/ml/checkpoints/step-<n> after each step and starts after the last one found there.
CHECKPOINTED = """
import os, time
ckpt = "/opt/ml/checkpoints"
os.makedirs(ckpt, exist_ok=True)
done = [int(f.split("-")[1]) for f in os.listdir(ckpt) if f.startswith("step-")]
start = max(done) + 1 if done else 0
print(f"starting at step {start}", flush=True)
for step in range(start, 12):
    time.sleep(0.4)
    with open(os.path.join(ckpt, f"step-{step}.tmp"), "w") as f:
        f.write(str(step))
    os.replace(os.path.join(ckpt, f"step-{step}.tmp"), os.path.join(ckpt, f"step-{step}"))
    print(f"checkpoint {step}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "last.txt"), "w") as f:
    f.write(str(step))
"""


@pytest.fixture(scope="module")
def retry_server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for the module (stop grace 5 s)."""
    home = tmp_path_factory.mktemp("retries") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as srv:
        yield srv


@pytest.fixture
def rsession(retry_server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=retry_server.home))


def _kill_supervisor(home: Path, name: str, host: str = "algo-1") -> int:
    """SIGKILL the process group of the first attempt's supervisor of ``host`` (a lost host); its pid."""
    cfg = str(home / "jobs" / name / host / "supervisor.json").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if cfg in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                    os.killpg(int(proc.name), signal.SIGKILL)
                    return int(proc.name)
            except OSError:
                continue
    raise AssertionError(f"no supervisor of {name}/{host} runs")


def _messages(session: trainforge.Session, name: str, attempt: int | None = None) -> list[str]:
    return [e["message"] for e in _events(session, name, attempt)]


def _events(session: trainforge.Session, name: str, attempt: int | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = session.client.logs(name, cursor=cursor, limit=10000, attempt=attempt)
        if not page["events"]:
            return events
        events.extend(page["events"])
        cursor = page["next_cursor"]


def _ended(session: trainforge.Session, name: str) -> dict[str, Any] | None:
    d = session.describe_training_job(name)
    return d if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") else None


def _statuses(desc: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in desc["SecondaryStatusTransitions"]]


def test_a_lost_host_is_retried_as_attempt_2_with_its_own_log(
    retry_server: ServerProcess, rsession: trainforge.Session, make_source: Any
) -> None:
    est = script_estimator(rsession, make_source({"train.py": STEPS}), max_retry_attempts=2)
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: "step 2" in _messages(rsession, name), timeout=60, what="attempt 1 at step 2")
    _kill_supervisor(retry_server.home, name)
    done = wait_for(lambda: _ended(rsession, name), timeout=60, what="the retried job to end")
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    statuses = _statuses(done)
    i = statuses.index("Interrupted")
    assert statuses[i - 1] == "Training" and statuses[i + 1 : i + 3] == ["Restarting", "Starting"], statuses
    assert statuses.count("Interrupted") == 1 and statuses[-1] == "Completed", statuses
    interrupted = done["SecondaryStatusTransitions"][i]["StatusMessage"]
    assert "algo-1 was lost" in interrupted and "retry 1 of 2" in interrupted, interrupted
    assert done["RetryStrategy"] == {"MaximumRetryAttempts": 2}

    first, second = _messages(rsession, name, attempt=1), _messages(rsession, name, attempt=2)
    assert "step 2" in first and "step 7" not in first
    assert not any("[trainforge] attempt 2" in m for m in first)
    assert any("[trainforge] attempt 2" in m for m in second)
    assert [m for m in second if m.startswith("step ")] == [f"step {i}" for i in range(8)]
    everything = _events(rsession, name)
    assert [e["attempt"] for e in everything] == sorted(e["attempt"] for e in everything)  # attempts in order
    assert {e["attempt"] for e in everything} == {1, 2}
    assert len(everything) == len(first) + len(second)
    # Attempt 2 has job roots of its own; attempt 1's are kept.
    assert (retry_server.home / "jobs" / f"{name}.attempt-2" / "algo-1" / "job.log").is_file()
    assert "step 2" in (retry_server.home / "jobs" / name / "algo-1" / "job.log").read_text()

    # The CLI prints one attempt's lines; the SDK's printing marks where attempt 2 starts.
    cli = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "jobs", "logs", name, "--attempt", "1"],
        env=retry_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "step 2" in cli.stdout and "[trainforge] attempt 2" not in cli.stdout
    printed = subprocess.run(
        [sys.executable, "-c", f"import trainforge; trainforge.Session().logs_for_job({name!r}, wait=True)"],
        env=retry_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    out = printed.stdout.splitlines()
    assert "-------- attempt 2 --------" in out, printed.stdout
    assert out.index("-------- attempt 2 --------") < next(
        i for i, m in enumerate(out) if "[trainforge] attempt 2" in m
    )


def test_a_checkpointed_job_resumes_from_its_last_checkpoint_on_the_retry(
    retry_server: ServerProcess, rsession: trainforge.Session, make_source: Any
) -> None:
    bucket = rsession.default_bucket()
    ckpt_uri = f"s3://{bucket}/retry-ckpt/{os.getpid()}"
    est = script_estimator(
        rsession, make_source({"train.py": CHECKPOINTED}), max_retry_attempts=1, checkpoint_s3_uri=ckpt_uri
    )
    est.fit(wait=False)
    name = est.latest_training_job.name

    def uploaded() -> set[str]:
        return {info.key.rsplit("/", 1)[-1] for info in rsession.object_store.list(ckpt_uri + "/")}

    wait_for(lambda: {"step-2", "step-3"} <= uploaded(), timeout=60, what="checkpoints 2 and 3 uploaded")
    _kill_supervisor(retry_server.home, name)
    done = wait_for(lambda: _ended(rsession, name), timeout=60, what="the retried job to end")
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    first, second = _messages(rsession, name, attempt=1), _messages(rsession, name, attempt=2)
    assert "starting at step 0" in first
    last_before = max(int(m.split()[1]) for m in first if m.startswith("checkpoint "))
    started = next(int(m.split()[-1]) for m in second if m.startswith("starting at step "))
    assert 4 <= started <= last_before + 1, (started, last_before)  # from the last checkpoint uploaded, not 0
    assert [m for m in second if m.startswith("checkpoint ")][-1] == "checkpoint 11"


def test_without_retries_left_a_lost_host_fails_the_job_and_failing_code_is_never_retried(
    retry_server: ServerProcess, rsession: trainforge.Session, make_source: Any
) -> None:
    lost = script_estimator(rsession, make_source({"train.py": STEPS}), environment={"STEPS": "100"})
    lost.fit(wait=False)
    failing = script_estimator(
        rsession, make_source({"train.py": "print('bad', flush=True)\nraise SystemExit(1)\n"}), max_retry_attempts=2
    )
    failing.fit(wait=False)
    name = lost.latest_training_job.name
    wait_for(lambda: "step 1" in _messages(rsession, name), timeout=60, what="the job at step 1")
    pid = _kill_supervisor(retry_server.home, name)
    done = wait_for(lambda: _ended(rsession, name), timeout=60, what="the job to fail")
    assert done["TrainingJobStatus"] == "Failed"
    assert _statuses(done)[-2:] == ["Interrupted", "Failed"], _statuses(done)
    assert "no RetryStrategy" in done["SecondaryStatusTransitions"][-2]["StatusMessage"]
    assert f"supervisor process (pid {pid}) is gone" in done["FailureReason"], done["FailureReason"]
    assert {e["attempt"] for e in _events(rsession, name)} == {1}

    failed_name = failing.latest_training_job.name
    failed = wait_for(lambda: _ended(rsession, failed_name), timeout=60, what="the failing job to end")
    assert failed["TrainingJobStatus"] == "Failed" and "AlgorithmError" in failed["FailureReason"]
    assert "Interrupted" not in _statuses(failed) and "Restarting" not in _statuses(failed)
    assert {e["attempt"] for e in _events(rsession, failed_name)} == {1}
    with pytest.raises(UnexpectedStatusError):
        failing.latest_training_job.wait(logs=False)


# -- the scheduler's retry steps from stored states (a real store and backend, no server) ----------------------


def _store_job(store: JobStore, name: str, spec: dict[str, Any]) -> None:
    store.create(
        NewJob(
            name=name,
            arn=f"arn:aws:sagemaker:local:000000000000:training-job/{name}",
            spec_json=json.dumps(spec),
            instance_type="ml.m5.large",
            instance_count=1,
            model_artifacts=f"s3://b/{name}/output/model.tar.gz",
        )
    )


def _to_restarting(store: JobStore, name: str) -> None:
    """The states a job whose first attempt's host was lost is stored in once the scheduler restarted it."""
    store.transition(name, S.STARTING, "Launching requested ML instances", set_fields={"backend_handle": "{}"})
    store.transition(name, S.TRAINING, "Training")
    store.transition(name, S.INTERRUPTED, "Host algo-1 was lost")
    store.transition(
        name,
        S.RESTARTING,
        "Restarting the training job (attempt 2 of 2)",
        set_fields={"attempt": 2, "backend_handle": None, "agent_token_hash": None},
        clear_hosts=True,
    )


def test_a_restarting_job_is_launched_from_its_stored_state_and_a_failed_launch_ends_it(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'store.db'}")
    spec = {
        "TrainingJobName": "r",
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "RetryStrategy": {"MaximumRetryAttempts": 1},
    }
    _store_job(store, "r", spec)
    _to_restarting(store, "r")
    settings = Settings(home=tmp_path / "home")
    machine = this_machine()
    # A freshly started scheduler (a restarted server) finds the job Restarting and launches attempt 2; the
    # launch fails (the node's interpreter is missing), which ends the job instead of leaving it InProgress.
    backend = LocalBackend(tmp_path / "jobs", machine=machine, python=str(tmp_path / "no-such-python"))
    scheduler = Scheduler(
        store=store, backend=backend, settings=settings, machine=machine, server_url="http://127.0.0.1:9", storage={}
    )
    scheduler.run_once()
    job = store.get("r")
    assert job.secondary_status == S.FAILED and job.attempt == 2
    assert "could not start the supervisor" in (job.failure_reason or "")
    assert [t.status for t in job.transitions][-3:] == ["Restarting", "Starting", "Failed"]
    assert (tmp_path / "jobs" / "r.attempt-2" / "algo-1" / "supervisor.json").is_file()
    assert json.loads((tmp_path / "jobs" / "r.attempt-2" / "algo-1" / "supervisor.json").read_text())["attempt"] == 2


def test_a_stop_between_two_attempts_ends_the_job_stopped(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'store.db'}")
    _store_job(store, "s", {"TrainingJobName": "s", "RetryStrategy": {"MaximumRetryAttempts": 1}})
    _to_restarting(store, "s")
    machine = this_machine()
    settings = Settings(home=tmp_path / "home")
    backend = LocalBackend(tmp_path / "jobs", machine=machine)
    jobs = JobService(store=store, settings=settings, machine=machine, backend=backend)
    jobs.stop("s", Principal(user=ADMIN_USER, admin=True))
    job = store.get("s")
    assert job.secondary_status == S.STOPPED and job.attempt == 2
    assert [t.status for t in job.transitions][-2:] == ["Restarting", "Stopped"]
