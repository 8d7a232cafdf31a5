"""State that survives a server restart: console sign-outs and used sign-in tickets; and a SIGKILL of the
server during a ``@remote`` call, an environment build and an artifact upload (each job still ends right, the
caller gets its result, ``model.tar.gz`` is whole or absent, never partial)."""

from __future__ import annotations

import hashlib
import io
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.server.console.session import COOKIE
from trainforge.settings import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for the module; tests SIGKILL and restart it (on the same home, port and database)."""
    home = tmp_path_factory.mktemp("restart") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as srv:
        yield srv


def restart(server: ServerProcess) -> trainforge.Session:
    """SIGKILL the server, start it again, and return a fresh session."""
    server.kill(signal.SIGKILL)
    server.start()
    return trainforge.Session(settings=Settings(home=server.home))


def session_of(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


# -- console ------------------------------------------------------------------------------------------------


def _sign_in(server: ServerProcess) -> tuple[str, str]:
    """Redeem a fresh ticket; return the ticket and the session cookie it gave."""
    with server.client() as api:
        ticket = api.post("/v1/console/ticket").json()["Ticket"]
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        r = browser.get("/console/login", params={"ticket": ticket})
        assert r.status_code == 200, r.text[:500]
        return ticket, browser.cookies[COOKIE]


def _page(server: ServerProcess, cookie: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, cookies={COOKIE: cookie}, timeout=10) as browser:
        return browser.get("/console/jobs")


def test_a_signed_out_cookie_and_a_used_ticket_stay_refused_after_a_restart(server: ServerProcess) -> None:
    ticket, cookie = _sign_in(server)
    _, kept = _sign_in(server)
    page = _page(server, cookie)
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    with httpx.Client(base_url=server.url, cookies={COOKIE: cookie}, timeout=10) as browser:
        assert browser.post("/console/logout", data={"csrf": csrf.group(1)}).status_code in (302, 303)
    assert _page(server, cookie).status_code in (302, 303)  # refused before the restart ...
    restart(server)
    assert _page(server, cookie).status_code in (302, 303)  # ... and after it
    assert _page(server, kept).status_code == 200  # another session of the user is untouched
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        again = browser.get("/console/login", params={"ticket": ticket})
        assert again.status_code == 401 and COOKIE not in browser.cookies


# -- a @remote call in flight ---------------------------------------------------------------------------------

REMOTE = """
    import sys, time
    from trainforge.remote_function import RemoteExecutor, remote

    @remote(instance_type="ml.m5.large", job_name_prefix="slowsq")
    def slow_square(x):
        print("remote started", flush=True)
        time.sleep(6)
        return x * x

    def slow_cube(x):
        print("executor started", flush=True)
        time.sleep(6)
        return x ** 3

    # A RemoteExecutor future waits without following the log (it polls describe): both ways of waiting
    # must ride out the restart.
    with RemoteExecutor(instance_type="ml.m5.large", job_name_prefix="slowcube") as executor:
        future = executor.submit(slow_cube, 3)
        print("RESULT", slow_square(7), flush=True)
        print("FUTURE", future.result(), flush=True)
