"""The per-node launcher (``TRAINFORGE_LAUNCHER``): supervisors forked from it run exactly like spawned ones, in
sessions of their own that outlive it; a server whose launcher is gone, restarting or off spawns them instead.
Real server, launcher and supervisor processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import trainforge
from tests.e2e.test_retries import _store_job
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.backends.local import LocalBackend, NodeLauncher, process_alive, process_start_time
from trainforge.cli.main import main as cli
from trainforge.runtime.launch import read_config, supervisor_command
from trainforge.runtime.launcher import (
    LAUNCHER_MODULE,
    PID_FILE,
    LaunchRefused,
    fork_supervisor,
    launcher_command,
    read_pid_file,
)
from trainforge.scheduler.instances import lookup, place, this_machine
from trainforge.scheduler.loop import Scheduler
from trainforge.settings import Settings
from trainforge.spec.status import SecondaryStatus as S
from trainforge.store import open_job_store

# Waits for the file ``go`` next to the job's model directory (visible sandboxed or not), then says so.
WAIT_FOR_GO = """
    import os, time
    from pathlib import Path
    go = Path(os.environ["SM_MODEL_DIR"]).parent / "go"
    print("waiting", flush=True)
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("released" if go.exists() else "gave up", flush=True)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for the module with the launcher on; tests kill its launcher and restart it."""
    home = tmp_path_factory.mktemp("launcher") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_LAUNCHER": "auto"}
    with running_server(home, env) as srv:
        yield srv


def _session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def _launchers(home: Path) -> list[int]:
    """Pids of the live launchers serving ``home``'s socket."""
    sock = str(home / "launcher.sock")
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if LAUNCHER_MODULE in cmdline and sock in cmdline and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(int(proc.info["pid"]))
    return found


