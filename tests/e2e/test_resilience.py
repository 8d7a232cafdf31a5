"""Jobs outlive the server: logs survive a SIGKILL of the server, reconcile after restart, capacity waits."""

from __future__ import annotations

import io
import os
import signal
import tarfile
from pathlib import Path
from typing import Any

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.backends.local import session_members
from trainforge.settings import Settings
from trainforge.storage import LocalObjectStore

N_LINES = 2000

CHATTY = f"""
    import time
    for i in range({N_LINES}):
        print(f"line {{i}}", flush=True)
        if i % 100 == 0:
            time.sleep(0.15)
"""


def all_lines(session: trainforge.Session, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = session.client.logs(name, cursor=cursor, limit=10000)
        if not page["events"]:
            return events
        events.extend(page["events"])
        cursor = page["next_cursor"]


def test_sigkill_the_server_mid_job_loses_and_doubles_no_line(
    server: ServerProcess, session: trainforge.Session, make_source: Any
) -> None:
    src = make_source({"train.py": CHATTY})
    est = script_estimator(session, src)
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: len(session.client.logs(name, limit=10000)["events"]) > 300, what="some lines")
    server.kill(signal.SIGKILL)
    # The job keeps printing while no server listens; its supervisor buffers and retries.
    jobs_root = server.home / "jobs" / name / "algo-1"
    wait_for(lambda: "line 1500" in (jobs_root / "job.log").read_text(), timeout=60, what="the job to go on")
    server.start()
    session = trainforge.Session(settings=Settings(home=server.home))
    wait_for(
        lambda: session.describe_training_job(name)["TrainingJobStatus"] == "Completed",
        timeout=90,
        what="the job to complete after the restart",
    )
    lines = [e for e in all_lines(session, name) if e["message"].startswith("line ")]
    assert [e["message"] for e in lines] == [f"line {i}" for i in range(N_LINES)]
    seqs = [e["seq"] for e in all_lines(session, name)]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_a_job_whose_supervisor_died_is_failed_after_restart(
    server: ServerProcess, session: trainforge.Session, make_source: Any
) -> None:
    src = make_source({"train.py": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    est = script_estimator(session, src)
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: session.describe_training_job(name)["SecondaryStatus"] == "Training", what="Training")
    server.kill(signal.SIGKILL)
    _kill_job_processes(server.home, name)
    server.start()
    session = trainforge.Session(settings=Settings(home=server.home))
    wait_for(
        lambda: session.describe_training_job(name)["TrainingJobStatus"] == "Failed",
        timeout=30,
        what="reconcile to fail the job",
    )
    assert "supervisor" in session.describe_training_job(name)["FailureReason"]


def _kill_job_processes(home: Path, name: str) -> None:
    """SIGKILL the job's supervisor and its user code (the supervisor's whole session)."""
    cfg = str(home / "jobs" / name / "algo-1" / "supervisor.json").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if cfg in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                    for member in session_members(os.getsid(int(proc.name))):
                        os.kill(member, signal.SIGKILL)
            except OSError:
                continue


def test_jobs_wait_pending_while_the_machine_is_busy(tf_home: Path, make_source: Any) -> None:
    server = ServerProcess(
        tf_home, extra_env={"TRAINFORGE_LOCAL_CPUS": "2", "TRAINFORGE_LOCAL_CPU_OVERSUBSCRIPTION": "1"}
    ).start()
    try:
        session = trainforge.Session(settings=Settings(home=tf_home))
        src = make_source({"train.py": "import time\nprint('busy', flush=True)\ntime.sleep(3)\n"})
        ests = [script_estimator(session, src) for _ in range(2)]
        for est in ests:
            est.fit(wait=False)
        second = ests[1].latest_training_job
        d = wait_for(
            lambda: (lambda d: d if d["SecondaryStatus"] == "Pending" else None)(second.describe()),
            what="the second job to wait",
        )
        assert "Waiting for capacity" in d["SecondaryStatusTransitions"][-1]["StatusMessage"]
        wait_for(lambda: second.describe()["TrainingJobStatus"] == "Completed", timeout=60, what="both to finish")
        assert ests[0].latest_training_job.describe()["TrainingJobStatus"] == "Completed"
    finally:
        server.kill()


def test_a_source_archive_that_escapes_the_job_root_is_rejected(server: ServerProcess, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("train.py", b"print('hi')\n"), ("../../escaped.txt", b"owned")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = LocalObjectStore(server.home / "storage")
    store.put_bytes("s3://trainforge-default/evil/source/sourcedir.tar.gz", buf.getvalue())
    body = {
        "TrainingJobName": "evil",
        "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://trainforge-default/evil/source/sourcedir.tar.gz"',
        },
    }
    with server.client() as c:
        assert c.post("/v1/training-jobs", json=body).status_code == 200
        d = wait_for(
            lambda: (lambda d: d if d["TrainingJobStatus"] == "Failed" else None)(
                c.get("/v1/training-jobs/evil").json()
            ),
            what="Failed",
        )
    assert "escaped.txt" in d["FailureReason"]
    root = server.home / "jobs" / "evil" / "algo-1"
    assert not list(server.home.rglob("escaped.txt"))
    assert not (root / "opt" / "ml" / "code" / "train.py").exists()
