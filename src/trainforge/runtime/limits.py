"""Memory and CPU limits for one host's user code: cgroup v2, cgroup v1, or rlimits, whichever the machine allows.

:func:`select_limits` picks the first mechanism that works here, in this order:

- **cgroup v2** - a unified hierarchy whose controllers include ``memory`` (and ``cpu`` for the CPU limit): a
  child cgroup ``trainforge-<job>-<host>`` under the supervisor's own cgroup gets ``memory.max`` (and
  ``memory.swap.max`` 0) and ``cpu.max``.
- **cgroup v1** - a writable ``memory`` hierarchy (and ``cpu`` for the CPU limit): a child cgroup under the
  supervisor's own one gets ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``) and
  ``cpu.cfs_quota_us``.
- **rlimits** - ``RLIMIT_AS`` (``ulimit -v``) for memory and CPU affinity (``taskset``) for CPUs. Address space
  is not resident memory: a program that maps much more than it touches may fail early under this fallback.

The code is moved into its cgroup by a ``/bin/sh`` wrapper (``echo $$ > cgroup.procs; exec ...``) before it
runs anything, so every process it starts is inside from its first instruction. :meth:`Limits.oom_killed`
tells whether the kernel killed a process of the cgroup for memory; :meth:`Limits.close` kills what is left in
the cgroup and removes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CPU_PERIOD_US = 100_000
GIB = 2**30
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def format_gib(nbytes: int) -> str:
    """``4 GiB``, ``1.5 GiB``, ``512 MiB``: a byte count as people read memory sizes."""
    if nbytes >= GIB:
        return f"{nbytes / GIB:.3g} GiB"
    return f"{nbytes / 2**20:.4g} MiB"


def cgroup_name(job_name: str, host: str) -> str:
    """The per-host child cgroup's name (characters a cgroup file system accepts)."""
    return _NAME_UNSAFE.sub("_", f"trainforge-{job_name}-{host}")[:200]


def own_cgroups(proc_cgroup: Path = PROC_SELF_CGROUP) -> dict[str, str]:
    """This process's cgroup path per controller (``"memory" -> "/a/b"``; the v2 path under key ``""``)."""
    out: dict[str, str] = {}
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _parent_dir(mount: Path, own: str | None) -> Path:
    """Where to create the child cgroup: under this process's own cgroup when the mount shows it, else at the
    mount's root (a container whose cgroup namespace hides the path)."""
    if own and own != "/":
        candidate = mount / own.lstrip("/")
        if candidate.is_dir():
            return candidate
    return mount


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _read_counter(path: Path, key: str) -> int:
    """The value of ``key N`` in a flat-keyed cgroup file (0 when absent or unreadable)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


@dataclass
class Limits:
    """How one host's code is held to ``memory_bytes`` and ``cpus``; see the module doc for the mechanisms.

    ``kind`` is ``cgroup v2``, ``cgroup v1``, ``rlimits`` or ``none``. ``dirs`` are the child cgroups (one for v2;
    memory and cpu for v1) once :meth:`prepare` made them. Use: :meth:`prepare`, :meth:`wrap` the command, run
    it, ask :meth:`oom_killed`, then :meth:`close`.
    """

    kind: str
    memory_bytes: int | None
    cpus: int | None
    memory_parent: Path | None = None
    cpu_parent: Path | None = None
    name: str = "trainforge"
    cpu_list: list[int] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        """The job log's account of the limits, e.g. ``memory limit 4 GiB (cgroup v1); 2 CPUs (cgroup v1 cpu
        quota)``."""
        parts = []
        if self.memory_bytes is None:
            parts.append("no memory limit")
        elif self.kind in ("cgroup v1", "cgroup v2"):
            parts.append(f"memory limit {format_gib(self.memory_bytes)} ({self.kind})")
        elif self.kind == "rlimits":
            parts.append(f"memory limit {format_gib(self.memory_bytes)} (rlimit: address space)")
        else:
            parts.append(f"memory not limited ({format_gib(self.memory_bytes)} wanted; no cgroup or rlimit here)")
        if self.cpus is None:
            parts.append("CPUs not limited")
        elif self.kind in ("cgroup v1", "cgroup v2") and self.cpu_parent is not None:
            parts.append(f"{self.cpus} CPUs ({self.kind} cpu quota)")
        elif self.cpu_list:
            parts.append(f"{self.cpus} CPUs (affinity {_ranges(self.cpu_list)})")
        else:
            parts.append(f"{self.cpus} CPUs (not enforced here)")
        return "; ".join(parts)

    # ------------------------------------------------------------------------------------------- cgroups

    def prepare(self) -> None:
        """Create the child cgroup(s) and write the limits; raise ``OSError`` when the kernel refuses (the caller
        then falls back to :func:`rlimit_limits`). Nothing to do for rlimits."""
        if self.kind == "cgroup v2":
            assert self.memory_parent is not None
            path = self._make(self.memory_parent)
            if self.memory_bytes is not None:
                (path / "memory.max").write_text(str(self.memory_bytes))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            if self.cpus is not None and self.cpu_parent is not None:
                (path / "cpu.max").write_text(f"{self.cpus * CPU_PERIOD_US} {CPU_PERIOD_US}")
        elif self.kind == "cgroup v1":
            if self.memory_parent is not None and self.memory_bytes is not None:
                path = self._make(self.memory_parent)
                (path / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
                with contextlib.suppress(OSError):  # only with swap accounting; after limit_in_bytes
                    (path / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
            if self.cpu_parent is not None and self.cpus is not None:
                path = self._make(self.cpu_parent)
                (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(self.cpus * CPU_PERIOD_US))

    def _make(self, parent: Path) -> Path:
        path = parent / self.name
        try:
            path.mkdir()
        except FileExistsError:  # left by an earlier run of the same host (e.g. a crashed supervisor)
            self._empty(path)
        self.dirs.append(path)
        return path

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` behind a ``/bin/sh`` that enters the cgroup(s) or sets the rlimits first, then ``exec``s it."""
        script: list[str] = []
        args: list[str] = []
        if self.kind in ("cgroup v1", "cgroup v2"):
            for path in self.dirs:
                args.append(str(path / "cgroup.procs"))
                script.append(f'echo $$ > "${len(args)}" || exit 125')
        elif self.kind == "rlimits":
            if self.memory_bytes is not None:
                script.append(f"ulimit -v {max(1, self.memory_bytes // 1024)} || exit 125")
            taskset = shutil.which("taskset")
            if self.cpu_list and taskset:
                cmd = [taskset, "-c", _ranges(self.cpu_list), *cmd]
        if not script:
            return list(cmd)
        shift = f"shift {len(args)}; " if args else ""
        return ["/bin/sh", "-c", "; ".join(script) + f'; {shift}exec "$@"', "trainforge-limits", *args, *cmd]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this host's cgroup for exceeding its memory limit."""
        for path in self.dirs:
            if self.kind == "cgroup v2" and _read_counter(path / "memory.events", "oom_kill") > 0:
                return True
            if self.kind == "cgroup v1" and _read_counter(path / "memory.oom_control", "oom_kill") > 0:
                return True
        return False

    def close(self) -> None:
        """Kill every process still in the cgroup(s) and remove them (best effort; idempotent)."""
        for path in reversed(self.dirs):
            self._empty(path)
            with contextlib.suppress(OSError):
                path.rmdir()
        self.dirs = []

    @staticmethod
    def _empty(path: Path) -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)