def _answering(home: Path) -> int | None:
    """The pid of the launcher answering on ``home``'s socket, once one does."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(home / "launcher.sock"))
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        pid = int.from_bytes(creds[:4], sys.byteorder)
        return pid if pid in _launchers(home) else None
    except OSError:
        return None
    finally:
        conn.close()


def _start(server: ServerProcess, make_source: Any, script: str = WAIT_FOR_GO) -> tuple[str, Path]:
    est = script_estimator(_session(server), make_source({"train.py": script}))
    est.fit(wait=False)
    assert est.latest_training_job is not None
    name = est.latest_training_job.name
    return name, server.home / "jobs" / name / "algo-1"


def _status(server: ServerProcess, name: str) -> str:
    return str(_session(server).describe_training_job(name)["TrainingJobStatus"])


def _messages(server: ServerProcess, name: str) -> list[str]:
    return [e["message"] for e in _session(server).client.logs(name, limit=10000)["events"]]


def _release(root: Path) -> None:
    (root / "opt/ml/go").write_text("go")


def test_a_forked_supervisor_runs_the_job_in_its_own_session_not_as_the_launchers_child(
    server: ServerProcess, make_source: Any
) -> None:
    launcher = wait_for(lambda: _answering(server.home), what="the launcher to answer")
    name, root = _start(server, make_source)
    wait_for(lambda: "waiting" in _messages(server, name), what="the job to run")
    recorded = read_pid_file(root)
    assert recorded is not None, "the supervisor was spawned, not forked by the launcher"
    pid, start_time = recorded
    supervisor = psutil.Process(pid)
    assert supervisor.ppid() != launcher and os.getsid(pid) == pid and process_start_time(pid) == start_time
    # It reads as a spawned supervisor everywhere one is looked for by its command line.
    spawned = supervisor_command(read_config(root / "supervisor.json"), root)
    assert supervisor.cmdline()[1:] == spawned[1:] and supervisor.cmdline()[0].lstrip("/") == spawned[0].lstrip("/")
    assert supervisor.cwd() == str(root)
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert [fds[0], fds[1], fds[2]] == [os.devnull, str(root / "supervisor.log"), str(root / "supervisor.log")]
    assert str(server.home / "launcher.log") not in fds.values()  # nothing of the launcher's is inherited
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
    )
    assert int(status["SigBlk"], 16) == 0 and int(status["SigCgt"], 16) & (1 << (signal.SIGTERM - 1))
    _release(root)
    wait_for(lambda: _status(server, name) == "Completed", timeout=60, what="Completed")
    assert "released" in _messages(server, name)
    log = (root / "supervisor.log").read_text()
    assert "launcher" not in log.lower() and "Traceback" not in log


def test_a_killed_launcher_takes_no_job_with_it_and_the_next_job_still_starts(
    server: ServerProcess, make_source: Any
) -> None:
    launcher = wait_for(lambda: _answering(server.home), what="the launcher to answer")
    name, root = _start(server, make_source)
    wait_for(lambda: "waiting" in _messages(server, name), what="the job to run")
    assert read_pid_file(root) is not None
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: launcher not in _launchers(server.home), what="the launcher to die")
    _release(root)
    wait_for(lambda: _status(server, name) == "Completed", timeout=60, what="the job to complete")
    # The next job starts (spawned, the launcher being restarted meanwhile); the one after is forked again.
    second, _ = _start(server, make_source, "print('second', flush=True)\n")
    wait_for(lambda: _status(server, second) == "Completed", timeout=60, what="the next job to complete")
    relaunched = wait_for(lambda: _answering(server.home), what="a new launcher")
    assert relaunched != launcher
    third, third_root = _start(server, make_source, "print('third', flush=True)\n")
    wait_for(lambda: _status(server, third) == "Completed", timeout=60, what="a third job to complete")
    assert read_pid_file(third_root) is not None


def test_a_server_restart_keeps_a_forked_job_and_stop_reaches_it(
    server: ServerProcess, make_source: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    launcher = wait_for(lambda: _answering(server.home), what="the launcher to answer")
    name, root = _start(server, make_source)
    wait_for(lambda: "waiting" in _messages(server, name), what="the job to run")
    recorded = read_pid_file(root)
    assert recorded is not None
    server.kill(signal.SIGKILL)
    # The launcher dies with its server; the job's supervisor does not.
    wait_for(lambda: launcher not in _launchers(server.home), what="the launcher to die with its server")
    assert process_alive(*recorded)
    server.start()
    wait_for(lambda: _answering(server.home), what="the restarted server's launcher")
    assert _status(server, name) == "InProgress" and process_alive(*recorded)
    # `trainforge jobs stop` reaches the forked supervisor (SIGTERM from the backend or its next heartbeat).
    for var in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_PORT", "TRAINFORGE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(server.home))
    assert cli(["jobs", "stop", name]) == 0
    capsys.readouterr()
    wait_for(lambda: _status(server, name) == "Stopped", timeout=60, what="Stopped")
    wait_for(lambda: not process_alive(*recorded), timeout=30, what="the supervisor to exit")


def test_adopt_finds_a_forked_supervisor_after_the_server_died_mid_launch(tmp_path: Path) -> None:
    store = open_job_store(f"sqlite:///{tmp_path / 'store.db'}")
    spec = {"TrainingJobName": "a", "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
    _store_job(store, "a", spec)
    machine = this_machine()
    backend = LocalBackend(tmp_path / "jobs", machine=machine, launcher="auto")
    launched: dict[str, Any] = {}
    try:
        wait_for(lambda: _answering(tmp_path), what="the launcher to answer")

        def scheduler(on: LocalBackend) -> Scheduler:
            # Supervisors report to a port nobody listens on: they keep retrying, so they stay alive for the test.
            settings = Settings(home=tmp_path / "home")
            return Scheduler(
                store=store, backend=on, settings=settings, machine=machine, server_url="http://127.0.0.1:9", storage={}
            )

        scheduler(backend)._launch(store.get("a"), place(lookup("ml.m5.large", machine), machine))
        launched = json.loads(store.get("a").backend_handle or "{}")
        pid = int(launched["hosts"][0]["pid"])
        assert read_pid_file(tmp_path / "jobs" / "a" / "algo-1") == (pid, launched["hosts"][0]["start_time"])
        # The server died after starting the supervisor and before storing its handle; the next one adopts it.
        store.set_fields("a", backend_handle=json.dumps({"backend": "local", "hosts": [], "gpu_ids": []}))
        scheduler(LocalBackend(tmp_path / "jobs", machine=machine)).run_once()
        adopted = json.loads(store.get("a").backend_handle or "{}")
        assert [(h["host"], h["pid"]) for h in adopted["hosts"]] == [("algo-1", pid)]
        assert store.get("a").secondary_status == S.STARTING
    finally:
        if launched:
            backend.kill(launched)
        backend.close()
    if launched:
        start = launched["hosts"][0]["start_time"]
        wait_for(lambda: not process_alive(int(launched["hosts"][0]["pid"]), start), what="the supervisor killed")


def test_adopt_accepts_a_live_process_named_by_supervisor_pid(tmp_path: Path) -> None:
    root = tmp_path / "jobs" / "b" / "algo-1"
    root.mkdir(parents=True)
    backend = LocalBackend(tmp_path / "jobs", machine=this_machine())
    assert backend.adopt("b", 1, 1) is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        start = process_start_time(sleeper.pid)
        (root / PID_FILE).write_text(json.dumps({"pid": sleeper.pid, "start_time": start}))
        handle = backend.adopt("b", 1, 1)
        assert handle is not None and [(h["host"], h["pid"], h["start_time"]) for h in handle["hosts"]] == [
            ("algo-1", sleeper.pid, start)
        ]
        # A pid reused by another process (a different start time) is not taken for the supervisor.
        (root / PID_FILE).write_text(json.dumps({"pid": sleeper.pid, "start_time": (start or 0) + 1}))
        assert backend.adopt("b", 1, 1) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_with_the_launcher_off_supervisors_are_spawned(tmp_path: Path, envs_dir: Path, make_source: Any) -> None:
    env = {"TRAINFORGE_ENVS_DIR": str(envs_dir), "TRAINFORGE_LAUNCHER": "off"}
    with running_server(tmp_path / "home", env) as srv:
        name, root = _start(srv, make_source, "print('spawned', flush=True)\n")
        wait_for(lambda: _status(srv, name) == "Completed", timeout=60, what="Completed")
        assert "spawned" in _messages(srv, name)
        assert not (root / PID_FILE).exists() and not _launchers(srv.home)


# -- the launcher itself, driven by its client ------------------------------------------------------------------


@pytest.fixture
def node_launcher(tmp_path: Path) -> Iterator[NodeLauncher]:
    """A launcher started for this test process (its parent), answering on ``<tmp_path>/launcher.sock``."""
    keeper = NodeLauncher(python=sys.executable, home=tmp_path, jobs_root=tmp_path / "jobs", env=_env())
    try:
        wait_for(lambda: _answering(tmp_path), what="the launcher to answer")
        yield keeper
    finally:
        keeper.close()


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "TRAINFORGE_TOKEN"}, **extra}


def _root(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "jobs" / name / "algo-1"
    root.mkdir(parents=True)
    (root / "supervisor.json").write_text("{}")  # not a valid config: the supervisor says so and exits 2
    return root


def test_a_forked_supervisor_reports_a_bad_config_like_a_spawned_one(
    node_launcher: NodeLauncher, tmp_path: Path
) -> None:
    spawned = _root(tmp_path, "spawned")
    done = subprocess.run(
        [sys.executable, "-m", "trainforge.runtime.supervisor", str(spawned / "supervisor.json")],
        cwd=spawned,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    forked = _root(tmp_path, "forked")
    pid = node_launcher.fork(forked / "supervisor.json", _env())
    assert pid is not None
    wait_for(lambda: not process_alive(pid, None), what="the forked supervisor to exit")
    assert done.returncode == 2
    log = (forked / "supervisor.log").read_text()
    assert log.split(" ", 2)[2].replace(str(forked), "ROOT") == done.stderr.split(" ", 2)[2].replace(
        str(spawned), "ROOT"
    )


def test_the_launcher_refuses_what_a_fresh_interpreter_would_start_differently(
    node_launcher: NodeLauncher, tmp_path: Path
) -> None:
    root = _root(tmp_path, "refused")
    sock = tmp_path / "launcher.sock"
    config = root / "supervisor.json"
    with pytest.raises(LaunchRefused, match="interpreter settings"):
        fork_supervisor(sock, python=sys.executable, config_path=config, env=_env(PYTHONHASHSEED="7"))
    with pytest.raises(LaunchRefused, match="not this launcher's"):
        fork_supervisor(sock, python="/usr/bin/true", config_path=config, env=_env())
    with pytest.raises(LaunchRefused, match="not our launcher"):
        fork_supervisor(sock, python=sys.executable, config_path=config, env=_env(), launcher_pid=1)
    assert not (root / "supervisor.log").exists()
    # Refused requests leave it serving.
    assert node_launcher.fork(config, _env()) is not None


def test_a_fork_without_commit_never_runs(node_launcher: NodeLauncher, tmp_path: Path) -> None:
    root = _root(tmp_path, "uncommitted")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(tmp_path / "launcher.sock"))
    request = {"python": sys.executable, "config": str(root / "supervisor.json"), "env": _env()}
    conn.sendall(json.dumps(request).encode() + b"\n")
    reply = json.loads(conn.makefile("rb").readline())
    conn.close()  # gone before the commit: the client spawns one itself
    wait_for(lambda: not process_alive(int(reply["pid"]), None), what="the uncommitted process to exit")
    assert not (root / PID_FILE).exists()
    assert (root / "supervisor.log").read_text() == ""


def test_the_launcher_dies_with_its_parent(tmp_path: Path) -> None:
    # A parent process that starts a launcher, has it fork one supervisor, prints both pids, and waits.
    parent_code = f"""
