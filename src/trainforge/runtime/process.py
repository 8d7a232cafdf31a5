"""A child process in its own process group whose output is read line by line.

The child starts with ``process_group=0``, so signals go to everything it spawned. Two threads read its
stdout and stderr and hand each line (decoded as UTF-8 with replacement, without the trailing newline;
lines longer than :data:`MAX_LINE_BYTES` are split) to a callback. Stopping is SIGTERM to the group, a
grace period, then SIGKILL to the group.

With ``spare_leader`` (the command is a sandbox launcher such as ``bwrap``, which would die of SIGTERM and take
the sandbox with it at once) SIGTERM goes to every member of the group but the leader, so the job's own
processes get their grace period; SIGKILL still goes to the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

MAX_LINE_BYTES = 64 * 1024
READER_JOIN_SECONDS = 5.0

LineSink = Callable[[str, str], None]
"""Called as ``sink(stream, line)`` with stream ``"stdout"`` or ``"stderr"``, from a reader thread."""


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid`` (from ``/proc``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # state ppid pgrp ...
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def _decode(raw: bytes) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


class ChildProcess:
    """One command run in its own process group with its output forwarded line by line."""

    def __init__(
        self, cmd: list[str], *, cwd: Path, env: Mapping[str, str], sink: LineSink, spare_leader: bool = False
    ) -> None:
        self.cmd = list(cmd)
        self._spare_leader = spare_leader
        self._cwd = cwd
        self._env = dict(env)
        self._sink = sink
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id) once started."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the command; raise ``OSError`` if it cannot be executed."""
        self._proc = subprocess.Popen(
            self.cmd,
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            close_fds=True,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for name, pipe in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            reader = threading.Thread(target=self._read, args=(name, pipe), name=f"child-{name}", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, stream: str, pipe: IO[bytes]) -> None:
        with pipe:
            while True:
                raw = pipe.readline(MAX_LINE_BYTES)
                if not raw:
                    return
                self._sink(stream, _decode(raw))

    def poll(self) -> int | None:
        """The return code once the child has exited, else None."""
        assert self._proc is not None
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for the child; return its return code or None if still running."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (nothing if it is already gone)."""
        if self._proc is None:
            return
        if self._spare_leader and signum != signal.SIGKILL:
            for pid in group_members(self._proc.pid):
                if pid != self._proc.pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM the group, wait up to ``grace_seconds`` for the child, then SIGKILL the group.

        Returns the child's return code.
        """
        assert self._proc is not None
        if self._proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while self._proc.poll() is None and time.monotonic() < deadline:
                self.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        self.signal_group(signal.SIGKILL)
        return self._proc.wait()

    def finish(self) -> None:
        """After the child exited: kill what is left of its group and wait for the readers to drain.

        Output still buffered in the pipes is delivered; a reader held open by a process that left the
        group is abandoned after :data:`READER_JOIN_SECONDS`.
        """
        self.signal_group(signal.SIGKILL)
        deadline = time.monotonic() + READER_JOIN_SECONDS
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))


def run_logged(
    cmd: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    sink: LineSink,
    should_stop: Callable[[], bool],
    grace_seconds: float = 5.0,
) -> tuple[int, bool]:
    """Run ``cmd`` to completion, forwarding its lines; stop it early when ``should_stop()`` turns true.

    Returns ``(returncode, stopped)``. Raises ``OSError`` if the command cannot be started.
    """
    child = ChildProcess(cmd, cwd=cwd, env=env, sink=sink)
    child.start()
    stopped = False
    while True:
        rc = child.wait(0.2)
        if rc is not None:
            break
        if should_stop():
            stopped = True
            rc = child.stop(grace_seconds)
            break
    child.finish()
    return rc, stopped
