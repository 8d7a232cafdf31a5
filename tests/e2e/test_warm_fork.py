"""End to end: a warm worker forks the next job's entry point from its forkserver (issue #13 item 3).

One real server per executor (the bubblewrap sandbox where it works, and ``TRAINFORGE_SANDBOX=off``: the process
executor), real supervisors, real scripts on ``trainforge/python:current`` with ``keep_alive_period_in_seconds``.
Each test waits until the worker listens again before it submits the next job, so that job is handed to it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError
from trainforge.runtime.sandbox import probe
from trainforge.settings import Settings

KEEP_ALIVE = 60
FORKED = "[trainforge] warm start: forked from a forkserver"
WARM = "running on a warm worker (pid "

LEAVE_TRACES = """
import os, sys, threading, time
with open(os.path.join(os.environ["SM_MODEL_DIR"], "x"), "w") as f:
    f.write("job 1's model")
with open("/tmp/secret-" + sys.argv[sys.argv.index("--token") + 1], "w") as f:
    f.write("job 1's secret")
with open("left-in-cwd.txt", "w") as f:
    f.write("job 1's file")
os.environ["LEAK"] = "job 1"
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
print("traces left", flush=True)
"""

CHECK_TRACES = """
import os, sys, threading
token = sys.argv[sys.argv.index("--token") + 1]
seen = {
    "model": os.listdir(os.environ["SM_MODEL_DIR"]),
    "tmp": os.path.exists("/tmp/secret-" + token),
    "cwd": sorted(os.listdir(".")),
    "leak": "LEAK" in os.environ,
    "threads": threading.active_count(),
    "tasks": len(os.listdir("/proc/self/task")),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
}
print("VERDICT " + __import__("json").dumps(seen, sort_keys=True), flush=True)
"""

PROBE = """
import json, os, sys
cwd = os.getcwd()
def mask(p):
    return p.replace(cwd, "<code>")
print("PROBE " + json.dumps({
    "argv": sys.argv,
    "orig_argv": sys.orig_argv[1:],
    "name": __name__,
    "file": mask(os.path.abspath(__file__)),
    "path0_is_cwd": sys.path[0] == cwd,
    "path": [mask(p) for p in sys.path],
    "env_keys": sorted(os.environ),
    "hps": os.environ.get("SM_HPS"),
    "channels": os.environ.get("SM_CHANNELS"),
    "stdin": sys.stdin.read(),
    "buffered": not sys.stdout.write_through,
}, sort_keys=True), flush=True)
"""


@pytest.fixture(scope="module", params=["sandbox", "process"])
def warm_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, envs_dir: Path
) -> Iterator[ServerProcess]:
    """One server per executor for the module; the machine's memory says 1 GiB, so every job is limited to 1 GiB."""
    env = {
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_LOCAL_MEMORY_GIB": "1",
    }
    if request.param == "process":
        env["TRAINFORGE_SANDBOX"] = "off"
    elif not probe().available:
        pytest.skip(f"bubblewrap does not work here: {probe().reason}")
    home = tmp_path_factory.mktemp(f"warmfork-{request.param}")
    srv = ServerProcess(home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(home)


@pytest.fixture
def warm_session(warm_server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=warm_server.home))


def lines(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name)["events"]]


def wait_warm(server: ServerProcess) -> None:
    """Until a warm worker listens (the previous job's worker is back waiting for the next job)."""
    wait_for(lambda: list(server.home.glob("warm/*/*.sock")), timeout=60, what="a warm worker listening")


def run(
    session: trainforge.Session, server: ServerProcess, source: Path, *, wait: bool = True, **kwargs: Any
) -> tuple[str, list[str]]:
    """Fit a keep-alive job on the warm worker (a first, trivial one leaves it when the server has none); its
    name and log lines."""
    try:
        if not list(server.home.glob("jobs/*")):
            raise AssertionError("no job ran on this server yet")
        wait_for(lambda: list(server.home.glob("warm/*/*.sock")), timeout=5, what="a warm worker")
    except AssertionError:  # none yet on this server (this test runs first, or alone)
        warm_up = server.home / "warm-up-source"
        warm_up.mkdir(exist_ok=True)
        (warm_up / "train.py").write_text("print('warming up')\n")
        script_estimator(session, warm_up, keep_alive_period_in_seconds=KEEP_ALIVE).fit(wait=True, logs=False)
    wait_warm(server)
    est = script_estimator(session, source, keep_alive_period_in_seconds=KEEP_ALIVE, **kwargs)
    with contextlib.suppress(UnexpectedStatusError):  # a failing job: the test checks its status
        est.fit(wait=wait, logs=False)
    assert est.latest_training_job is not None
    name = est.latest_training_job.name
    return name, lines(session, name) if wait else []


