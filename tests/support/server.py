"""A real trainforge server process for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.wait import wait_for


@dataclass
class ServerProcess:
    """``python -m trainforge.server`` with its own ``TRAINFORGE_HOME``; start, kill and restart it."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment that points SDK, CLI and server at this home."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
        env["TRAINFORGE_HOME"] = str(self.home)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until it answers /health."""
        self.home.mkdir(parents=True, exist_ok=True)
        old = self.home / "server.json"
        old_pid = json.loads(old.read_text())["pid"] if old.exists() else None
        log = open(self.home / "server-test.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainforge.server"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited: {(self.home / 'server-test.log').read_text()[-3000:]}")
            try:
                info = json.loads((self.home / "server.json").read_text())
                if info["pid"] == old_pid:
                    return False
                return httpx.get(info["url"] + "/health", timeout=2).status_code == 200
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                return False

        wait_for(ready, timeout=timeout, what="server /health")
        return self

    @property
    def info(self) -> dict[str, Any]:
        """Contents of server.json."""
        value: dict[str, Any] = json.loads((self.home / "server.json").read_text())
        return value

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return str(self.info["url"])

    @property
    def token(self) -> str:
        """The API token."""
        return (self.home / "token").read_text().strip()

    def client(self) -> httpx.Client:
        """An authenticated httpx client for the REST API."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server gracefully."""
        self.kill(signal.SIGTERM)


def kill_supervisors(home: Path) -> None:
    """SIGKILL the process group of every supervisor whose job root is under ``home`` (and so its user code)."""
    for cfg in home.glob("jobs/*/*/supervisor.json"):
        try:
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    if str(cfg).encode() in cmd:
                        os.killpg(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


@contextmanager
def running_server(home: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A started server on ``home`` with ``env``; at the end it is SIGKILLed and its jobs' supervisors too."""
    srv = ServerProcess(home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(home)
