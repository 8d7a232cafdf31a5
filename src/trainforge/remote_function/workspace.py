"""The job's workspace: the invoke script, optionally the caller's working directory, dependencies and
pre-execution commands, packed as the job's ``sourcedir.tar.gz``."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from trainforge import archives
from trainforge.errors import ValidationError

INVOKE_SCRIPT = "trainforge_remote_invoke.py"
REQUIREMENTS = "requirements.txt"
PRE_EXEC = "pre_exec.sh"

IgnoreFn = Callable[[str, list[str]], Iterable[str]]


class CustomFileFilter:
    """Which files of the working directory to ship: everything except names matching ``ignore_name_patterns``."""

    def __init__(self, *, ignore_name_patterns: Sequence[str] | None = None) -> None:
        self.ignore_name_patterns = list(ignore_name_patterns or [])

    def __call__(self, directory: str, names: list[str]) -> list[str]:
        return [n for n in names if any(fnmatch.fnmatch(n, p) for p in self.ignore_name_patterns)]


def _default_filter(directory: str, names: list[str]) -> list[str]:
    """SageMaker's default: only ``*.py`` files (and the directories holding them), never caches, and nothing that
    is neither a file nor a directory (a socket or FIFO, e.g. a server's under a home in the working directory)."""
    ignored = []
    for name in names:
        skipped_dir = name in ("__pycache__", ".git", ".venv", "venv", "node_modules") or name.startswith(".")
        path = Path(directory) / name
        python_file = path.is_file() and name.endswith(".py")
        if skipped_dir or not (python_file or path.is_dir()):
            ignored.append(name)
    return ignored


def auto_capture_requirements() -> str:
    """Pinned requirements of the caller's installed distributions (editable/local installs left out)."""
    lines = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() in ("trainforge", "pip", "setuptools", "wheel"):
            continue
        direct = dist.read_text("direct_url.json") or ""
        if '"url": "file:' in direct or '"editable": true' in direct:
            continue
        lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def build_workspace(
    target: Path,
    *,
    include_local_workdir: bool,
    custom_file_filter: IgnoreFn | CustomFileFilter | None,
    dependencies: str | None,
    pre_execution_commands: Sequence[str] | None,
    pre_execution_script: str | None,
    extra_requirements: Sequence[str] = (),
    workdir: Path | None = None,
) -> Path:
    """Write ``target`` (a ``sourcedir.tar.gz``) holding the invoke script and what the caller asked to ship.

    Raises :class:`ValidationError` naming the parameter for a missing dependencies file or pre-exec script, or
    for both pre-execution forms at once.
    """
    if pre_execution_commands and pre_execution_script:
        raise ValidationError(
            "pre_execution_commands: give either pre_execution_commands or pre_execution_script, not both",
            field="pre_execution_commands",
        )
    staging = target.parent / "workspace"
    if staging.exists():
        shutil.rmtree(staging)
    if include_local_workdir:
        shutil.copytree(
            workdir or Path.cwd(),
            staging,
            ignore=custom_file_filter or _default_filter,
            dirs_exist_ok=False,
            symlinks=False,
        )
    else:
        staging.mkdir(parents=True)
    shutil.copyfile(Path(__file__).with_name("invoke.py"), staging / INVOKE_SCRIPT)
    requirements = ""
    if dependencies == "auto_capture":
        requirements = auto_capture_requirements()
    elif dependencies:
        path = Path(dependencies)
        if not path.is_file():
            raise ValidationError(
                f"dependencies: {dependencies!r} is not a file (a requirements.txt path or 'auto_capture')",
                field="dependencies",
            )
        if path.name.endswith((".yml", ".yaml")):
            raise ValidationError(
                "dependencies: conda environment files are not supported; give a requirements.txt", field="dependencies"
            )
        requirements = path.read_text()
    if extra_requirements:
        requirements = requirements.rstrip("\n") + ("\n" if requirements else "") + "\n".join(extra_requirements) + "\n"
    if requirements.strip():
        (staging / REQUIREMENTS).write_text(requirements)
    elif (staging / REQUIREMENTS).exists():
        (staging / REQUIREMENTS).unlink()  # a workdir requirements.txt is not a dependency unless named
    if pre_execution_script:
        script = Path(pre_execution_script)
        if not script.is_file():
            raise ValidationError(
                f"pre_execution_script: {pre_execution_script!r} is not a file", field="pre_execution_script"
            )
        shutil.copyfile(script, staging / PRE_EXEC)
    elif pre_execution_commands:
        (staging / PRE_EXEC).write_text("set -eu\n" + "\n".join(pre_execution_commands) + "\n")
    with archives.create(target) as tar:
        for path in sorted(staging.rglob("*")):
            tar.add(path, arcname=os.path.relpath(path, staging), recursive=False)
    shutil.rmtree(staging)
    return target