def wait_warm_or_first(server: ServerProcess) -> None:
    if list(server.home.glob("jobs/*")):
        wait_warm(server)


def worker_pid(log: list[str]) -> str | None:
    return next((line.split(WARM)[1].split(")")[0] for line in log if WARM in line), None)


def describe(session: trainforge.Session, name: str) -> dict[str, Any]:
    return dict(session.client.describe_training_job(name))


def test_a_forked_job_sees_nothing_of_the_previous_job(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    token = uuid.uuid4().hex
    first, _ = run(warm_session, warm_server, make_source({"train.py": LEAVE_TRACES}), hyperparameters={"token": token})
    assert describe(warm_session, first)["TrainingJobStatus"] == "Completed"
    second, log = run(
        warm_session, warm_server, make_source({"train.py": CHECK_TRACES}), hyperparameters={"token": token}
    )
    assert describe(warm_session, second)["TrainingJobStatus"] == "Completed", describe(warm_session, second)
    assert any(line.startswith(FORKED) for line in log), log
    assert worker_pid(log) is not None
    verdict = json.loads(next(line for line in log if line.startswith("VERDICT "))[len("VERDICT ") :])
    assert verdict["model"] == []
    assert verdict["cwd"] == ["train.py"]
    assert verdict["leak"] is False
    assert verdict["threads"] == 1 and verdict["tasks"] == 1
    assert verdict["fds"] == [0, 1, 2, 3]  # 3: the listing's own descriptor
    if "TRAINFORGE_SANDBOX" not in warm_server.extra_env:  # the sandbox's /tmp; the process executor has none
        assert verdict["tmp"] is False


def test_a_forked_job_gets_argv_path_and_environment_like_a_fresh_one(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    source = make_source({"train.py": PROBE})
    hps = {"epochs": 3, "lr": 0.5, "name": "a b"}
    # a fresh interpreter: a job on another instance type (another warm key) starts a new supervisor
    wait_warm_or_first(warm_server)
    est = script_estimator(warm_session, source, instance_type="ml.m5.xlarge", hyperparameters=hps)
    est.fit(wait=True, logs=False)
    assert est.latest_training_job is not None
    cold_log = lines(warm_session, est.latest_training_job.name)
    assert not any(line.startswith(FORKED) for line in cold_log)
    _, warm_log = run(warm_session, warm_server, source, hyperparameters=hps)
    assert any(line.startswith(FORKED) for line in warm_log), warm_log

    def probe_of(log: list[str]) -> dict[str, Any]:
        return dict(json.loads(next(line for line in log if line.startswith("PROBE "))[len("PROBE ") :]))

    cold, warm = probe_of(cold_log), probe_of(warm_log)
    assert warm == cold
    assert warm["argv"][1:] == ["--epochs", "3", "--lr", "0.5", "--name", "a b"]
    assert warm["name"] == "__main__" and warm["path0_is_cwd"] and warm["stdin"] == ""


def test_a_forked_job_that_raises_fails_with_its_traceback(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    script = "def deep():\n    raise ValueError('boom from a fork')\n\ndeep()\n"
    name, log = run(warm_session, warm_server, make_source({"train.py": script}))
    job = describe(warm_session, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert any(line.startswith(FORKED) for line in log), log
    assert job["FailureReason"].startswith("AlgorithmError: ")
    assert "ExitCode 1" in job["FailureReason"] and "ValueError: boom from a fork" in job["FailureReason"]
    trace = [line for line in log if "Traceback" in line or 'File "' in line]
    assert trace[0] == "Traceback (most recent call last):"
    assert "train.py" in trace[1] and "trainforge_zygote" not in "\n".join(log)


def test_a_forked_job_exit_code_reaches_the_reason(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    name, log = run(warm_session, warm_server, make_source({"train.py": "import sys\nprint('bye')\nsys.exit(3)\n"}))
    job = describe(warm_session, name)
    assert any(line.startswith(FORKED) for line in log), log
    assert job["TrainingJobStatus"] == "Failed" and "ExitCode 3" in job["FailureReason"]


def test_a_forked_job_stops_within_the_grace(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    script = "import time\nprint('looping', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    name, _ = run(warm_session, warm_server, make_source({"train.py": script}), wait=False)
    wait_for(lambda: "looping" in lines(warm_session, name), timeout=60, what="the forked job's first line")
    assert any(line.startswith(FORKED) for line in lines(warm_session, name))
    warm_session.client.stop_training_job(name)
    wait_for(
        lambda: describe(warm_session, name)["TrainingJobStatus"] == "Stopped",
        timeout=30,
        what="the forked job Stopped",
    )
    # the worker survives the stop and takes the next job, forked again
    after, log = run(warm_session, warm_server, make_source({"train.py": "print('after the stop')\n"}))
    assert describe(warm_session, after)["TrainingJobStatus"] == "Completed"
    assert "after the stop" in log and any(line.startswith(FORKED) for line in log)


CHANNEL = """
import os
path = os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv")
print("READ " + open(path).read().strip(), flush=True)
try:
    with open(path, "a") as f:
        f.write("changed by the job")
    print("WRITE allowed", flush=True)
except OSError as exc:
    print("WRITE refused " + type(exc).__name__, flush=True)
"""


@pytest.mark.parametrize("warm_server", ["sandbox"], indirect=True)  # the process executor's channels are copies
def test_a_forked_jobs_channel_is_its_own_data_and_read_only(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    uri = f"s3://trainforge-default/warmfork-channel/{uuid.uuid4().hex}"
    store = warm_session.object_store
    store.put_bytes(f"{uri}/data.csv", b"1,2,3")
    source = make_source({"train.py": CHANNEL})
    run(warm_session, warm_server, make_source({"train.py": "print('warming')\n"}))  # the worker exists
    wait_warm(warm_server)
    est = script_estimator(warm_session, source, keep_alive_period_in_seconds=KEEP_ALIVE)
    est.fit({"train": uri}, wait=True, logs=False)
    assert est.latest_training_job is not None
    log = lines(warm_session, est.latest_training_job.name)
    assert any(line.startswith(FORKED) for line in log), log
    assert "READ 1,2,3" in log
    assert any(line.startswith("WRITE refused") for line in log), log
    assert store.get_bytes(f"{uri}/data.csv") == b"1,2,3"


HOG = """
chunks = []
print("allocating", flush=True)
for i in range(64):  # 64 x 64 MiB = 4 GiB, far past the 1 GiB limit
    chunks.append(b"\\x01" * (64 << 20))
print("allocated 4 GiB: the limit did not hold", flush=True)
"""


def test_a_forked_job_past_its_memory_fails_with_out_of_memory(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    name, log = run(warm_session, warm_server, make_source({"train.py": HOG}))
    job = describe(warm_session, name)
    assert any(line.startswith(FORKED) for line in log), log
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("OutOfMemoryError: "), job["FailureReason"]
    assert "the limit did not hold" not in log
    # the worker is unharmed: the next job forks and completes
    after, log = run(warm_session, warm_server, make_source({"train.py": "print('after the hog')\n"}))
    assert describe(warm_session, after)["TrainingJobStatus"] == "Completed"
    assert "after the hog" in log


def test_a_job_with_checkpoints_forks_only_outside_the_sandbox(
    warm_server: ServerProcess, warm_session: trainforge.Session, make_source: Any
) -> None:
    script = "import os\nckpt = os.path.join(os.path.dirname(os.environ['SM_MODEL_DIR']), 'checkpoints')\n"
    script += "open(os.path.join(ckpt, 'c.pt'), 'w').write('1')\n"
    uri = f"s3://trainforge-default/warmfork-ckpt/{uuid.uuid4().hex}"
    name, log = run(warm_session, warm_server, make_source({"train.py": script}), checkpoint_s3_uri=uri)
    assert describe(warm_session, name)["TrainingJobStatus"] == "Completed", describe(warm_session, name)
    if "TRAINFORGE_SANDBOX" in warm_server.extra_env:  # the process executor: nothing moves, the code forks
        assert any(line.startswith(FORKED) for line in log), log
    else:
        assert any("warm start: fresh interpreter: the job's checkpoints are synced" in line for line in log), log
    assert [o.uri for o in warm_session.object_store.list(uri + "/")] == [f"{uri}/c.pt"]
