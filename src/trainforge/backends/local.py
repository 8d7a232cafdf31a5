"""The local backend: one detached supervisor process per host on this machine.

With ``launcher="auto"`` (``TRAINFORGE_LAUNCHER``) a supervisor is forked by the node's launcher
(:mod:`trainforge.runtime.launcher`), which has its code imported already; where the launcher does not answer
(still starting, dead, refusing) that launch spawns a fresh interpreter as with ``off`` and the launcher is
restarted in the background for the next one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import psutil

from trainforge.backends.base import LaunchRequest
from trainforge.errors import BackendError, CapacityError, ValidationError
from trainforge.runtime.distributed import LOOPBACK, free_port_block
from trainforge.runtime.launch import (
    CONFIG_FILE,
    SUPERVISOR_MODULE,
    SupervisorConfig,
    job_dir_name,
    start_supervisor,
    write_config,
)
from trainforge.runtime.launcher import (
    LOG_NAME,
    SOCKET_NAME,
    LaunchRefused,
    fork_supervisor,
    launcher_command,
    read_pid_file,
)
from trainforge.runtime.layout import host_sort_key
from trainforge.runtime.warm import hand_off, keep_alive_seconds
from trainforge.scheduler.instances import InstanceType, Machine, place
from trainforge.spec.contract import host_name

# How long after the stop grace period a supervisor may still take to upload before it is killed.
UPLOAD_ALLOWANCE_S = 300.0
# The pause before the launcher is started again after it died; it doubles (up to the maximum) while launchers die
# before forking anything, and is back to the minimum once one forked a supervisor.
LAUNCHER_RESTART_MIN_S = 1.0
LAUNCHER_RESTART_MAX_S = 300.0

log = logging.getLogger("trainforge.backends.local")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces; split after its closing parenthesis.
    return [raw[: raw.index("(")].strip(), "comm", *raw[raw.rindex(")") + 2 :].split()]


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a live process from a reused pid."""
    stat = _proc_stat(pid)
    return int(stat[21]) if stat else None


def process_alive(pid: int, start_time: int | None) -> bool:
    """Whether ``pid`` runs (not a zombie) and is the same process that was started at ``start_time``."""
    stat = _proc_stat(pid)
    if stat is None or stat[2] in ("Z", "X"):
        return False
    return start_time is None or int(stat[21]) == start_time


def session_members(sid: int) -> list[int]:
    """Pids of every process in session ``sid`` (a supervisor's session holds it and its user code)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and int(stat[5]) == sid:
                pids.append(int(entry.name))
    return pids


def host_gpus(gpu_ids: tuple[int, ...] | None, index: int, count: int) -> list[int] | None:
    """The share of a job's GPUs that host ``index`` of ``count`` gets (each host an equal, disjoint slice)."""
    if gpu_ids is None:
        return None
    per_host = len(gpu_ids) // max(1, count)
    return list(gpu_ids[index * per_host : (index + 1) * per_host])


def supervisor_env() -> dict[str, str]:
    """The environment a supervisor starts with: this process's, less the user's API token."""
    return {k: v for k, v in os.environ.items() if k not in ("TRAINFORGE_TOKEN",)}


