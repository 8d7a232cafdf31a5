"""The job's own Python environment, built with uv only when the code asks for packages.

``requirements.txt`` at the root of the code directory, or a ``setup.py`` there (the toolkit's
PYTHON_PACKAGE type), makes a per-job virtual environment at ``<root>/venv``; nothing is ever installed
into the interpreter that runs trainforge. The environment is created with ``--system-site-packages`` on
the job's base interpreter, and when that interpreter is itself a virtual environment its
``site-packages`` are added through a ``.pth`` file (with their own ``.pth`` files, e.g. editable
installs), so everything the base environment has stays importable while the job's requirements take
precedence. On an image environment (:mod:`trainforge.runtime.envcache`) the job's environment is instead a
hard-linked clone of it (``clone_from``), so uv sees the image's packages as installed, exactly as pip in a
SageMaker container sees the image's. Environments are created relocatable and installs byte-compile, so
imports do not recompile on every run.

pip's settings are passed to uv (which ignores them): from pip's config files and ``PIP_*`` environment
variables, index URL, extra index URLs and find-links become ``UV_INDEX_URL``, ``UV_EXTRA_INDEX_URL`` and
``UV_FIND_LINKS`` unless those are set already; with extra index URLs, ``UV_INDEX_STRATEGY=unsafe-best-match``
too, because pip picks the best version across all indexes while uv's default stops at the first index that
has the package (a local mirror with only the newest release would otherwise hide every pinned version).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from uv import find_uv_bin

from trainforge.runtime.failure import (
    DiskPhase,
    algorithm_error,
    disk_full,
    disk_full_line,
    internal_error,
    is_disk_full,
    mentions_disk_full,
)
from trainforge.runtime.process import LineSink, run_logged

UV_ERROR_LINES = 15
PTH_NAME = "_trainforge_base_env.pth"


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in increasing priority (global, user, ``PIP_CONFIG_FILE``)."""
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    home = Path(env.get("HOME", str(Path.home())))
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pip" / "pip.conf")
    if env.get("PIP_CONFIG_FILE") and env["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def pip_settings(env: Mapping[str, str]) -> dict[str, list[str]]:
    """pip's ``index-url``, ``extra-index-url``, ``find-links`` and ``cert`` (its CA bundle), as lists of locations.

    Config files are read in pip's order (``[global]`` then ``[install]``), and ``PIP_*`` environment
    variables win over them. ``PIP_CONFIG_FILE=/dev/null`` disables the files, as in pip.
    """
    settings: dict[str, list[str]] = {}
    if env.get("PIP_CONFIG_FILE") != os.devnull:
        for path in pip_config_files(env):
            parser = configparser.RawConfigParser()
            try:
                parser.read(path, encoding="utf-8")
            except (configparser.Error, OSError, UnicodeDecodeError):
                continue
            for section in ("global", "install"):
                if not parser.has_section(section):
                    continue
                for key in ("index-url", "extra-index-url", "find-links", "cert"):
                    if parser.has_option(section, key):
                        settings[key] = parser.get(section, key).split()
    for key, var in (
        ("index-url", "PIP_INDEX_URL"),
        ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
        ("find-links", "PIP_FIND_LINKS"),
        ("cert", "PIP_CERT"),
    ):
        if env.get(var, "").strip():
            settings[key] = env[var].split()
    return settings


def uv_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the ``UV_*`` variables that carry pip's settings (existing ``UV_*`` values win)."""
    out = dict(env)
    settings = pip_settings(env)
    if settings.get("index-url"):
        out.setdefault("UV_INDEX_URL", settings["index-url"][0])
    if settings.get("extra-index-url"):
        out.setdefault("UV_EXTRA_INDEX_URL", " ".join(settings["extra-index-url"]))
        out.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
    if settings.get("find-links"):
        out.setdefault("UV_FIND_LINKS", ",".join(settings["find-links"]))
    return out


def venv_python(venv: Path) -> Path:
    """The interpreter of the virtual environment ``venv``."""
    return venv / "bin" / "python"


def _base_site_dirs(python: str) -> list[str]:
    """``site-packages`` directories of ``python`` when it runs inside a virtual environment, else []."""
    probe = "import json, site, sys\nprint(json.dumps(site.getsitepackages() if sys.prefix != sys.base_prefix else []))"
    try:
        done = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=True)
        dirs = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []
    return [d for d in dirs if isinstance(d, str)]


def _venv_site_dir(venv: Path) -> Path | None:
    found = sorted((venv / "lib").glob("python*/site-packages"))
    return found[0] if found else None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def clone_venv(source: Path, target: Path) -> None:
    """Copy the relocatable virtual environment ``source`` to ``target`` with hard links (copies across
    file systems). Installing into or removing from the clone never changes ``source``: uv and pip replace
    files rather than writing into them."""
    shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)


