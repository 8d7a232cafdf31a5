"""The per-node launcher: forks job hosts' supervisors from an interpreter that has imported their code once.

``python -m trainforge.runtime.launcher <socket> <parent pid> [<title room>]`` imports the supervisor and what it
uses at run time (:data:`WARM_MODULES`), then serves launch requests on the Unix socket ``<socket>`` (mode 0600,
owner-only: a peer of another uid is refused by ``SO_PEERCRED`` too). It exits when its parent (the server that
started it) dies: ``PR_SET_PDEATHSIG`` plus a check of ``os.getppid()`` at start and once a second; on SIGTERM too.

One request, newline-delimited JSON on one connection (:func:`fork_supervisor` is the client):

1. client -> ``{"python": <interpreter>, "config": "<root>/supervisor.json", "env": {...}}``
2. launcher -> ``{"pid": <supervisor pid>}`` (or ``{"error": "..."}``: nothing was started, spawn instead)
3. client -> ``go``: only then does the forked supervisor run. Without it (the client timed out or went away)
   the forked process exits without doing anything, so a client that falls back to spawning after any failure
   never ends up with two supervisors for one host.

How a supervisor is forked: the launcher forks a child that forks the supervisor and exits at once (a double
fork, the child reaped by the launcher right away). The supervisor is thus reparented to init, never the
launcher's child, and calls ``setsid()``: it leads its own session exactly like a spawned one (the backend's stop
and kill act on the session whose id is the supervisor's pid), and the launcher's death cannot touch it. Before it
runs it is made to look like a fresh ``python -m trainforge.runtime.supervisor <config>``: stdin from
``/dev/null``, stdout and stderr appended to ``<root>/supervisor.log``, cwd ``<root>``, ``os.environ`` the
requested environment, signal handlers and mask as at interpreter start, the umask the launcher started with,
every other file descriptor closed, ``random`` reseeded, logging reset, ``sys.argv`` and its
``/proc/<pid>/cmdline`` those of a spawned supervisor (argv[0] padded with leading slashes to fill the launcher's
argument area, which the backend sizes with a title room), so whatever finds supervisors by command line finds it.
Before the launcher answers it writes ``<root>/supervisor.pid`` (pid and kernel start time, :func:`read_pid_file`;
removed again without the commit) for adoption after a server restart; once committed it runs
:func:`trainforge.runtime.supervisor.main` and ``os._exit``\\ s with its code: it never returns into the launcher's
loop.

The launcher is single-threaded (it checks before every fork and refuses otherwise). Interpreter-start settings
(``PYTHON*``, ``LANG``, ``LC_ALL``, ``LC_CTYPE``) of a request must equal the launcher's own, and the interpreter
must be the launcher's: a supervisor that a fresh interpreter would start differently is refused (spawn it).
What a fork cannot reproduce: the hash seed (shared by every supervisor of one launcher) and modules that read
the environment at import time (they saw the launcher's, which the backend starts with the same environment).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from trainforge.runtime.launch import LOG_FILE, SUPERVISOR_MODULE

LAUNCHER_MODULE = "trainforge.runtime.launcher"
SOCKET_NAME = "launcher.sock"
LOG_NAME = "launcher.log"
PID_FILE = "supervisor.pid"
WARM_MODULES = (
    "trainforge.runtime.supervisor",
    "trainforge.runtime.resume",
    "trainforge.runtime.serving.supervisor",
    "trainforge.storage.encryption",
    "httpx",
    "httpcore",
    "h11",
    "pydantic",
)
"""Imported before serving: the supervisor and what it imports lazily at run time (httpx imports its transport,
httpcore and h11, only when its first client is made: ~45 ms)."""
OPTIONAL_WARM_MODULES = ("boto3", "botocore.config")
"""Imported when installed (an S3 object store's client)."""
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8 << 20
_INTERPRETER_VARS = ("LANG", "LC_ALL", "LC_CTYPE")
_PR_SET_PDEATHSIG = 1
# The longest job root directory name (a 63-character job name and an attempt suffix) and host name, for the room
# the launcher's command line keeps so a forked supervisor's command line fits in it.
_MAX_JOB_DIR = 63 + len(".attempt-9999")
_MAX_HOST = len("algo-9999")


class LaunchRefused(Exception):
    """The launcher did not start the supervisor (the message says why); nothing runs for the request."""


# --- the client side -------------------------------------------------------------------------------------------


def launcher_command(python: str, socket_path: Path, parent_pid: int, jobs_root: Path) -> list[str]:
    """The argv that starts a launcher serving ``socket_path`` for the server ``parent_pid``; its last argument is
    blank room so a forked supervisor's command line (a config under ``jobs_root``) fits where the launcher's was."""
    argv = [python, "-m", LAUNCHER_MODULE, str(socket_path), str(parent_pid)]
    longest = [python, "-m", SUPERVISOR_MODULE, f"{jobs_root}/{'x' * _MAX_JOB_DIR}/{'x' * _MAX_HOST}/supervisor.json"]
    room = len(_nul_joined(longest)) - len(_nul_joined(argv)) - 1
    return [*argv, " " * max(1, room)]


def fork_supervisor(
    socket_path: Path,
    *,
    python: str,
    config_path: Path,
    env: Mapping[str, str],
    launcher_pid: int | None = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> int:
    """Have the launcher at ``socket_path`` fork the supervisor of ``config_path``; its pid.

    ``launcher_pid``, when given, is the launcher this caller started: a socket served by any other process is
    refused. Raises :class:`LaunchRefused` when no supervisor was started (no launcher answers, it refused, or the
    exchange failed before the commit): spawning one instead is then safe.
    """
    try:
        with _connected(socket_path, timeout_s) as conn:
            peer_pid, peer_uid, _ = _peer_credentials(conn)
            if peer_uid != os.getuid() or (launcher_pid is not None and peer_pid != launcher_pid):
                raise LaunchRefused(f"{socket_path} is served by pid {peer_pid} (uid {peer_uid}), not our launcher")
            request = {"python": python, "config": str(config_path), "env": dict(env)}
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = _reply(_read_line(conn))
            conn.sendall(b"go\n")
            return reply
    except OSError as exc:
        raise LaunchRefused(f"the launcher at {socket_path} did not answer: {exc}") from None


def read_pid_file(root: Path) -> tuple[int, int] | None:
    """The pid and kernel start time a forked supervisor wrote to ``<root>/supervisor.pid``; None without one."""
    try:
        data = json.loads((Path(root) / PID_FILE).read_text(encoding="utf-8"))
        return int(data["pid"]), int(data["start_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _reply(line: bytes) -> int:
    try:
        reply = json.loads(line or b"{}")
    except ValueError:
        raise LaunchRefused(f"the launcher answered {line[:200]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("pid"), int):
        error = reply.get("error") if isinstance(reply, dict) else None
        raise LaunchRefused(str(error or f"the launcher answered {line[:200]!r}"))
    return int(reply["pid"])


@contextlib.contextmanager
def _connected(socket_path: Path, timeout_s: float) -> Iterator[socket.socket]:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout_s)
        with _address(socket_path) as address:
            conn.connect(address)
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A name ``bind``/``connect`` accept for ``path``: the path itself, or one through ``/proc/self/fd`` of its
    directory when it is longer than a socket address may be (108 bytes)."""
    if len(os.fsencode(str(path))) < 100:
        yield str(path)
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)


def _peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid, gid


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise LaunchRefused(f"a message over {MAX_REQUEST_BYTES} bytes")
    return data.strip()


def _nul_joined(argv: list[str]) -> bytes:
    return b"\0".join(os.fsencode(a) for a in argv) + b"\0"


# --- the launcher process --------------------------------------------------------------------------------------


class _Launcher:
    """The serving loop and what a forked supervisor must get back: state captured at start, before serving."""

    def __init__(self, socket_path: Path, parent_pid: int) -> None:
        self.socket_path = socket_path
        self.parent_pid = parent_pid
        self.python = os.path.abspath(sys.executable)  # not resolved: two venvs' pythons link to one binary
        self.interpreter_env = _interpreter_env(os.environ)
        self.signals = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.cwd = os.getcwd()
        self.root_handlers = list(logging.getLogger().handlers)
        self.root_level = logging.getLogger().level

    def serve(self) -> int:
        """Serve requests until the parent dies or SIGTERM comes; the exit code. The socket is removed on the way
        out (unless a newer launcher's has replaced it), so a stopped server's home holds none."""
        signal.signal(signal.SIGTERM, _exit_on_signal)
        listener, inode = self._listen()
        _say(f"launcher {os.getpid()} serving {self.socket_path} for pid {self.parent_pid}")
        listener.settimeout(1.0)
        try:
            with listener:
                while os.getppid() == self.parent_pid:
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    with conn:
                        conn.settimeout(REQUEST_TIMEOUT_S)
                        try:
                            self._handle(listener, conn)
                        except (OSError, LaunchRefused) as exc:
                            _say(f"request failed: {exc}")
            _say("the server that started this launcher is gone; exiting")
        finally:
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == inode:
                    self.socket_path.unlink()
        return 0

    def _listen(self) -> tuple[socket.socket, int]:
        """Bind under a temporary name and rename it into place, so the socket is 0600 from the start and a
        launcher of an earlier server (exiting) never removes the new one's; the socket and its file's inode."""
        tmp = self.socket_path.with_name(f".{self.socket_path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with _address(tmp) as address:
                listener.bind(address)
        finally:
            os.umask(old)
        os.chmod(tmp, 0o600)
        listener.listen(64)
        inode = os.stat(tmp).st_ino
        os.replace(tmp, self.socket_path)
        return listener, inode

    def _handle(self, listener: socket.socket, conn: socket.socket) -> None:
        _, uid, _ = _peer_credentials(conn)
        if uid != os.getuid():
            raise LaunchRefused(f"a peer of uid {uid} was refused")
        try:
            python, config, env = self._validate(_read_line(conn))
            pid, go, child = self._fork(listener, conn, _Supervisor(self, python, config, env))
        except LaunchRefused as exc:
            conn.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            raise
        try:
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            if _read_line(conn) == b"go":
                os.write(go, b"g")  # one line per launch would grow the log without bound: only mishaps are logged
            else:
                _say(f"no commit for supervisor {pid} of {config}: it exits unrun")
        finally:
            os.close(go)
            os.waitpid(child, 0)  # the intermediate child, exited by now: reaped off the client's critical path

    def _validate(self, line: bytes) -> tuple[str, Path, dict[str, str]]:
        try:
            request = json.loads(line)
            python, config, env = str(request["python"]), Path(request["config"]), request["env"]
        except (ValueError, KeyError, TypeError):
            raise LaunchRefused(f"a malformed request: {line[:200]!r}") from None
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise LaunchRefused("env must map names to strings")
        if os.path.abspath(python) != self.python:
            raise LaunchRefused(f"python {python} is not this launcher's {self.python}")
        if not config.is_absolute() or not config.parent.is_dir():
            raise LaunchRefused(f"config {config} is not an absolute path in an existing job root")
        if _interpreter_env(env) != self.interpreter_env:
            raise LaunchRefused(
                "the environment's interpreter settings (PYTHON*, LANG, LC_*) differ from the launcher's"
            )
        if len(os.listdir("/proc/self/task")) != 1:
            raise LaunchRefused("the launcher runs threads: it cannot fork safely")
        return python, config, env

    def _fork(self, listener: socket.socket, conn: socket.socket, supervisor: _Supervisor) -> tuple[int, int, int]:
        """Double-fork the supervisor; its pid (ready, in its own session), the pipe that lets it run, and the
        intermediate child's pid (to reap)."""
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        supervisor.ready, supervisor.go = ready_w, go_r
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            child = os.fork()
        except OSError as exc:
            for fd in (ready_r, ready_w, go_r, go_w):
                os.close(fd)
            raise LaunchRefused(f"fork failed: {exc}") from None
        if child == 0:  # the intermediate child: fork the supervisor and leave at once
            code = 1
            try:
                if os.fork() == 0:
                    supervisor.become(listener, conn)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        try:
            line = _read_fd_line(ready_r, REQUEST_TIMEOUT_S)
        finally:
            os.close(ready_r)
        if not line.isdigit():
            os.close(go_w)
            os.waitpid(child, 0)
            raise LaunchRefused(
                f"the forked supervisor for {supervisor.config} did not get ready (see its supervisor.log)"
            )
        return int(line), go_w, child


class _Supervisor:
    """What runs in the forked process: reset to a fresh interpreter's state, wait for the commit, run."""

    def __init__(self, launcher: _Launcher, python: str, config: Path, env: dict[str, str]) -> None:
        self.launcher = launcher
        self.python = python
        self.config = config
        self.root = config.parent
        self.env = env
        self.ready = -1  # the pipe ends it reports ready on and waits for the commit on (set by the fork)
        self.go = -1

    def become(self, listener: socket.socket, conn: socket.socket) -> None:
        """Never returns: ``os._exit`` with the supervisor's exit code (1 if it could not be prepared)."""
        code = 1
        try:
            os.setsid()
            listener.detach()  # closed below with every other inherited descriptor
            conn.detach()
            self._reset_process()
            pid_file = _write_pid_file(self.root)
            os.write(self.ready, f"{os.getpid()}\n".encode())
            os.close(self.ready)
            if os.read(self.go, 1) != b"g":  # no commit: the client spawns one instead, or gave up
                if pid_file is not None:
                    pid_file.unlink(missing_ok=True)
                os._exit(0)
            os.close(self.go)
            code = _run_supervisor(self.config)
        except BaseException:  # whatever happens here must end in os._exit
            with contextlib.suppress(BaseException):
                sys.excepthook(*sys.exc_info())
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reset_process(self) -> None:
        launcher = self.launcher
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(self.root / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        for fd, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(fd, target)
        _close_fds_except({0, 1, 2, self.ready, self.go})
        for sig, handler in launcher.signals.items():
            if handler is not None and sig not in (signal.SIGKILL, signal.SIGSTOP):
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        signal.set_wakeup_fd(-1)
        os.umask(launcher.umask)
        os.chdir(self.root)
        os.environ.clear()
        os.environ.update(self.env)
        time.tzset()
        random.seed()
        root_logger = logging.getLogger()
        root_logger.handlers[:] = launcher.root_handlers
        root_logger.setLevel(launcher.root_level)
        argv = [self.python, "-m", SUPERVISOR_MODULE, str(self.config)]
        sys.argv = [str(sys.modules[SUPERVISOR_MODULE].__file__), str(self.config)]
        sys.orig_argv = argv
        if sys.path and sys.path[0] == launcher.cwd:
            sys.path[0] = str(self.root)  # `python -m` puts the cwd first: the job root for a spawned supervisor
        _set_cmdline(argv)


def _run_supervisor(config: Path) -> int:
    """Run the supervisor's ``main`` as ``python -m`` would, and finish like the interpreter does: non-daemon
    threads joined, ``atexit`` functions run, streams flushed; the exit code."""
    import atexit
    import threading

    from trainforge.runtime import supervisor

    code: Any
    try:
        code = supervisor.main([str(config)])
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # reported like an uncaught exception at the top of a script
        sys.excepthook(*sys.exc_info())
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        with contextlib.suppress(BaseException):
            shutdown()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _interpreter_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON") or k in _INTERPRETER_VARS}


def _close_fds_except(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _read_fd_line(fd: int, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _write_pid_file(root: Path) -> Path | None:
    """Write ``<root>/supervisor.pid`` atomically; its path, or None where it cannot be written (a full disk: the
    supervisor runs all the same, found after a server restart by its command line only)."""
    pid = os.getpid()
    stat = Path(f"/proc/{pid}/stat").read_text()
    start_time = int(stat[stat.rindex(")") + 2 :].split()[19])
    tmp = root / f".{PID_FILE}.{pid}"
    try:
        tmp.write_text(json.dumps({"pid": pid, "start_time": start_time}), encoding="utf-8")
        os.replace(tmp, root / PID_FILE)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return root / PID_FILE


def _set_cmdline(argv: list[str]) -> bool:
    """Make ``/proc/self/cmdline`` read ``argv`` by writing it over the process's original argument area (the
    first argument padded with leading slashes to fill it exactly); False (left as it was) if it does not fit."""
    stat = Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start and arg_end (proc(5) fields 48 and 49)
    content = _nul_joined(argv)
    room = end - start - len(content)
    if room < 0 or not argv[0].startswith("/"):
        return False
    content = b"/" * room + content
    ctypes.memmove(start, content, len(content))
    return True


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} launcher: {message}", file=sys.stderr, flush=True)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGTERM when the parent dies; whether it is still alive (it may have died before the request)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return os.getppid() == parent_pid


def main(argv: list[str] | None = None) -> int:
    """``python -m trainforge.runtime.launcher <socket> <parent pid> [<title room>]``; the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or not args[1].isdigit():
        print("usage: python -m trainforge.runtime.launcher <socket> <parent pid> [<title room>]", file=sys.stderr)
        return 2
    parent_pid = int(args[1])
    if not _die_with_parent(parent_pid):
        return 0
    launcher = _Launcher(Path(args[0]), parent_pid)  # the interpreter's start state, before any import
    for name in WARM_MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from trainforge.runtime.sandbox import probe

    probe()  # whether bubblewrap works here: asked once, every forked supervisor inherits the answer
    gc.freeze()  # what is imported now stays shared with every fork: the collector never writes to its pages
    return launcher.serve()


if __name__ == "__main__":
    sys.exit(main())
