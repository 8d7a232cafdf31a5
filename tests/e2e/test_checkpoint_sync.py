"""End to end: checkpoints reach the store while the job runs (reference §7.2), on the local store and on S3.

A real server, real supervisors and sandboxed user code; the script blocks on a "go" file the test drops into the
job's own ``/opt/ml``, so what the test sees in the store is what was synced while the code was still running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.s3 import S3Server
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.errors import NotFoundError
from trainforge.settings import Settings
from trainforge.storage import ObjectStore

BUCKET = "trainforge-default"

STEPS = """
import os, sys, time
opt_ml = os.path.dirname(os.environ["SM_MODEL_DIR"])
ckpt = os.path.join(opt_ml, "checkpoints")

def write(name, text):
    path = os.path.join(ckpt, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)

def wait_go(n):
    print(f"waiting for go-{n}", flush=True)
    while not os.path.exists(os.path.join(opt_ml, f"go-{n}")):
        time.sleep(0.05)

print("restored:", sorted(os.listdir(ckpt)), flush=True)
write("step-1.pt", "1")
write("step-2.pt", "2")
wait_go(1)
os.remove(os.path.join(ckpt, "step-1.pt"))
os.remove(os.path.join(ckpt, "restored.pt"))
write("step-2.pt", "2 changed")
write("sub/step-3.pt", "3")
wait_go(2)
write("step-4.pt", "4")  # written just before the end: only the final sync can ship it
print("done", flush=True)
"""

STOPPED = """
import os, signal, sys, time
ckpt = os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "checkpoints")
def on_term(signum, frame):
    with open(os.path.join(ckpt, "on-term.pt"), "w") as f:
        f.write("saved on SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("looping", flush=True)
while True:
    time.sleep(0.1)
"""


@pytest.fixture(scope="module", params=["local", "s3"])
def ckpt_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, envs_dir: Path
) -> Iterator[tuple[ServerProcess, S3Server | None]]:
    """One server per storage kind for the module: the local object store, then S3 (moto)."""
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    s3: S3Server | None = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        env.update({"TRAINFORGE_STORAGE": "s3", **s3.env})
    home = tmp_path_factory.mktemp(f"ckpt-{request.param}")
    srv = ServerProcess(home, extra_env=env).start()
    try:
        yield srv, s3
    finally:
        srv.kill()
        kill_supervisors(home)


@pytest.fixture
def ckpt_session(
    ckpt_server: tuple[ServerProcess, S3Server | None], monkeypatch: pytest.MonkeyPatch
) -> trainforge.Session:
    """The SDK of a user of that server (on S3 with the credentials in their environment, as with SageMaker)."""
    srv, s3 = ckpt_server
    if s3 is not None:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            monkeypatch.delenv(name)
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
    return trainforge.Session(settings=Settings(home=srv.home))


def stored(store: ObjectStore, uri: str) -> dict[str, bytes]:
    """The objects under ``uri`` by relative key, with their content."""
    prefix = uri.rstrip("/") + "/"
    found: dict[str, bytes] = {}
    for o in store.list(prefix):
        try:
            found[o.uri[len(prefix) :]] = store.get_bytes(o.uri)
        except NotFoundError:  # deleted by the sync between the listing and the read: not stored
            continue
    return found


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def lines(session: trainforge.Session, name: str) -> list[str]:
    return [e["message"] for e in session.client.logs(name)["events"]]


def status(session: trainforge.Session, name: str) -> str:
    return str(session.client.describe_training_job(name)["TrainingJobStatus"])


def test_checkpoints_are_in_the_store_while_the_job_runs(
    ckpt_server: tuple[ServerProcess, S3Server | None], ckpt_session: trainforge.Session, make_source: Any
) -> None:
    srv, _ = ckpt_server
    store = ckpt_session.object_store
    uri = f"s3://{BUCKET}/ckpt-sync/{srv.home.name}"
    store.put_bytes(f"{uri}/restored.pt", b"from an earlier job")
    est = script_estimator(ckpt_session, make_source({"train.py": STEPS}), checkpoint_s3_uri=uri)
    est.fit(wait=False)
    assert est.latest_training_job is not None
    name = est.latest_training_job.name
    opt_ml = srv.home / "jobs" / name / "algo-1" / "opt" / "ml"

    wait_for(lambda: "waiting for go-1" in lines(ckpt_session, name), timeout=120, what="the script's first steps")
    assert "restored: ['restored.pt']" in lines(ckpt_session, name)
    expected = {"restored.pt": b"from an earlier job", "step-1.pt": b"1", "step-2.pt": b"2"}
    wait_for(lambda: stored(store, uri) == expected, timeout=30, what="steps 1 and 2 in the store")
    assert status(ckpt_session, name) == "InProgress"  # the script is still blocked on go-1

    (opt_ml / "go-1").touch()
    wait_for(lambda: "waiting for go-2" in lines(ckpt_session, name), timeout=30, what="the script's next steps")
    expected = {"step-2.pt": b"2 changed", "sub/step-3.pt": b"3"}
    wait_for(lambda: stored(store, uri) == expected, timeout=30, what="deletions and the changed file in the store")
    assert status(ckpt_session, name) == "InProgress"

    (opt_ml / "go-2").touch()
    wait_for(lambda: status(ckpt_session, name) == "Completed", timeout=60, what="Completed")
    local = local_files(opt_ml / "checkpoints")
    assert local == {**expected, "step-4.pt": b"4"}
    assert stored(store, uri) == local


def test_a_stopped_job_stores_the_checkpoint_it_wrote_on_sigterm(
    ckpt_server: tuple[ServerProcess, S3Server | None], ckpt_session: trainforge.Session, make_source: Any
) -> None:
    srv, _ = ckpt_server
    uri = f"s3://{BUCKET}/ckpt-stop/{srv.home.name}"
    est = script_estimator(ckpt_session, make_source({"train.py": STOPPED}), checkpoint_s3_uri=uri)
    est.fit(wait=False)
    job = est.latest_training_job
    assert job is not None
    wait_for(lambda: "looping" in lines(ckpt_session, job.name), timeout=120, what="the script to start")
    job.stop()
    wait_for(lambda: status(ckpt_session, job.name) == "Stopped", timeout=60, what="Stopped")
    assert stored(ckpt_session.object_store, uri) == {"on-term.pt": b"saved on SIGTERM"}
    assert any(line.startswith(f"Checkpoints: synced to {uri}") for line in lines(ckpt_session, job.name))