def run_uv(
    cmd: list[str], *, cwd: Path, env: Mapping[str, str], sink: LineSink, should_stop: Callable[[], bool]
) -> tuple[int, bool, str]:
    """Run a uv command, forwarding its output to ``sink``.

    Returns ``(returncode, stopped, tail)``: ``tail`` is uv's last :data:`UV_ERROR_LINES` lines (what a
    FailureReason quotes). Raises :class:`~trainforge.runtime.failure.JobFailed` (InternalServerError) when uv
    cannot be started.
    """
    tail: deque[str] = deque(maxlen=UV_ERROR_LINES)

    def forward(stream: str, line: str) -> None:
        tail.append(line)
        sink(stream, line)

    try:
        rc, stopped = run_logged(cmd, cwd=cwd, env=env, sink=forward, should_stop=should_stop)
    except OSError as exc:
        raise internal_error(f"cannot run uv ({cmd[0]}): {exc}") from None
    return rc, stopped, "\n".join(tail).strip() or f"uv exited with code {rc}"


class JobEnvironment:
    """Builds the per-job environment at ``venv`` on ``base_python``, logging uv's output to ``sink``.

    Each step raises :class:`~trainforge.runtime.failure.JobFailed` on failure: ``AlgorithmError:
    InstallRequirementsError: ...`` / ``InstallModuleError: ...`` with uv's last lines of output, or
    ``InternalServerError: Environment build failed:Insufficient disk space ...`` when the disk is full.
    """

    def __init__(
        self,
        *,
        venv: Path,
        base_python: str,
        env: Mapping[str, str],
        sink: LineSink,
        should_stop: Callable[[], bool],
        clone_from: Path | None = None,
    ) -> None:
        self.venv = venv
        self.base_python = base_python
        self.clone_from = clone_from
        self._env = uv_environment(env)
        self._sink = sink
        self._should_stop = should_stop
        self._uv = find_uv_bin()

    @property
    def python(self) -> str:
        """The environment's interpreter."""
        return str(venv_python(self.venv))

    def _run(self, cmd: list[str], cwd: Path, error_kind: str) -> None:
        rc, stopped, tail = run_uv(cmd, cwd=cwd, env=self._env, sink=self._sink, should_stop=self._should_stop)
        if not stopped and rc != 0:
            if mentions_disk_full(tail):
                what = f"installing the code's requirements into {self.venv} (uv: {disk_full_line(tail)})"
                raise disk_full(DiskPhase.ENVIRONMENT, what, self.venv.parent)
            raise algorithm_error(f"{error_kind}: {tail}")

    def create(self, cwd: Path) -> None:
        """Create the virtual environment (once; a second call does nothing): a clone of ``clone_from``, or a
        new environment on ``base_python`` that sees the base's packages."""
        if venv_python(self.venv).exists():
            return
        if self.clone_from is not None:
            self._sink("stdout", f"Creating the job's Python environment at {self.venv} from {self.clone_from}")
            try:
                clone_venv(self.clone_from, self.venv)
            except (OSError, shutil.Error) as exc:
                if not is_disk_full(exc) and not mentions_disk_full(str(exc)):
                    raise
                shutil.rmtree(self.venv, ignore_errors=True)
                what = f"cloning the environment {self.clone_from} into {self.venv}"
                raise disk_full(DiskPhase.ENVIRONMENT, what, self.venv.parent) from None
            return
        self._sink("stdout", f"Creating the job's Python environment at {self.venv}")
        cmd = [
            self._uv,
            "venv",
            "--relocatable",
            "--system-site-packages",
            "--python",
            self.base_python,
            str(self.venv),
        ]
        self._run(cmd, cwd, "InstallRequirementsError")
        if self._should_stop():
            return
        site_dir = _venv_site_dir(self.venv)
        base_dirs = _base_site_dirs(self.base_python)
        if site_dir is not None and base_dirs:
            # An ``import`` line runs site.addsitedir, which also processes the base's own .pth files
            # (editable installs); plain path lines would not.
            lines = [f"import site; site.addsitedir({d!r})" for d in base_dirs]
            (site_dir / PTH_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def install_requirements(self, code_dir: Path) -> None:
        """``uv pip install -r requirements.txt`` into the environment, run in ``code_dir``."""
        self.create(code_dir)
        if self._should_stop():
            return
        self._sink("stdout", "Installing requirements from requirements.txt")
        cmd = [self._uv, "pip", "install", "--compile-bytecode", "--python", self.python, "-r", "requirements.txt"]
        self._run(cmd, code_dir, "InstallRequirementsError")

    def install_locked(self, code_dir: Path, lock: Path) -> None:
        """``uv pip install --require-hashes --no-deps -r <lock>``: exactly the packages of a resolution (every
        package pinned with hashes), nothing resolved; run in ``code_dir``."""
        self.create(code_dir)
        if self._should_stop():
            return
        self._sink("stdout", f"Installing requirements from requirements.txt as resolved in {lock.name}")
        cmd = [self._uv, "pip", "install", "--compile-bytecode", "--require-hashes", "--no-deps"]
        self._run([*cmd, "--python", self.python, "-r", str(lock)], code_dir, "InstallRequirementsError")

    def install_package(self, code_dir: Path) -> None:
        """``uv pip install .`` (the code directory as a package, plus its requirements.txt if any)."""
        self.create(code_dir)
        if self._should_stop():
            return
        self._sink("stdout", "Installing the code directory as a package (setup.py)")
        cmd = [self._uv, "pip", "install", "--compile-bytecode", "--python", self.python, "."]
        if (code_dir / "requirements.txt").is_file():
            cmd += ["-r", "requirements.txt"]
        self._run(cmd, code_dir, "InstallModuleError")