class NodeLauncher:
    """Keeps this node's launcher (:mod:`trainforge.runtime.launcher`) running for a backend.

    It is started at once, in the background, by a thread of this object's that lives until :meth:`close`: the
    launcher dies with the thread that started it (``PR_SET_PDEATHSIG``), so with this process. :meth:`fork` never
    waits for a launcher that is starting: it answers None (spawn instead) and, when the launcher is gone, has it
    started again (no sooner than a pause after the last start). The launcher's output goes to
    ``<home>/launcher.log``.
    """

    def __init__(self, *, python: str, home: Path, jobs_root: Path, env: dict[str, str]) -> None:
        self.python = python
        self.home = Path(home)
        self.socket_path = self.home / SOCKET_NAME
        self.jobs_root = Path(jobs_root)
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closed = threading.Event()
        self._last_start = -math.inf
        self._pause = LAUNCHER_RESTART_MIN_S
        self._wanted.set()
        self._thread = threading.Thread(target=self._keep, name="trainforge-launcher", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The pid of the launcher process started last (None before one was started)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def fork(self, config_path: Path, env: dict[str, str]) -> int | None:
        """The pid of the supervisor the launcher forked for ``config_path``; None when it started none (no
        launcher answers now, or it refused): the caller spawns one."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._wanted.set()
            return None
        try:
            pid = fork_supervisor(
                self.socket_path, python=self.python, config_path=config_path, env=env, launcher_pid=proc.pid
            )
        except LaunchRefused as exc:
            if proc.poll() is not None:
                self._wanted.set()
            log.info("spawning the supervisor of %s: %s", config_path, exc)
            return None
        self._pause = LAUNCHER_RESTART_MIN_S
        return pid

    def close(self) -> None:
        """Stop the launcher (SIGTERM, then SIGKILL after 5 s) and its keeper thread; supervisors it forked run on."""
        self._closed.set()
        self._wanted.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _keep(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed.is_set():
                return
            proc = self._proc
            if proc is not None and proc.poll() is None:
                continue
            if self._closed.wait(max(0.0, self._last_start + self._pause - time.monotonic())):
                return
            if proc is not None:
                self._pause = min(LAUNCHER_RESTART_MAX_S, self._pause * 2)
            self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        argv = launcher_command(self.python, self.socket_path, os.getpid(), self.jobs_root)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            with open(self.home / LOG_NAME, "ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                    env=self.env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            log.warning("could not start the launcher (supervisors are spawned instead): %s", exc)
            self._pause = min(LAUNCHER_RESTART_MAX_S, self._pause * 2)
            return
        with self._lock:
            self._proc = proc
        if self._closed.is_set():
            self.close()


class LocalBackend:
    """Runs ``python -m trainforge.runtime.supervisor`` detached (own session) for each host of a job: forked by
    the node's launcher with ``launcher="auto"`` (spawned where it does not answer), spawned with ``"off"``."""

    name = "local"
    uses_local_capacity = True

    def __init__(self, jobs_root: Path, *, machine: Machine, python: str | None = None, launcher: str = "off") -> None:
        if launcher not in ("auto", "off"):
            raise ValidationError(
                f"TRAINFORGE_LAUNCHER must be 'auto' or 'off', not {launcher!r}", field="TRAINFORGE_LAUNCHER"
            )
        self.jobs_root = Path(jobs_root)
        self.launcher = launcher
        self.machine = machine
        self.warm_dir = self.jobs_root.parent / "warm"
        self.python = python or sys.executable
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self.node_launcher: NodeLauncher | None = None
        if launcher == "auto":
            self.node_launcher = NodeLauncher(
                python=self.python, home=self.jobs_root.parent, jobs_root=self.jobs_root, env=supervisor_env()
            )
        # A backend dropped (or this process exiting) stops its launcher; the supervisors it forked run on.
        self._finalizer = weakref.finalize(self, self.node_launcher.close) if self.node_launcher else None

    def close(self) -> None:
        """Stop this backend's launcher, if it has one; running supervisors are not affected."""
        if self._finalizer is not None:
            self._finalizer()

    def check_fits(self, instance: InstanceType, count: int) -> None:
        """Every host runs on this machine: an instance type this machine cannot place is refused."""
        try:
            place(instance, self.machine)
        except CapacityError as exc:
            raise ValidationError(exc.message, field="ResourceConfig.InstanceType") from None

    def launch(self, request: LaunchRequest) -> dict[str, Any]:
        """Write each host's ``supervisor.json`` and start its supervisor; return pids and start times."""
        count = int(request.spec["ResourceConfig"].get("InstanceCount") or 1)
        hosts = [host_name(i) for i in range(count)]
        # Every host runs here: the job's host names are this machine, and its rendezvous port one free here.
        addresses = dict.fromkeys(hosts, LOOPBACK)
        master_port = free_port_block() if count > 1 else None
        started: list[dict[str, Any]] = []
        for index, host in enumerate(hosts):
            root = self.jobs_root / job_dir_name(request.job_name, request.attempt) / host
            root.mkdir(parents=True, exist_ok=True)
            config = request.host_config(
                host,
                hosts,
                addresses=addresses,
                master_port=master_port,
                python=self.python,
                server_file=request.server_file,
                envs_root=request.envs_root,
                gpu_ids=host_gpus(request.gpu_ids, index, count),
                warm_dir=str(self.warm_dir),
            )
            config_path = write_config(root, config)
            if count == 1 and keep_alive_seconds(request.spec) > 0:
                pid = hand_off(self.warm_dir, request.spec, config_path)
                if pid is not None:
                    started.append(
                        {
                            "host": host,
                            "pid": pid,
                            "start_time": process_start_time(pid),
                            "root": str(root),
                            "warm": True,
                        }
                    )
                    continue
            try:
                pid = self._start(config, config_path, root, supervisor_env())
            except OSError as exc:
                for h in started:
                    self._kill_session(int(h["pid"]))
                raise BackendError(f"could not start the supervisor for {request.job_name}/{host}: {exc}") from exc
            started.append({"host": host, "pid": pid, "start_time": process_start_time(pid), "root": str(root)})
        handle: dict[str, Any] = {"backend": self.name, "hosts": started}
        if request.gpu_ids is not None:
            handle["gpu_ids"] = list(request.gpu_ids)
        return handle

    def _start(self, config: SupervisorConfig, config_path: Path, root: Path, env: dict[str, str]) -> int:
        """Start one host's supervisor: forked by the launcher where it answers, else spawned; its pid."""
        if self.node_launcher is not None and config.python == self.node_launcher.python:
            pid = self.node_launcher.fork(config_path, env)
            if pid is not None:
                return pid
        proc = start_supervisor(config, root, env)
        with self._lock:
            self._children[proc.pid] = proc
        return proc.pid

    def _reap(self) -> None:
        with self._lock:
            for pid, proc in list(self._children.items()):
                if proc.poll() is not None:
                    del self._children[pid]

    def adopt(self, job_name: str, attempt: int, count: int) -> dict[str, Any] | None:
        """Find the job's supervisors, so a launch the server died in the middle of is not lost: by their command
        line (``... trainforge.runtime.supervisor <root>/supervisor.json``), and for a host none was found that way,
        by the ``<root>/supervisor.pid`` a forked supervisor wrote (a live process of that pid and start time)."""
        job_dir = self.jobs_root / job_dir_name(job_name, attempt)
        wanted = {str(job_dir / host_name(i) / CONFIG_FILE): host_name(i) for i in range(count)}
        found: list[dict[str, Any]] = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if SUPERVISOR_MODULE not in cmdline or not cmdline or cmdline[-1] not in wanted:
                continue
            pid = int(proc.info["pid"])
            root = str(Path(cmdline[-1]).parent)
            found.append({"host": wanted[cmdline[-1]], "pid": pid, "start_time": process_start_time(pid), "root": root})
        seen = {h["host"] for h in found}
        for config, host in wanted.items():
            recorded = read_pid_file(Path(config).parent)
            if host not in seen and recorded is not None and process_alive(*recorded):
                pid, start = recorded
                found.append({"host": host, "pid": pid, "start_time": start, "root": str(Path(config).parent)})
        if not found:
            return None
        found.sort(key=lambda h: host_sort_key(str(h["host"])))
        return {"backend": self.name, "hosts": found}

    def hosts_alive(self, handle: dict[str, Any]) -> dict[str, bool]:
        """Whether each host's supervisor is alive (works across server restarts via /proc)."""
        self._reap()
        return {
            str(h.get("host", f"algo-{i + 1}")): process_alive(int(h["pid"]), h.get("start_time"))
            for i, h in enumerate(handle.get("hosts", []))
        }

    def release(self, handle: dict[str, Any]) -> None:
        """Nothing is reserved here: an ended job's supervisors exit by themselves. What a supervisor that died
        (SIGKILL) left running in its session is killed: user code run without the sandbox does not die with its
        supervisor as sandboxed code does (``bwrap --die-with-parent``)."""
        for h in handle.get("hosts", []):
            pid, start = int(h["pid"]), h.get("start_time")
            if h.get("warm") or process_alive(pid, start) or process_start_time(pid) not in (None, start):
                continue  # a warm worker runs other jobs; a live supervisor exits by itself; a reused pid is not ours
            self._kill_session(pid)

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """SIGTERM each live supervisor; a watcher SIGKILLs its whole session if it outlives grace + upload."""
        for h in handle.get("hosts", []):
            pid, start = int(h["pid"]), h.get("start_time")
            if not process_alive(pid, start):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            threading.Thread(
                target=self._kill_later, args=(pid, start, grace_s + UPLOAD_ALLOWANCE_S), daemon=True
            ).start()

    def kill(self, handle: dict[str, Any]) -> None:
        """SIGKILL every process of each host's session: the supervisor if it still runs, and code it left behind
        when it was killed itself (a session outlives its leader; Linux never hands a session's id to a new process
        while the session has members). A pid now used by another process (a different start time) is left
        alone."""
        for h in handle.get("hosts", []):
            pid, start = int(h["pid"]), h.get("start_time")
            if h.get("warm") and process_alive(pid, start):
                continue  # a live warm worker runs other jobs after this one: only its own job's stop reaches it
            if process_start_time(pid) not in (None, start):
                continue
            self._kill_session(pid)

    def _kill_later(self, pid: int, start: int | None, after_s: float) -> None:
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline:
            if not process_alive(pid, start):
                return
            time.sleep(0.5)
        self._kill_session(pid)

    def _kill_session(self, sid: int) -> None:
        for member in session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        self._reap()
