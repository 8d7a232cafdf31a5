"""The node side of the Ray backend: one detached actor per host, owning that host's supervisor process.

:class:`SupervisorHost` runs inside a Ray worker on the node that holds the host's placement-group bundle. It
writes ``supervisor.json`` under a node-local job root, starts the supervisor exactly like the local backend
does (``python -m trainforge.runtime.supervisor``, own session, output in ``supervisor.log``) and answers the
server's questions about it (alive?), stops it (SIGTERM, then SIGKILL of its session after an allowance) and
cleans up after it. The supervisor is a child of the actor's worker process: when the actor dies (its node
died, it was killed, its placement group was removed) Ray kills the supervisor with it, so "actor gone" and
"supervisor gone" are the same answer.

Node-local choices (read from the node's own ``TRAINFORGE_*`` environment, the one ``ray start`` ran with):

- job root: ``<node TRAINFORGE_HOME>/ray-jobs/<namespace>/<job>/<host>`` (``~/.trainforge`` by default);
- image environments: the node's ``TRAINFORGE_ENVS_DIR`` when set, else the server's ``envs_root`` when that
  directory exists on this node (one machine, or a shared file system), else ``<node home>/envs``;
- interpreter: the one running Ray on the node (it must have trainforge installed);
- server location: ``<job root>/server.json`` (``{"url": ...}``), the supervisor's ``server_file``, rewritten by
  :meth:`SupervisorHost.point_to` when a restarted server announces another URL.

This module imports Ray only inside methods (it runs where Ray runs), so the rest of trainforge never pays
for it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from trainforge.backends.local import process_alive, process_start_time, session_members
from trainforge.runtime.launch import InstanceInfo, SupervisorConfig, job_dir_name, start_supervisor, write_config
from trainforge.scheduler.instances import InstanceType, Machine, place
from trainforge.settings import load_settings

# Variables Ray puts into its workers' environment that must not leak into a job (its user code would see a
# Ray worker's identity, a one-thread OpenMP limit, Ray's debugger hook or Ray's GPU assignment; the
# supervisor sets CUDA_VISIBLE_DEVICES itself from ``gpu_ids``).
SERVER_FILE = "server.json"
"""In a host's node job root: where the server is now (``{"url": ...}``), the supervisor's ``server_file``."""
_RAY_INJECTED = ("OMP_NUM_THREADS", "PYTHONBREAKPOINT", "CUDA_VISIBLE_DEVICES", "TRAINFORGE_TOKEN")


def supervisor_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment a supervisor starts with: the node's, without Ray's worker variables or a user token."""
    return {k: v for k, v in environ.items() if not k.startswith("RAY_") and k not in _RAY_INJECTED}


def node_envs_root(requested: str | None) -> str:
    """Where this node keeps image environments (see the module docstring for the order)."""
    node = load_settings()
    if node.envs_dir is not None:
        return str(node.envs_root)
    if requested and Path(requested).is_dir():
        return requested
    return str(node.resolved_home / "envs")


def node_job_root(namespace: str, job_name: str, host: str, attempt: int = 1) -> Path:
    """``<node home>/ray-jobs/<namespace>/<job>/<host>``: this host's job root on this node (``<job>.attempt-<n>``
    for a retried job's later attempts)."""
    return load_settings().resolved_home / "ray-jobs" / namespace / job_dir_name(job_name, attempt) / host


def node_instance(info: dict[str, Any]) -> InstanceInfo:
    """The job's instance type as it runs on this node (vCPUs capped to the node's CPUs, with a notice)."""
    inst = InstanceType(str(info["type"]), int(info["vcpus"]), float(info["memory_gib"]), int(info.get("gpus", 0)))
    machine = Machine(
        cpus=os.cpu_count() or 1,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        gpus=inst.gpus,  # the bundle holds exactly the GPUs the type needs
    )
    placed = place(inst, machine)
    return InstanceInfo(
        type=inst.name,
        vcpus=inst.vcpus,
        memory_gib=inst.memory_gib,
        gpus=inst.gpus,
        effective_vcpus=placed.effective_vcpus,
        notice=placed.notice,
    )


