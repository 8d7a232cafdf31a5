"""Starting and watching one model server (``python -m trainforge_serving``) for a serving supervisor.

The server runs in the model's image environment, in its own process group (:class:`ChildProcess`), inside the
bubblewrap sandbox when one works: as for training (:mod:`trainforge.runtime.sandbox`) it sees SageMaker's
``/opt/ml`` paths and not the server's home, the jobs root or the object store, and ``/opt/ml/model`` is bound
read-only. Unlike training its network is never unshared: the supervisor and the server reach it on its port. Every
line it prints goes to ``sink``; the last :data:`TAIL_LINES` are kept for a failure reason.
"""

from __future__ import annotations

import http.client
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from trainforge.runtime.launch import SupervisorConfig
from trainforge.runtime.process import ChildProcess, LineSink
from trainforge.runtime.sandbox import CONTAINER_OPT_ML, SandboxSpec, bwrap_args, nvidia_devices
from trainforge.runtime.supervising import exposed_paths, hidden_paths

TAIL_LINES = 30
PING_TIMEOUT_S = 2.0
SERVING_MODULE = "trainforge_serving"


def ping(address: str, timeout: float = PING_TIMEOUT_S) -> bool:
    """Whether ``GET <address>/ping`` answers 200 (``address`` is ``http://host:port``)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def sandbox_command(bwrap: str, spec: SandboxSpec, model_dir: Path, cmd: list[str], cwd: str) -> list[str]:
    """``cmd`` in the sandbox ``spec`` describes, with ``model_dir`` bound read-only at ``/opt/ml/model``."""
    args = bwrap_args(bwrap, spec, cwd=cwd)
    assert args[-3:] == ["--chdir", cwd, "--"]
    return [*args[:-3], "--ro-bind", str(model_dir), f"{CONTAINER_OPT_ML}/model", *args[-3:], *cmd]


def sandbox_spec(cfg: SupervisorConfig, root: Path, opt_ml: Path, python: str) -> SandboxSpec:
    """The sandbox of a model server: host network (it must be reached on its port)."""
    tmp = root / "sandbox-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return SandboxSpec(
        opt_ml=opt_ml,
        tmp=tmp,
        hidden=hidden_paths(cfg, root),
        expose=exposed_paths(cfg, root, python),
        network=True,
        devices=nvidia_devices(),
    )


class ServingProcess:
    """One model server: started, pinged until ready, watched, stopped."""

    def __init__(self, cmd: list[str], *, cwd: Path, env: dict[str, str], sink: LineSink, sandboxed: bool) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._sink = sink
        self.child = ChildProcess(cmd, cwd=cwd, env=env, sink=self._line, spare_leader=sandboxed)

    def _line(self, stream: str, line: str) -> None:
        self.tail.append(line)
        self._sink(stream, line)

    def start(self) -> None:
        """Start it; ``OSError`` when it cannot be executed."""
        self.child.start()

    def last_lines(self, count: int = 10) -> str:
        """Its last ``count`` output lines, joined."""
        return "\n".join(list(self.tail)[-count:])

    def wait_ready(
        self, address: str, timeout_s: float, should_stop: Callable[[], bool], poll_s: float = 0.1
    ) -> int | None:
        """Wait until ``/ping`` answers 200 (return None), the process exits (return its code), ``should_stop()``
        turns true (return None) or ``timeout_s`` passes (raise ``TimeoutError``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rc = self.child.poll()
            if rc is not None:
                self.child.finish()
                return rc
            if should_stop() or ping(address):
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to GET /ping within {timeout_s:g} s")
            self.child.wait(poll_s)

    def wait(self, timeout: float) -> int | None:
        """Its exit code once it exited (output drained), else None after ``timeout`` seconds."""
        rc = self.child.wait(timeout)
        if rc is not None:
            self.child.finish()
        return rc

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM, ``grace_seconds``, SIGKILL; its exit code."""
        rc = self.child.stop(grace_seconds)
        self.child.finish()
        return rc
