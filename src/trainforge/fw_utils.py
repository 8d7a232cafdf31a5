"""Packaging of a training script's code as ``sourcedir.tar.gz`` (reference §2.1, §2.5).

Every top-level entry of ``source_dir`` (or the lone entry point) and every ``dependencies`` path lands at
the archive root; symlinks are followed. Checks run before anything is written or uploaded.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainforge import archives
from trainforge.errors import ValidationError
from trainforge.spec.contract import SOURCE_ARCHIVE
from trainforge.storage import ObjectStore


@dataclass(frozen=True)
class UploadedCode:
    """Where a job's code is and which script to run.

    Attributes:
        s3_prefix: URI of the ``sourcedir.tar.gz`` (the ``sagemaker_submit_directory`` value).
        script_name: The entry point, relative to the archive root.
    """

    s3_prefix: str
    script_name: str


def _is_remote(path: str | None) -> bool:
    return bool(path) and str(path).lower().startswith("s3://")


def validate_source_code(
    entry_point: str | None, source_dir: str | None, dependencies: Sequence[str] | None = None
) -> None:
    """Check that the code to package exists, as SageMaker's ``validate_source_dir`` and more.

    Raises:
        ValidationError: ``entry_point`` is missing or not inside ``source_dir`` (field ``entry_point``),
            ``source_dir`` is not a directory (field ``source_dir``), or a dependency does not exist
            (field ``dependencies``).
    """
    if entry_point and _is_remote(entry_point):
        raise ValidationError(
            f"entry_point: {entry_point!r} must be a local path (relative to source_dir), not an s3:// URI",
            field="entry_point",
        )
    if source_dir and not _is_remote(source_dir):
        if not Path(source_dir).is_dir():
            raise ValidationError(f"source_dir: {source_dir!r} is not a directory", field="source_dir")
        if entry_point and not (Path(source_dir) / entry_point).is_file():
            raise ValidationError(
                f'entry_point: No file named "{entry_point}" was found in directory "{source_dir}".',
                field="entry_point",
            )
    elif entry_point and not source_dir and not Path(entry_point).is_file():
        raise ValidationError(f"entry_point: no file named {entry_point!r} was found", field="entry_point")
    for dep in dependencies or []:
        if not Path(dep).exists():
            raise ValidationError(f"dependencies: {dep!r} does not exist", field="dependencies")


def files_to_compress(script: str | None, directory: str | None, dependencies: Sequence[str] | None) -> list[Path]:
    """The paths whose basenames become the archive's top-level entries, in archive order."""
    if directory:
        base = Path(directory)
        files = [base / name for name in sorted(os.listdir(base))]
    elif script:
        files = [Path(script)]
    else:
        files = []
    return files + [Path(dep) for dep in dependencies or []]


def create_tar_file(source_files: Sequence[Path], target: Path) -> Path:
    """Write a gzip tar of ``source_files`` to ``target``, each under its basename (symlinks followed)."""
    with archives.create(target, dereference=True) as archive:
        for path in source_files:
            archive.add(str(path), arcname=path.name)
    return target


def tar_and_upload_dir(
    store: ObjectStore,
    bucket: str,
    s3_key_prefix: str,
    script: str,
    directory: str | None = None,
    dependencies: Sequence[str] | None = None,
) -> UploadedCode:
    """Package the code and store it at ``s3://<bucket>/<s3_key_prefix>/sourcedir.tar.gz``.

    A ``directory`` that is already an ``s3://`` archive is used as is (nothing uploaded). The script
    name is ``script`` as given when a directory is used, else its basename.

    Raises:
        ValidationError: The code does not exist (checked before anything is written).
    """
    if directory and _is_remote(directory):
        return UploadedCode(s3_prefix=directory, script_name=script)
    validate_source_code(script, directory, dependencies)
    script_name = script if directory else os.path.basename(script)
    key = "/".join(p for p in (s3_key_prefix.strip("/"), SOURCE_ARCHIVE) if p)
    uri = f"s3://{bucket}/{key}"
    with tempfile.TemporaryDirectory(prefix="trainforge-code-") as tmp:
        archive = create_tar_file(files_to_compress(script, directory, dependencies), Path(tmp) / SOURCE_ARCHIVE)
        store.put_file(uri, archive)
    return UploadedCode(s3_prefix=uri, script_name=script_name)


def git_clone_repo(
    git_config: Mapping[str, Any],
    entry_point: str,
    source_dir: str | None = None,
    dependencies: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Clone ``git_config["repo"]`` (optionally ``branch`` and ``commit``) and resolve paths inside it.

    Returns ``{"entry_point", "source_dir", "dependencies"}`` pointing into the clone. Credentials in
    ``git_config`` are not used: use an SSH URL or a git credential helper.

    Raises:
        ValidationError: ``repo`` is missing, credentials were given, or git failed (field ``git_config``).
    """
    repo = git_config.get("repo")
    if not repo:
        raise ValidationError("git_config: 'repo' is required", field="git_config")
    if any(git_config.get(k) for k in ("username", "password", "token")):
        raise ValidationError(
            "git_config: username/password/token are not supported; use an SSH URL or a git credential helper",
            field="git_config",
        )
    dest = tempfile.mkdtemp(prefix="trainforge-git-")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    commands = [["git", "clone", "--quiet", str(repo), dest]]
    if git_config.get("branch"):
        commands[0][2:2] = ["--branch", str(git_config["branch"])]
    if git_config.get("commit"):
        commands.append(["git", "-C", dest, "checkout", "--quiet", str(git_config["commit"])])
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        except OSError as exc:
            raise ValidationError(f"git_config: cannot run git: {exc}", field="git_config") from None
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            detail = lines[-1] if lines else f"exit code {result.returncode}"
            raise ValidationError(f"git_config: {' '.join(command[:2])} failed: {detail}", field="git_config")
    root = Path(dest)
    return {
        "entry_point": entry_point if source_dir else str(root / entry_point),
        "source_dir": str(root / source_dir) if source_dir else None,
        "dependencies": [str(root / dep) for dep in dependencies or []],
    }