class SupervisorHost:
    """Owns one host's supervisor process on a Ray node (run as a detached, named Ray actor).

    Methods are called one at a time by Ray; a background watcher thread (after :meth:`terminate`) shares the
    process state under a lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._start_time: int | None = None
        self._root: Path | None = None
        self._orphans_killed = False
        self._watching = False

    def start(self, config: dict[str, Any], namespace: str, envs_hint: str | None) -> dict[str, Any]:
        """Write this host's ``supervisor.json`` and start its supervisor detached (own session).

        ``config`` is a :class:`SupervisorConfig` as JSON, complete except for what only the node knows: the
        interpreter, the environment cache, the effective vCPUs and the GPU ids Ray gave this actor.

        Returns:
            ``{"pid", "start_time", "node_ip", "node_id", "root", "gpu_ids"}`` of the started supervisor.

        Raises:
            OSError: The supervisor could not be started (Ray hands it to the caller as a task error).
        """
        ray = importlib.import_module("ray")
        instance = node_instance(config["instance"])
        gpu_ids = [int(g) for g in ray.get_gpu_ids()] if instance.gpus else None
        root = node_job_root(namespace, str(config["job_name"]), str(config["host"]), int(config.get("attempt") or 1))
        root.mkdir(parents=True, exist_ok=True)
        self._root = root
        self.point_to(str(config["server_url"]))
        cfg = SupervisorConfig.model_validate(
            {
                **config,
                "python": sys.executable,
                "envs_root": node_envs_root(envs_hint),
                "instance": instance.model_dump(mode="json"),
                "gpu_ids": gpu_ids,
                "server_file": str(root / SERVER_FILE),
                "warm_dir": None,
            }
        )
        write_config(root, cfg)
        proc = start_supervisor(cfg, root, supervisor_environment(dict(os.environ)))
        with self._lock:
            self._proc = proc
            self._pid = proc.pid
            self._start_time = process_start_time(proc.pid)
        return {
            "pid": proc.pid,
            "start_time": self._start_time,
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "root": str(root),
            "gpu_ids": gpu_ids,
        }

    def point_to(self, server_url: str) -> None:
        """Tell the supervisor where the server is now: ``<root>/server.json`` (its ``server_file``, re-read
        whenever a request fails) gets ``{"url": server_url}``. A restarted server on another port calls this."""
        if self._root is None:
            return
        path = self._root / SERVER_FILE
        tmp = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps({"url": server_url.rstrip("/")}), encoding="utf-8")
        os.replace(tmp, path)

    def free_port(self) -> int:
        """A TCP port free on every address of this node right now (the rendezvous port of a multi-host job
        whose first host runs here)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            return int(sock.getsockname()[1])

    def _running(self) -> bool:
        with self._lock:
            if self._proc is not None:
                self._proc.poll()  # reap an exited supervisor so it is not left a zombie
            return self._pid is not None and process_alive(self._pid, self._start_time)

    def alive(self) -> bool:
        """Whether the supervisor still runs. When it does not, whatever it left running in its session (user
        code orphaned by a killed supervisor) is killed: nothing supervises or reports it any more."""
        if self._running():
            return True
        if not self._orphans_killed:
            self._orphans_killed = True
            self.kill()
        return False

    def terminate(self, kill_after_s: float) -> bool:
        """SIGTERM the supervisor (it stops its user code and uploads); SIGKILL its whole session if it still
        runs ``kill_after_s`` seconds later. Returns whether a signal was sent. Idempotent."""
        if not self._running() or self._pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGTERM)
        with self._lock:
            start_watcher = not self._watching
            self._watching = True
        if start_watcher:
            threading.Thread(target=self._kill_later, args=(kill_after_s,), daemon=True).start()
        return True

    def _kill_later(self, after_s: float) -> None:
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline:
            if not self._running():
                return
            time.sleep(0.5)
        self.kill()

    def kill(self) -> None:
        """SIGKILL every process in the supervisor's session (the supervisor and its user code)."""
        if self._pid is None:
            return
        for member in session_members(self._pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        self._running()  # reap
