"""Warm jobs forked from a forkserver ("zygote"): the supervisor side (issue #13 item 3).

A warm worker (:mod:`trainforge.runtime.warm`) whose job ran its code with an environment's python keeps a zygote:
that python running ``image_files/trainforge_zygote.py`` (standard library only), which imported the image's heavy
modules (``Image.preload``) once and waits. The next job handed to the worker runs its entry point in a fresh fork
of it (:class:`ForkedChild`) when :func:`fork_target` and :meth:`WarmForks.refusal` allow; otherwise it starts a
fresh interpreter as before. Either way the job log says which, in one line.

What a forked job gets is what a fresh ``python script.py`` gets (see the zygote's module doc): its own session, the
job's environment exactly, the job's cwd, its stdout/stderr pipes read line by line here as :class:`ChildProcess`
does, stop as SIGTERM to its process group, grace, SIGKILL. Limits: the child waits, before any user code, until
this side moved it into the job's cgroup(s) (so ``Limits.oom_killed`` keeps working), or it applies the rlimit
fallback (``RLIMIT_AS``, CPU affinity) itself.

**In the sandbox** the zygote lives in a bubblewrap sandbox of its own, shaped like the job's (same hidden and
exposed paths, same network), whose ``/opt/ml`` is a per-worker *slot* directory: per job the top-level entries of
the job root's ``opt/ml`` (and the entries of ``input/config`` and ``input/data``, which the sandbox binds
read-only) are renamed into the slot before the fork and back after the child ended, so ``JobPaths`` stay as they
are and uploads read the job root. Channels cannot be per-job binds there: they are staged as hard links
(:func:`trainforge.runtime.channels.link_channel`), read-only through the slot's ``input/data`` bind. The slot's
``/tmp`` is shared by the zygote's children and emptied before and after each job.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from trainforge.errors import TrainforgeError
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.process import MAX_LINE_BYTES, READER_JOIN_SECONDS, LineSink, _decode
from trainforge.runtime.sandbox import CONTAINER_OPT_ML, SandboxSpec, bwrap_args

log = logging.getLogger("trainforge.forkserver")

ZYGOTE_SCRIPT = IMAGE_FILES / "trainforge_zygote.py"
READY_TIMEOUT_S = 60.0  # how long a job waits for a zygote still importing (a fresh start would import too)
HANDSHAKE_TIMEOUT_S = 10.0
MAX_REPLY_BYTES = 4096
DISTRIBUTED_LAUNCHERS = frozenset({"torch.distributed.run", "torch.distributed.launch", "torchrun", "mpi4py"})
FIXED_SLOT_DIRS = ("config", "data")  # input/<dir> of the slot: bound read-only at the zygote's start


class ForkFailed(TrainforgeError):
    """The job could not be forked from the zygote; the caller starts a fresh interpreter instead."""


@dataclass(frozen=True)
class ForkTarget:
    """What a forked child runs: ``module`` with ``python -m`` semantics, else the script ``argv[0]``."""

    argv: list[str]
    module: str | None = None


def fork_target(cmd: Sequence[str], python: str) -> ForkTarget | str:
    """The command as a fork target when it is ``<python> <script.py> args`` or ``<python> -m <module> args``
    (``python`` being the environment's interpreter), else why not (for the job log)."""
    if not cmd or cmd[0] != python:
        return f"the command does not start with the environment's python ({cmd[0] if cmd else 'empty'})"
    if len(cmd) < 2:
        return "the command runs no script"
    if cmd[1] == "-m":
        if len(cmd) < 3:
            return "python -m without a module"
        if cmd[2] in DISTRIBUTED_LAUNCHERS:
            return f"a distributed launcher ({cmd[2]}) starts the processes"
        return ForkTarget(["-m", *cmd[3:]], module=cmd[2])
    if cmd[1].startswith("-"):
        return f"the command passes interpreter options ({cmd[1]})"
    return ForkTarget(list(cmd[1:]))


@dataclass(frozen=True)
class ZygoteShape:
    """What a zygote was started for; a job forks from it only when its own shape is equal."""

    python: str
    sandboxed: bool
    network: bool
    preload: tuple[str, ...]


@dataclass
class ZygotePlan:
    """How to start a zygote like the job that warmed the worker: its shape, its environment (the job's base
    environment, without the job's contract variables) and, in the sandbox, ``bwrap`` and the sandbox shape
    (``opt_ml``, ``tmp`` and ``channels`` are replaced by the slot's)."""

    shape: ZygoteShape
    env: dict[str, str]
    bwrap: str | None = None
    sandbox: SandboxSpec | None = None


class Slot:
    """A per-worker directory bound at a sandboxed zygote's ``/opt/ml`` (``opt_ml``) and ``/tmp`` (``tmp``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.opt_ml = root / "opt_ml"
        self.tmp = root / "tmp"

    def prepare(self) -> None:
        """Create the slot, empty."""
        shutil.rmtree(self.root, ignore_errors=True)
        for name in FIXED_SLOT_DIRS:
            (self.opt_ml / "input" / name).mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _pairs(self, job_opt_ml: Path, *, inward: bool) -> list[tuple[Path, Path]]:
        """(source, destination) of every entry to move: top-level entries but ``input``; entries of ``input``
        but the fixed directories; entries of the fixed directories."""
        src_root, dst_root = (job_opt_ml, self.opt_ml) if inward else (self.opt_ml, job_opt_ml)
        pairs: list[tuple[Path, Path]] = []
        for entry in sorted(src_root.iterdir()) if src_root.is_dir() else []:
            if entry.name != "input":
                pairs.append((entry, dst_root / entry.name))
                continue
            for sub in sorted(entry.iterdir()):
                if sub.name not in FIXED_SLOT_DIRS:
                    pairs.append((sub, dst_root / "input" / sub.name))
                    continue
                pairs += [(item, dst_root / "input" / sub.name / item.name) for item in sorted(sub.iterdir())]
        return pairs

    def move_in(self, job_opt_ml: Path) -> None:
        """Rename the job's ``opt/ml`` entries into the slot; on a failure, everything goes back and
        :class:`ForkFailed` says why."""
        self.clear()
        moved: list[tuple[Path, Path]] = []
        try:
            for source, dest in self._pairs(job_opt_ml, inward=True):
                os.rename(source, dest)
                moved.append((source, dest))
        except OSError as exc:
            for source, dest in reversed(moved):
                with contextlib.suppress(OSError):
                    os.rename(dest, source)
            raise ForkFailed(f"cannot move the job's /opt/ml into the forkserver's slot: {exc}") from None

    def move_out(self, job_opt_ml: Path) -> None:
        """Rename everything in the slot back into the job's ``opt/ml`` (also what the job created there)."""
        for name in FIXED_SLOT_DIRS:
            (job_opt_ml / "input" / name).mkdir(parents=True, exist_ok=True)
        for source, dest in self._pairs(job_opt_ml, inward=False):
            try:
                if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
                    dest.rmdir()
                os.rename(source, dest)
            except OSError as exc:
                log.warning("cannot move %s back to %s: %s", source, dest, exc)
        self.clear()

    def clear(self) -> None:
        """Remove whatever is left in the slot (but its fixed directories) and in its ``/tmp``."""
        for source, _ in self._pairs(self.opt_ml, inward=False):
            _remove(source)
        for entry in self.tmp.iterdir() if self.tmp.is_dir() else []:
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


class Zygote:
    """One running zygote process and its control socket."""

    def __init__(self, plan: ZygotePlan, proc: subprocess.Popen[bytes], control: socket.socket, slot: Slot | None):
        self.plan = plan
        self.slot = slot
        self._proc = proc
        self._control = control
        self._ready: bool | None = None
        self.imported: list[str] = []
        self.failed: dict[str, str] = {}
        self.lock = threading.Lock()

    @classmethod
    def start(cls, plan: ZygotePlan, slot: Slot | None) -> Zygote:
        """Start the zygote (it imports in the background; see :meth:`wait_ready`). Raises ``OSError``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [plan.shape.python, str(ZYGOTE_SCRIPT), str(theirs.fileno()), json.dumps(list(plan.shape.preload))]
        if plan.sandbox is not None and plan.bwrap is not None:
            assert slot is not None
            slot.prepare()
            spec = SandboxSpec(
                opt_ml=slot.opt_ml,
                tmp=slot.tmp,
                hidden=list(plan.sandbox.hidden),
                expose=list(plan.sandbox.expose),
                network=plan.sandbox.network,
                readonly={f"{CONTAINER_OPT_ML}/input/data": slot.opt_ml / "input" / "data"},
            )
            # --as-pid-1: the zygote is the sandbox's init, so its children see parent pid 1 as a fresh job's code
            # does under bwrap's own init (and the zygote reaps orphans, see the zygote's _serve)
            cmd = [plan.bwrap, "--as-pid-1", *bwrap_args(plan.bwrap, spec, cwd="/")[1:], *cmd]
        try:
            proc = subprocess.Popen(
                cmd,
                env=plan.env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                process_group=0,
            )
        finally:
            theirs.close()
        return cls(plan, proc, ours, slot)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and self._ready is not False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """Whether the zygote finished its imports and waits for jobs (waits up to ``timeout`` seconds)."""
        if self._ready is None:
            self._control.settimeout(timeout)
            try:
                reply = json.loads(self._control.recv(MAX_REPLY_BYTES) or b"{}")
            except (OSError, ValueError):
                reply = {}
            self._control.settimeout(None)
            self._ready = bool(reply.get("ready"))
            self.imported = [str(m) for m in reply.get("imported") or []]
            self.failed = {str(k): str(v) for k, v in (reply.get("failed") or {}).items()}
            if not self._ready:
                self.close()
        return self._ready and self._proc.poll() is None

    def send(self, request: bytes, fds: Sequence[int]) -> None:
        """Hand one job to the zygote: the request with its descriptors. Raises ``OSError``."""
        self._control.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])

    def close(self) -> None:
        """End the zygote (closing its control socket ends it; SIGKILL after a moment)."""
        with contextlib.suppress(OSError):
            self._control.close()
        try:
            self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()


@dataclass
class ChildLimits:
    """How a forked child is held to the job's limits: cgroup ``procs`` files it is moved into, else the rlimit
    fallback it applies itself."""

    cgroup_procs: list[Path] = field(default_factory=list)
    rlimit_as: int | None = None
    cpus: list[int] = field(default_factory=list)


class ForkedChild:
    """A job's entry point forked from a zygote; the same interface as :class:`ChildProcess` (``pid`` is the
    child's pid as this process sees it, also its process group)."""

    def __init__(
        self,
        zygote: Zygote,
        target: ForkTarget,
        *,
        env: Mapping[str, str],
        cwd: str,
        sink: LineSink,
        limits: ChildLimits,
        job_opt_ml: Path | None = None,
    ) -> None:
        self._zygote = zygote
        self._target = target
        self._env = dict(env)
        self._cwd = cwd
        self._sink = sink
        self._limits = limits
        self._job_opt_ml = job_opt_ml
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._rc: int | None = None
        self._readers: list[threading.Thread] = []
        self._moved = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self, announce: Callable[[], None] = lambda: None) -> None:
        """Fork the child and let it run once it is under the limits (``announce`` is called just before).
        Raises :class:`ForkFailed` when it cannot be, with nothing of the job run (the caller starts fresh)."""
        if not self._zygote.wait_ready():
            raise ForkFailed("the forkserver is not running")
        slot = self._zygote.slot
        if slot is not None and self._job_opt_ml is not None:
            slot.move_in(self._job_opt_ml)
            self._moved = True
        try:
            self._fork(announce)
        except ForkFailed:
            self._abandon()
            raise

    def _fork(self, announce: Callable[[], None]) -> None:
        request = {
            "argv": self._target.argv,
            "module": self._target.module,
            "env": self._env,
            "cwd": self._cwd,
            "rlimit_as": self._limits.rlimit_as,
            "cpus": self._limits.cpus,
        }
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock = sock
        try:
            self._zygote.send(json.dumps(request).encode(), [out_w, err_w, theirs.fileno()])
        except OSError as exc:
            os.close(out_r)
            os.close(err_r)
            raise ForkFailed(f"the forkserver did not take the job: {exc}") from None
        finally:
            os.close(out_w)
            os.close(err_w)
            theirs.close()
        for name, fd in (("stdout", out_r), ("stderr", err_r)):
            pipe = os.fdopen(fd, "rb")
            reader = threading.Thread(target=self._read, args=(name, pipe), name=f"forked-{name}", daemon=True)
            reader.start()
            self._readers.append(reader)
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(MAX_REPLY_BYTES, socket.CMSG_SPACE(struct.calcsize("3i")))
        except OSError as exc:
            raise ForkFailed(f"the forked child did not report: {exc}") from None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self._pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
        if data != b"started" or not self._pid:
            self._note_exit(data)
            raise ForkFailed("the forked child ended before it started")
        for procs in self._limits.cgroup_procs:
            try:
                procs.write_text(str(self._pid))
            except OSError as exc:
                raise ForkFailed(f"cannot move the forked child into {procs.parent}: {exc}") from None
        announce()
        try:
            sock.send(b"go")
        except OSError as exc:
            raise ForkFailed(f"the forked child is gone: {exc}") from None

    def _abandon(self) -> None:
        """After a failed start: kill the child if there is one, wait for its end, put the job's files back."""
        if self._pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        if self._sock is not None and self._rc is None and self._pid:
            self.wait(HANDSHAKE_TIMEOUT_S)
        self._close()

    def _read(self, stream: str, pipe: IO[bytes]) -> None:
        with pipe:
            while True:
                raw = pipe.readline(MAX_LINE_BYTES)
                if not raw:
                    return
                self._sink(stream, _decode(raw))

    def _note_exit(self, data: bytes) -> None:
        try:
            self._rc = int(json.loads(data)["exit"])
        except (ValueError, KeyError, TypeError):
            self._rc = -signal.SIGKILL  # the zygote went away: the child was killed with it (or is killed now)

    def poll(self) -> int | None:
        """The return code once the child has exited, else None."""
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for the child; its return code, or None while it runs."""
        if self._rc is not None or self._sock is None:
            return self._rc
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(MAX_REPLY_BYTES)
        except (TimeoutError, BlockingIOError):  # still running (BlockingIOError: timeout 0)
            return None
        except OSError:
            data = b""
        if not data and self._pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        self._note_exit(data)
        return self._rc

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (nothing if it is already gone)."""
        if self._pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signum)

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM the group, wait up to ``grace_seconds`` for the child, then SIGKILL the group; its return code."""
        if self.wait(0) is None:
            self.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while self.wait(min(0.1, max(0.0, deadline - time.monotonic()))) is None:
                if time.monotonic() >= deadline:
                    break
        self.signal_group(signal.SIGKILL)
        rc = self.wait(None)
        assert rc is not None
        return rc

    def finish(self) -> None:
        """After the child exited: kill what is left of its group, drain the readers, put the job's ``opt/ml``
        back in the job root (sandbox) and empty the shared ``/tmp``."""
        self.signal_group(signal.SIGKILL)
        deadline = time.monotonic() + READER_JOIN_SECONDS
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        slot = self._zygote.slot
        if self._moved and slot is not None and self._job_opt_ml is not None:
            self._moved = False
            slot.move_out(self._job_opt_ml)


class WarmForks:
    """The zygote of one warm worker: started after a job when that job's code could be forked, kept while the
    following jobs have the same shape, replaced when one does not."""

    def __init__(self, warm_dir: Path, *, enabled: bool = True) -> None:
        self.enabled = enabled  # TRAINFORGE_WARM_FORK=auto
        self.zygote: Zygote | None = None
        self._slot = Slot(warm_dir / "slots" / str(os.getpid()))

    def after_job(self, plan: ZygotePlan | None) -> None:
        """Keep, start or replace the zygote for the job that just ended (``plan`` None: none fits it)."""
        current = self.zygote
        if current is not None and plan is not None and current.plan.shape == plan.shape and current.alive:
            return
        self.stop()
        if plan is None or not self.enabled:
            return
        try:
            self.zygote = Zygote.start(plan, self._slot if plan.sandbox is not None else None)
        except OSError as exc:
            log.warning("cannot start a forkserver with %s: %s", plan.shape.python, exc)
            self.zygote = None
        else:
            log.info(
                "forkserver pid %s started for %s (preload %s)", self.zygote.pid, plan.shape.python, plan.shape.preload
            )

    @property
    def sandboxed(self) -> bool:
        """Whether the zygote lives in a sandbox (then channels are staged as links, see the module doc)."""
        return self.zygote is not None and self.zygote.plan.sandbox is not None and self.zygote.alive

    def refusal(self, shape: ZygoteShape | None, *, hosts: int, writable_binds: bool) -> str | None:
        """Why a job of ``shape`` (None: its code does not run with an environment's python) cannot fork from the
        zygote (None: it can)."""
        zygote = self.zygote
        if not self.enabled:
            return "TRAINFORGE_WARM_FORK=off"
        if shape is None:
            return "the code does not run with an environment's python here (a container, GPUs or a per-job venv)"
        if zygote is None:
            return "no forkserver (the previous job's code did not run with an environment's python)"
        if hosts > 1:
            return "a multi-host job"
        if writable_binds:
            return "the sandbox binds a checkpoint directory outside /opt/ml"
        have = zygote.plan.shape
        if shape.python != have.python:
            return f"the environment's python changed ({have.python} -> {shape.python})"
        if shape.sandboxed != have.sandboxed:
            return "the forkserver was started for another executor (sandbox or process)"
        if shape.network != have.network:
            return "the forkserver's sandbox has another network setting (EnableNetworkIsolation)"
        if not zygote.wait_ready():
            return "the forkserver is not running (see the supervisor log)"
        return None

    def stop(self) -> None:
        """End the zygote."""
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def close(self) -> None:
        """End the zygote and remove the slot."""
        self.stop()
        shutil.rmtree(self._slot.root, ignore_errors=True)


def announcement(zygote: Zygote) -> str:
    """The job log's line for a forked start."""
    what = ", ".join(zygote.imported) if zygote.imported else "no modules"
    return f"[trainforge] warm start: forked from a forkserver with {what} imported"
