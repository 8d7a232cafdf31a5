"""The bubblewrap sandbox user code runs in: what it sees, and the ``bwrap`` command line that makes it so.

Inside (see :func:`bwrap_args`):

- its own mount, PID and IPC namespaces (``--unshare-pid --unshare-ipc``), killed with its supervisor
  (``--die-with-parent``); as root, every capability dropped, so it cannot remount anything;
- the whole file system read-only, with a fresh ``/dev`` (plus the host's ``/dev/nvidia*``) and ``/proc``;
- a private, writable ``/tmp`` (a directory of the job root);
- ``hidden`` directories (``$TRAINFORGE_HOME``, the jobs root, the object store) covered by empty tmpfs, then
  exactly the paths the code needs (``expose``: its Python environment, trainforge's own files) bound back
  read-only; bind sources are resolved outside, so a path under a hidden one can be re-exposed;
- the host's job root ``opt/ml`` bound read-write at the real ``/opt/ml`` (SageMaker's paths), its
  ``input/config`` and every channel read-only (a channel is the staged copy or, zero-copy, the store's own
  directory);
- the host network, or none at all (``--unshare-net``: only a loopback of its own) with network isolation.

The sandbox keeps the caller's process group: bwrap runs without ``--new-session`` so the supervisor's SIGTERM
reaches the job's processes (the supervisor runs in its own session, without a controlling terminal, so there is
no terminal to inject input into). There is no user namespace of our own: the code runs as the server's user.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONTAINER_OPT_ML = "/opt/ml"
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Probe:
    """Whether bubblewrap works here: ``bwrap`` is its path when it does, ``reason`` says why not otherwise."""

    bwrap: str | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.bwrap is not None


@functools.cache
def probe(program: str = "bwrap") -> Probe:
    """Run ``bwrap`` once with the namespaces the sandbox uses (cached for this process)."""
    path = shutil.which(program)
    if path is None:
        return Probe(None, f"{program} not found")
    cmd = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-ipc"]
    cmd += ["--die-with-parent", "--tmpfs", "/tmp", *_cap_args(), "true"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(None, f"{path} does not run: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return Probe(None, f"{path} does not work here: {last}")
    return Probe(path)


def _cap_args() -> list[str]:
    return ["--cap-drop", "ALL"] if os.geteuid() == 0 else []


@dataclass
class SandboxSpec:
    """What one host's code sees; host paths are absolute.

    ``channels`` maps a channel name to the host directory bound read-only at ``/opt/ml/input/data/<name>``;
    ``writable`` maps extra host directories to container paths (a checkpoint ``LocalPath`` outside ``/opt/ml``);
    ``readonly`` maps container paths to host directories bound read-only after the channels (a warm worker's
    forkserver binds its slot's ``input/data`` so, see :mod:`trainforge.runtime.forkserver`).
    """

    opt_ml: Path
    tmp: Path
    channels: dict[str, Path] = field(default_factory=dict)
    hidden: list[Path] = field(default_factory=list)
    expose: list[Path] = field(default_factory=list)
    writable: dict[str, Path] = field(default_factory=dict)
    readonly: dict[str, Path] = field(default_factory=dict)
    network: bool = True
    devices: list[str] = field(default_factory=list)
    drop_caps: bool = field(default_factory=lambda: os.geteuid() == 0)


def _under(path: Path, parents: Iterable[Path]) -> bool:
    return any(path == p or path.is_relative_to(p) for p in parents)


def minimal(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not under another of them, sorted (``/a`` and ``/a/b`` -> ``/a``)."""
    out: list[Path] = []
    for path in sorted({Path(p) for p in paths}, key=lambda p: (len(p.parts), str(p))):
        if not _under(path, out):
            out.append(path)
    return sorted(out)


def _reexpose_entries(directory: Path) -> list[str]:
    """Args that put back, read-only, every entry of ``directory`` after a tmpfs covered it."""
    args: list[str] = []
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return args
    for entry in entries:
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.exists():
            args += ["--ro-bind", str(entry), str(entry)]
    return args


def _opt_ml_args(opt_ml: Path, container: str = CONTAINER_OPT_ML) -> list[str]:
    """Bind ``opt_ml`` at ``/opt/ml``. On a read-only root the mount point must exist: when ``/opt/ml`` does not,
    ``/opt`` gets a tmpfs with its entries put back (or, with no ``/opt`` at all, the root is built entry by
    entry, see :func:`bwrap_args`)."""
    target = Path(container)
    args: list[str] = []
    if not target.exists() and target.parent.is_dir() and target.parent != Path("/"):
        args += ["--tmpfs", str(target.parent), *_reexpose_entries(target.parent)]
    return [*args, "--bind", str(opt_ml), container]


def nvidia_devices(dev: Path = Path("/dev")) -> list[str]:
    """The host's ``/dev/nvidia*`` device nodes (and ``/dev/nvidia-caps``), bound into the sandbox as they are."""
    try:
        return sorted(str(p) for p in dev.iterdir() if p.name.startswith("nvidia"))
    except OSError:
        return []


def bwrap_args(bwrap: str, spec: SandboxSpec, cwd: str = CONTAINER_OPT_ML + "/code") -> list[str]:
    """The ``bwrap`` argv prefix (ending with ``--``) for ``spec``; mounts are applied in this order."""
    args = [bwrap]
    if Path("/opt").is_dir() or Path(CONTAINER_OPT_ML).exists():
        args += ["--ro-bind", "/", "/"]
    else:  # no /opt to mount on: a tmpfs root with every top-level entry put back read-only
        args += _drop_pairs(_reexpose_entries(Path("/")), {"/proc", "/dev"})
    args += ["--dev", "/dev"]
    for device in spec.devices:
        args += ["--dev-bind", device, device]
    args += ["--proc", "/proc"]
    args += ["--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    if not spec.network:
        args.append("--unshare-net")
    if spec.drop_caps:
        args += ["--cap-drop", "ALL"]
    args += ["--bind", str(spec.tmp), "/tmp"]
    hidden = [h for h in minimal(spec.hidden) if h != Path("/") and not _under(h, [Path("/tmp")])]
    for path in hidden:
        args += ["--tmpfs", str(path)]
    shadowed = [*hidden, Path("/tmp")]
    for path in minimal(p for p in spec.expose if _under(p, shadowed) and p.exists()):
        args += ["--ro-bind", str(path), str(path)]
    args += _opt_ml_args(spec.opt_ml)
    config = spec.opt_ml / "input" / "config"
    if config.is_dir():
        args += ["--ro-bind", str(config), f"{CONTAINER_OPT_ML}/input/config"]
    for name, source in sorted(spec.channels.items()):
        args += ["--ro-bind", str(source), f"{CONTAINER_OPT_ML}/input/data/{name}"]
    for target, source in sorted(spec.writable.items()):
        args += ["--bind", str(source), target]
    for target, source in sorted(spec.readonly.items()):
        args += ["--ro-bind", str(source), target]
    args += ["--chdir", cwd, "--"]
    return args


def _drop_pairs(args: list[str], targets: set[str]) -> list[str]:
    """``args`` without the three-word mounts (``--ro-bind SRC DST``) whose destination is in ``targets``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in ("--ro-bind", "--symlink") and i + 2 < len(args) and args[i + 2] in targets:
            i += 3
            continue
        out.append(args[i])
        i += 1
    return out


def sandboxed(bwrap: str, spec: SandboxSpec, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run inside the sandbox ``spec`` describes."""
    return [*bwrap_args(bwrap, spec), *cmd]


def describe(spec: SandboxSpec) -> str:
    """The job log's words for the sandbox, e.g. ``bubblewrap (mount, pid, ipc namespaces; network: host)``."""
    network = "host" if spec.network else "none"
    return f"bubblewrap (mount, pid, ipc namespaces; network: {network})"