def _ranges(cpus: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5`` (taskset's list syntax)."""
    out: list[str] = []
    ordered = sorted(cpus)
    start = prev = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(out)


def _v2_mount(root: Path) -> Path | None:
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


def _v2_limits(root: Path, own: dict[str, str], memory_bytes: int | None, cpus: int | None, name: str) -> Limits | None:
    mount = _v2_mount(root)
    if mount is None:
        return None
    try:
        available = (mount / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    if "memory" not in available:
        return None
    parent = _parent_dir(mount, own.get(""))
    if not _writable_dir(parent):
        return None
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    wanted = [c for c in ("memory", "cpu") if c in available and c not in enabled]
    if wanted:
        try:  # refused (EBUSY) when the parent holds processes and is not the root: then not v2
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
            enabled = (parent / "cgroup.subtree_control").read_text().split()
        except OSError:
            return None
    if "memory" not in enabled:
        return None
    return Limits("cgroup v2", memory_bytes, cpus, parent, parent if "cpu" in enabled else None, name)


def _v1_limits(root: Path, own: dict[str, str], memory_bytes: int | None, cpus: int | None, name: str) -> Limits | None:
    memory = _parent_dir(root / "memory", own.get("memory")) if (root / "memory").is_dir() else None
    if memory is None or not _writable_dir(memory) or not (memory / "memory.limit_in_bytes").exists():
        return None
    cpu_mount = next((root / n for n in ("cpu", "cpu,cpuacct") if (root / n / "cpu.cfs_quota_us").exists()), None)
    cpu = _parent_dir(cpu_mount, own.get("cpu")) if cpu_mount is not None else None
    if cpu is not None and not _writable_dir(cpu):
        cpu = None
    return Limits("cgroup v1", memory_bytes, cpus, memory, cpu if cpus is not None else None, name)


def rlimit_limits(memory_bytes: int | None, cpus: int | None, name: str = "trainforge") -> Limits:
    """The fallback: ``RLIMIT_AS`` for memory, CPU affinity to the first ``cpus`` CPUs this process may use."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    cpu_list = allowed[:cpus] if cpus is not None and cpus < len(allowed) and shutil.which("taskset") else []
    return Limits("rlimits", memory_bytes, cpus, name=name, cpu_list=cpu_list)


def select_limits(
    *,
    memory_gib: float | None,
    cpus: int | None,
    job_name: str,
    host: str,
    root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_SELF_CGROUP,
) -> Limits:
    """The limits for one host's code: cgroup v2 where its memory controller can be used, else a writable v1
    memory hierarchy, else rlimits (see the module doc). Nothing is created until :meth:`Limits.prepare`."""
    memory_bytes = int(memory_gib * GIB) if memory_gib else None
    name = cgroup_name(job_name, host)
    if memory_bytes is None and cpus is None:
        return Limits("none", None, None, name=name)
    own = own_cgroups(proc_cgroup)
    for pick in (_v2_limits, _v1_limits):
        found = pick(root, own, memory_bytes, cpus, name)
        if found is not None:
            return found
    return rlimit_limits(memory_bytes, cpus, name)
