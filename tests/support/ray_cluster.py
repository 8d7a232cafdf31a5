"""A real local Ray cluster (one head node on 127.0.0.1) for tests and benchmarks.

``ray start --head --block`` runs in its own session with its own temporary directory, free ports and a node
``TRAINFORGE_HOME`` (where the Ray backend puts job roots). It is stopped by its own pid (SIGTERM, then SIGKILL
of its session), never by ``ray stop`` (which would stop every Ray cluster of the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_for

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""What a Ray 2.60 client and head need here: no auth token, no usage stats."""

_CLEANUP = """
import sys, ray
from ray.util.placement_group import placement_group_table, remove_placement_group, get_placement_group
address, namespace = sys.argv[1], sys.argv[2]
ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="ERROR")
for entry in ray.util.list_named_actors(all_namespaces=True):
    if entry["namespace"] == namespace:
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=namespace))
        except ValueError:
            pass
for info in placement_group_table().values():
    if info["name"].startswith(f"trainforge:{namespace}:") and info["state"] != "REMOVED":
        remove_placement_group(get_placement_group(info["name"]))
"""

_FREE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps({"free": ray.available_resources(), "total": ray.cluster_resources()}))
"""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RayCluster:
    """A running Ray head node; ``address`` is its GCS (``127.0.0.1:<port>``)."""

    address: str
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    node_home: Path
    dashboard_url: str | None = None

    def client_env(self) -> dict[str, str]:
        """Variables a process connecting to this cluster needs (``RAY_ADDRESS`` included)."""
        return {**RAY_ENV, "RAY_ADDRESS": self.address}

    def server_env(self, namespace: str, *, placement: str = "PACK") -> dict[str, str]:
        """``TRAINFORGE_*`` settings of a server whose jobs run on this cluster in ``namespace``."""
        return {
            **RAY_ENV,
            "TRAINFORGE_BACKEND": "ray",
            "TRAINFORGE_RAY_ADDRESS": self.address,
            "TRAINFORGE_RAY_PLACEMENT": placement,
            "TRAINFORGE_RAY_NAMESPACE": namespace,
        }

    def job_root(self, namespace: str, job: str, host: str) -> Path:
        """Where the Ray backend puts ``host``'s job root on this (only) node."""
        return self.node_home / "ray-jobs" / namespace / job / host

    def _python(self, code: str, *args: str, timeout: float = 60) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORGE_", "RAY_"))}
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env={**env, **RAY_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"ray helper failed: {done.stderr[-3000:]}")
        return done.stdout

    def cleanup(self, namespace: str) -> None:
        """Kill every actor of ``namespace`` (and with them their supervisors) and remove its placement groups."""
        self._python(_CLEANUP, self.address, namespace)

    def resources(self) -> dict[str, dict[str, float]]:
        """``{"free": {...}, "total": {...}}``: the cluster's resources, as Ray reports them now."""
        import json

        value: dict[str, dict[str, float]] = json.loads(self._python(_FREE, self.address).strip().splitlines()[-1])
        return value

    def stop(self) -> None:
        """SIGTERM ``ray start`` (it stops the node's processes), then SIGKILL whatever is left of its session."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)  # only the launcher: it stops the others in order
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(
    node_home: Path,
    *,
    num_cpus: int = 8,
    dashboard: bool = False,
    timeout: float = 90,
    extra_env: Mapping[str, str] | None = None,
) -> RayCluster:
    """Start ``ray start --head --block`` on 127.0.0.1 with ``num_cpus`` CPUs and free ports; wait until ready.

    ``node_home`` becomes the node's ``TRAINFORGE_HOME``; ``extra_env`` is added to the node's environment (e.g.
    the ``DOCKER_HOST`` of the node's container engine). With ``dashboard`` the dashboard (and with it Ray's Job
    Submission API) listens on a free port (``dashboard_url``).
    """
    node_home.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix="tfray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    dash_port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--object-store-memory=100000000",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--include-dashboard={'true' if dashboard else 'false'}",
    ]
    if dashboard:
        cmd += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORGE_", "RAY_"))}
    env.update(RAY_ENV)
    env["TRAINFORGE_HOME"] = str(node_home)
    env.update(extra_env or {})
    log_path = temp_dir / "head.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    cluster = RayCluster(
        address=f"127.0.0.1:{port}",
        proc=proc,
        temp_dir=temp_dir,
        node_home=node_home,
        dashboard_url=f"http://127.0.0.1:{dash_port}" if dashboard else None,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited: {log_path.read_text(errors='replace')[-3000:]}")
        return "Ray runtime started" in log_path.read_text(errors="replace")

    try:
        wait_for(ready, timeout=timeout, interval=0.2, what="the Ray head to start")
        if dashboard:
            import httpx

            def dashboard_up() -> bool:
                try:
                    return httpx.get(f"{cluster.dashboard_url}/api/version", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(dashboard_up, timeout=timeout, interval=0.2, what="the Ray dashboard")
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def ray_head(node_home: Path, **kwargs: object) -> Iterator[RayCluster]:
    """A Ray head for the duration of the block (see :func:`start_head`)."""
    cluster = start_head(node_home, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
