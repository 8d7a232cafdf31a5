"""Putting the user's code into ``opt/ml/code`` (reference §1.4 step 5, §2.1).

The code comes from the ``sagemaker_submit_directory`` hyperparameter: an ``s3://`` or local
``sourcedir.tar.gz``, or a local directory (``file://`` or plain path), which is copied. An archive is
checked member by member **before anything is written**: absolute names, ``..`` components, members
under a symlink of the archive, links resolving outside the code directory, and device or FIFO members
reject the whole archive. Extraction then runs with ``tarfile``'s ``data`` filter as a second guard. A gzip'd
archive is decompressed with ISA-L (:func:`trainforge.archives.open_archive`).
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from trainforge.archives import open_archive
from trainforge.errors import TrainforgeError
from trainforge.runtime.failure import client_error
from trainforge.storage import ObjectStore


def _problem(member: tarfile.TarInfo, dest: Path, symlinks: set[str]) -> str | None:
    """Why ``member`` may not be extracted into ``dest``, or None if it is safe."""
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        return "has an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "has a '..' path component"
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in symlinks:
            return "lies under a symbolic link of the archive"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "is a device or special file"
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/") or _escapes(member, dest):
            return f"is a link pointing outside the code directory ({target})"
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.AbsolutePathError:
        return "has an absolute path"
    except tarfile.OutsideDestinationError:
        return "would be written outside the code directory"
    except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
        return f"is a link pointing outside the code directory ({member.linkname})"
    except tarfile.SpecialFileError:
        return "is a device or special file"
    except tarfile.FilterError as exc:
        return f"is not allowed ({exc})"
    return None


def _escapes(member: tarfile.TarInfo, dest: Path) -> bool:
    base = dest if member.islnk() else dest / PurePosixPath(member.name).parent
    resolved = (base / member.linkname).resolve()
    return not resolved.is_relative_to(dest.resolve())


def check_archive(tar: tarfile.TarFile, dest: Path, label: str) -> list[tarfile.TarInfo]:
    """Every member of ``tar`` if all are safe to extract into ``dest``; else raise :class:`JobFailed`
    ``ClientError: source archive <label>: member '<name>' <problem>`` for the first bad one."""
    members = []
    symlinks: set[str] = set()
    for member in tar.getmembers():
        problem = _problem(member, dest, symlinks)
        if problem is not None:
            raise client_error(f"source archive {label}: member '{member.name}' {problem}")
        if member.issym():
            symlinks.add(member.name.rstrip("/"))
        members.append(member)
    return members


def extract_archive(archive: Path, dest: Path, label: str) -> int:
    """Check, then extract the tar(.gz) ``archive`` into ``dest``; return the number of members.

    Nothing is written when any member is rejected.
    """
    dest = dest.resolve()
    try:
        with open_archive(archive) as tar:
            members = check_archive(tar, dest, label)
            try:
                tar.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as exc:
                _empty(dest)
                raise client_error(f"source archive {label}: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise client_error(f"source archive {label} is not a readable tar.gz archive: {exc}") from None
    except OSError as exc:
        raise client_error(f"source archive {label}: {exc}") from None
    return len(members)


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def fetch_source(
    store: ObjectStore,
    location: str,
    code_dir: Path,
    tmp_dir: Path,
    *,
    on_archive: Callable[[str, Path], None] | None = None,
) -> str:
    """Fill ``code_dir`` from ``location`` (``s3://``, ``file://`` or a local path; tarball or directory).

    ``on_archive(location, path)`` is called with the archive as fetched, before it is extracted (a directory
    source has none), e.g. to fingerprint the code. Returns a short description for the job log. Raises
    :class:`JobFailed` with a ``ClientError`` when the code cannot be fetched or the archive is unsafe.
    """
    if location.startswith("s3://"):
        archive = tmp_dir / "sourcedir.tar.gz"
        try:
            store.download_file(location, archive)
        except TrainforgeError as exc:
            raise client_error(f"cannot download source code {location}: {exc.message}") from None
        try:
            if on_archive is not None:
                on_archive(location, archive)
            count = extract_archive(archive, code_dir, location)
        finally:
            archive.unlink(missing_ok=True)
        return f"extracted {count} entries from {location}"
    path = Path(location[len("file://") :] if location.startswith("file://") else location)
    if path.is_dir():
        try:
            shutil.copytree(path, code_dir, symlinks=True, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:
            raise client_error(f"cannot copy source directory {location}: {exc}") from None
        return f"copied source directory {path}"
    if path.is_file():
        if on_archive is not None:
            on_archive(location, path)
        count = extract_archive(path, code_dir, location)
        return f"extracted {count} entries from {path}"
    raise client_error(f"source code {location} does not exist")
