"""A forkserver ("zygote") for a warm worker: imports an image's heavy modules once, then forks one child per job.

Run by path with the job environment's own interpreter (standard library only: that environment does not contain
trainforge): ``<python> trainforge_zygote.py <control fd> <preload JSON list>``. The supervisor side is
``trainforge.runtime.forkserver``.

Protocol on the control socket (``SOCK_SEQPACKET``, one message each):

- zygote -> supervisor, once, after the imports: ``{"ready": true, "imported": [...], "failed": {...}}``;
- supervisor -> zygote, per job: the job's JSON request (``argv``, ``module``, ``env``, ``cwd``, ``rlimit_as``,
  ``cpus``) with three file descriptors (``SCM_RIGHTS``): the job's stdout and stderr pipes and the job socket.

On the job socket (``SOCK_SEQPACKET``): the child sends ``started`` with its credentials (``SCM_CREDENTIALS``: the
kernel gives the supervisor the child's pid as the supervisor sees it, also across a PID namespace), waits for
``go`` (the supervisor moved it into the job's cgroup meanwhile), then runs the job; the zygote, its parent,
sends ``{"exit": <code>}`` (negative: killed by that signal) when it exited.

The zygote never runs user code: each job runs in a fresh fork of it, which becomes a ``python script.py args``
(or ``python -m module args``) of its own: new session, signal dispositions and mask as a fresh interpreter has
them, stdin ``/dev/null``, every other descriptor closed, ``os.environ`` exactly the job's environment, ``sys.argv``
and ``sys.path`` as the interpreter would set them, the cwd the job's, random generators reseeded, the entry point
run as ``__main__`` by :mod:`runpy`; an uncaught exception prints its traceback and exits 1, ``sys.exit`` codes
pass through, and the interpreter's usual shutdown (non-daemon threads joined, ``atexit``) ends it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import os
import pkgutil  # noqa: F401  # runpy.run_path imports it: imported once here, not in every job
import random
import resource
import runpy
import signal
import socket
import struct
import sys
import traceback
from types import TracebackType
from typing import Any

MAX_REQUEST_BYTES = 4 * 2**20
PR_SET_PDEATHSIG = 1
_FRESH_IGNORED = (signal.SIGPIPE, getattr(signal, "SIGXFSZ", signal.SIGPIPE))


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the supervisor that started it dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    imported: list[str] = []
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing or broken module: the jobs import it themselves
            failed[name] = f"{type(exc).__name__}: {exc}"
        else:
            imported.append(name)
    return imported, failed


def _reset_signals() -> None:
    """Dispositions and mask as a fresh interpreter has them."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signum == signal.SIGINT:
                signal.signal(signum, signal.default_int_handler)
            elif signum in _FRESH_IGNORED:
                signal.signal(signum, signal.SIG_IGN)
            else:
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass


def _new_stdio(unbuffered: bool) -> None:
    """Text streams over descriptors 0, 1 and 2 as the interpreter would make them for pipes."""
    encoding = sys.stdout.encoding if sys.stdout is not None else "utf-8"
    stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding)
    streams: list[io.TextIOWrapper] = []
    for fd, errors in ((1, "strict"), (2, "backslashreplace")):
        raw = io.FileIO(fd, "w", closefd=False)
        buffer: Any = raw if unbuffered else io.BufferedWriter(raw)
        streams.append(
            io.TextIOWrapper(buffer, encoding=encoding, errors=errors, line_buffering=fd == 2, write_through=unbuffered)
        )
    for name, stream in (("stdin", stdin), ("stdout", streams[0]), ("stderr", streams[1])):
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _reseed() -> None:
    """Fresh random state per job (the zygote's would otherwise repeat in every child)."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed(None)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        torch.seed()


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame that is neither this file nor :mod:`runpy` (what ``python script.py``
    would print)."""
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__ or ""), "<frozen runpy>"}
    while tb is not None and (
        tb.tb_frame.f_code.co_filename in ours or os.path.abspath(tb.tb_frame.f_code.co_filename) in ours
    ):
        tb = tb.tb_next
    return tb


def _run(request: dict[str, Any], base_path: list[str]) -> int:
    """Run the job's entry point as ``__main__``; its exit code (SystemExit propagates)."""
    env = {str(k): str(v) for k, v in request["env"].items()}
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    _new_stdio(bool(env.get("PYTHONUNBUFFERED")))
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    module = request.get("module")
    argv = [str(a) for a in request["argv"]]
    if module:
        sys.path[:] = [os.getcwd(), *extra, *base_path]
    else:
        sys.path[:] = [os.path.dirname(os.path.abspath(argv[0])), *extra, *base_path]
    sys.argv[:] = argv
    sys.orig_argv[:] = [sys.executable, "-m", module, *argv[1:]] if module else [sys.executable, *argv]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    _reseed()
    try:
        if module:
            runpy._run_module_as_main(module, alter_argv=True)  # type: ignore[attr-defined]  # what -m runs
        else:
            runpy.run_path(argv[0], run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        exc.__traceback__ = _user_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return 1
    return 0


def _child(request: dict[str, Any], out: int, err: int, job: socket.socket, base_path: list[str]) -> int:
    """In the forked child: become the job's process, then run it."""
    _reset_signals()
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    job.sendmsg([b"started"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    if job.recv(64) != b"go":
        os._exit(125)  # the supervisor gave up on this start
    if request.get("rlimit_as"):
        limit = int(request["rlimit_as"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if request.get("cpus"):
        os.sched_setaffinity(0, {int(c) for c in request["cpus"]})
    job.close()
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    return _run(request, base_path)


def _serve(control: socket.socket, base_path: list[str]) -> None:
    fd_space = socket.CMSG_SPACE(3 * struct.calcsize("i"))
    while True:
        try:
            data, ancillary, _flags, _addr = control.recvmsg(MAX_REQUEST_BYTES, fd_space)
        except InterruptedError:
            continue
        if not data:
            return  # the supervisor closed the control socket
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) - len(payload) % 4]))
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        out, err, job_fd = fds
        job = socket.socket(fileno=job_fd)
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            control.close()
            sys.exit(_child(request, out, err, job, base_path))
        os.close(out)
        os.close(err)
        while True:  # any child: as a sandbox's pid 1, orphans of earlier jobs are reaped here too
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                status = 255 << 8  # cannot happen: the job's child is ours until reaped
                break
            if reaped == pid:
                break
        with contextlib.suppress(OSError):
            job.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())
        job.close()


def main(argv: list[str]) -> None:
    """``trainforge_zygote.py <control fd> <preload JSON>``: import, say ready, serve until the control closes."""
    _die_with_parent()
    here = os.path.dirname(os.path.abspath(__file__))
    base_path = [p for p in sys.path if p and os.path.abspath(p) != here]
    sys.path[:] = base_path
    control = socket.socket(fileno=int(argv[1]))
    imported, failed = _preload([str(m) for m in json.loads(argv[2])])
    os.chdir("/")
    control.send(json.dumps({"ready": True, "imported": imported, "failed": failed}).encode())
    _serve(control, base_path)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:  # the zygote itself failed: say why where the supervisor logs
        traceback.print_exc()
        sys.exit(70)