"""


def test_a_remote_call_in_flight_gets_its_result_across_a_server_restart(server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(REMOTE))
    caller = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        session = session_of(server)

        def running(prefix: str, line: str) -> str | None:
            jobs = session.client.list_training_jobs(name_contains=prefix)["TrainingJobSummaries"]
            for job in jobs:
                events = session.client.logs(job["TrainingJobName"], limit=1000)["events"]
                if any(e["message"] == line for e in events):
                    return str(job["TrainingJobName"])
            return None

        name = wait_for(lambda: running("slowsq", "remote started"), timeout=120, what="the @remote call to run")
        cube = wait_for(lambda: running("slowcube", "executor started"), timeout=60, what="the executor call to run")
        session = restart(server)
        out, err = caller.communicate(timeout=120)
    finally:
        if caller.poll() is None:
            caller.kill()
    assert caller.returncode == 0, out.decode()[-2000:] + err.decode()[-3000:]
    assert "RESULT 49" in out.decode() and "FUTURE 27" in out.decode()
    assert session.describe_training_job(name)["TrainingJobStatus"] == "Completed"
    assert session.describe_training_job(cube)["TrainingJobStatus"] == "Completed"


# -- an environment build ---------------------------------------------------------------------------------------


def test_a_server_restart_during_the_environment_build_lets_the_job_complete(
    server: ServerProcess, make_source: Any, tmp_path: Path
) -> None:
    pkg = tmp_path / "slowpkg"
    (pkg / "tfslowbuild").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tfslowbuild"\nversion = "0.1"\n'
    )
    # Building the wheel takes a few seconds: long enough to restart the server in the middle of it.
    (pkg / "setup.py").write_text("import time\nfrom setuptools import setup\ntime.sleep(4)\nsetup()\n")
    (pkg / "tfslowbuild" / "__init__.py").write_text("VALUE = 'built'\n")
    src = make_source(
        {
            "requirements.txt": f"tfslowbuild @ file://{pkg}\n",
            "train.py": "import tfslowbuild\nprint('imported', tfslowbuild.VALUE, flush=True)\n",
        }
    )
    session = session_of(server)
    est = script_estimator(session, src)
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(
        lambda: any(
            e["message"] == "Installing requirements from requirements.txt"
            for e in session.client.logs(name, limit=1000)["events"]
        ),
        timeout=60,
        what="the environment build to begin",
    )
    assert session.describe_training_job(name)["SecondaryStatus"] == "Downloading"
    session = restart(server)
    d = wait_for(
        lambda: (lambda d: d if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") else None)(
            session.describe_training_job(name)
        ),
        timeout=120,
        what="the job to end",
    )
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    messages = [e["message"] for e in session.client.logs(name, limit=10000)["events"]]
    assert "imported built" in messages
    assert [s["Status"] for s in d["SecondaryStatusTransitions"]][-3:] == ["Training", "Uploading", "Completed"]


# -- an artifact upload -----------------------------------------------------------------------------------------

BIG_MODEL = """
import hashlib, os
model = os.environ["SM_MODEL_DIR"]
digest = hashlib.sha256()
for i in range(10):
    block = os.urandom(8 << 20)  # incompressible: packaging 80 MiB takes a second or more
    digest.update(block)
    with open(os.path.join(model, f"part-{i:02d}.bin"), "wb") as f:
        f.write(block)
print("DIGEST", digest.hexdigest(), flush=True)
"""


def _archive_digest(data: bytes) -> str:
    """SHA-256 of the archive's part files, concatenated in name order (raises if the archive is not whole)."""
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            extracted = tar.extractfile(member)
            assert extracted is not None
            digest.update(extracted.read())
    return digest.hexdigest()


def test_a_server_restart_during_the_upload_leaves_a_whole_model_or_none(
    server: ServerProcess, make_source: Any
) -> None:
    session = session_of(server)
    est = script_estimator(session, make_source({"train.py": BIG_MODEL}))
    est.fit(wait=False)
    name = est.latest_training_job.name
    model = server.home / "storage" / "trainforge-default" / name / "output" / "model.tar.gz"
    wait_for(
        lambda: session.describe_training_job(name)["SecondaryStatus"] == "Uploading",
        timeout=120,
        interval=0.02,
        what="Uploading",
    )
    server.kill(signal.SIGKILL)
    assert not model.exists(), "the upload ended before the server was killed: the test caught no moment"
    # While no server runs, the object is absent or whole at every look, never a prefix of the archive.
    checked: set[int] = set()  # inode numbers of the versions of model.tar.gz read whole so far
    published = server.home / "jobs" / name / "algo-1" / "job.log"

    def uploaded() -> bool:
        try:
            inode = model.stat().st_ino
            if inode not in checked:
                _archive_digest(model.read_bytes())
                checked.add(inode)
        except FileNotFoundError:
            pass
        return "Uploaded s3://" in published.read_text() and bool(checked)

    wait_for(uploaded, timeout=120, interval=0.05, what="the upload to finish while the server is down")
    server.start()
    session = session_of(server)
    d = wait_for(
        lambda: (lambda d: d if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") else None)(
            session.describe_training_job(name)
        ),
        timeout=60,
        what="the job to end",
    )
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")
    digest = next(
        e["message"].split()[1]
        for e in session.client.logs(name, limit=10000)["events"]
        if e["message"].startswith("DIGEST ")
    )
    assert _archive_digest(model.read_bytes()) == digest
    assert not [p.name for p in model.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    # Every job of this module (each through a SIGKILL of the server) left a consistent store.
    clean = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "server", "check"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