import json, os, sys, time
from pathlib import Path
from trainforge.backends.local import NodeLauncher
home = Path({str(tmp_path)!r})
keeper = NodeLauncher(python=sys.executable, home=home, jobs_root=home / "jobs", env=dict(os.environ))
root = home / "jobs" / "p" / "algo-1"
root.mkdir(parents=True)
(root / "supervisor.json").write_text("{{}}")
deadline = time.monotonic() + 30
pid = None
while pid is None and time.monotonic() < deadline:
    pid = keeper.fork(root / "supervisor.json", dict(os.environ))
    time.sleep(0.05)
print(json.dumps({{"launcher": keeper.pid, "supervisor": pid}}), flush=True)
time.sleep(600)
"""
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert pids["supervisor"] is not None and pids["launcher"] in _launchers(tmp_path)
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not _launchers(tmp_path), what="the launcher to die with its parent")
    assert not (tmp_path / "launcher.sock").exists()  # removed on its way out: a stopped server's home holds none


def test_the_launcher_command_leaves_room_for_the_longest_supervisor_command(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    argv = launcher_command(sys.executable, tmp_path / "launcher.sock", 12345, jobs)
    root = jobs / ("j" * 63 + ".attempt-9999") / "algo-9999"
    longest = [sys.executable, "-m", "trainforge.runtime.supervisor", str(root / "supervisor.json")]
    assert len("\0".join(argv)) >= len("\0".join(longest))
    assert argv[:5] == [sys.executable, "-m", LAUNCHER_MODULE, str(tmp_path / "launcher.sock"), "12345"]
    assert argv[-1].strip() == ""  # blank room: `ps` shows the launcher's own arguments only
