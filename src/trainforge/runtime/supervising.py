"""What the training supervisor (:mod:`trainforge.runtime.supervisor`) and the serving supervisor
(:mod:`trainforge.runtime.serving.supervisor`) do alike when they start the user's process: its base environment,
its interpreter's venv on ``PATH``, limits that fall back to rlimits, and what its sandbox hides and exposes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import trainforge
from trainforge.runtime.launch import SupervisorConfig
from trainforge.runtime.limits import Limits, rlimit_limits


def base_env() -> dict[str, str]:
    """This process's environment without the ``TRAINFORGE_*`` variables: what the user's process starts from."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}


def use_python(env: dict[str, str], python: str) -> None:
    """Put ``python``'s virtual environment (when it is one) in ``env``: ``VIRTUAL_ENV`` and first on ``PATH``."""
    bin_dir = Path(python).parent
    if (bin_dir.parent / "pyvenv.cfg").is_file():
        env["VIRTUAL_ENV"] = str(bin_dir.parent)
        env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", os.defpath)


def envs_root(cfg: SupervisorConfig, root: Path) -> Path:
    """Where the image environments are built: the configured directory, else ``<root>/envs``."""
    return Path(cfg.envs_root) if cfg.envs_root else root / "envs"


def prepared_limits(limits: Limits, say: Callable[[str], None]) -> Limits:
    """``limits`` made ready to wrap a command; a cgroup the kernel refuses falls back to rlimits (returned
    instead, and said through ``say``)."""
    try:
        limits.prepare()
    except OSError as exc:
        limits.close()
        fallback = rlimit_limits(limits.memory_bytes, limits.cpus, limits.name)
        say(f"[trainforge] {limits.kind} refused the limits ({exc}); using {fallback.describe()}")
        return fallback
    return limits


def hidden_paths(cfg: SupervisorConfig, root: Path) -> list[Path]:
    """What the sandboxed process must not see: the server's home (token, database), the jobs root (other jobs),
    the object store, the node's home on Ray. ``root`` is the launch's root directory."""
    hidden: set[Path] = {root.parent.parent}
    home = os.environ.get("TRAINFORGE_HOME")
    if home:
        hidden.add(Path(home).expanduser().resolve())
    if cfg.storage.get("kind", "local") == "local" and cfg.storage.get("root"):
        store_root = Path(str(cfg.storage["root"])).resolve()
        hidden.add(store_root)
        hidden.add(store_root.parent)  # the home the store lives in (token, trainforge.db, server.json)
    if cfg.server_file:
        server_dir = Path(cfg.server_file).resolve().parent
        hidden.add(server_dir if server_dir != root else root.parent.parent)
    return [p for p in hidden if len(p.parts) > 2]  # never "/" or a top-level directory like /home


def exposed_paths(cfg: SupervisorConfig, root: Path, python: str) -> list[Path]:
    """What the sandboxed process needs read-only even where it lies under a hidden directory: its interpreter's
    environment and base installation (and the server's), the image environments (:func:`envs_root`), the
    launch's venv (``<root>/venv``), trainforge's own files. ``root`` is the launch's (resolved) root directory."""
    paths: list[Path] = [Path(trainforge.__file__).resolve().parent.parent]
    for exe in {python, cfg.python}:
        exe_path = Path(exe)
        paths += [exe_path.parent.parent, exe_path.resolve().parent.parent]
        try:
            for line in (exe_path.parent.parent / "pyvenv.cfg").read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    paths.append(Path(value.strip()).resolve().parent)
        except OSError:
            pass
    paths += [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    paths += [envs_root(cfg, root).resolve(), root / "venv"]
    return paths
