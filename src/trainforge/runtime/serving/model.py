"""The model an endpoint or transform instance serves: ``ModelDataUrl`` fetched and unpacked read-only.

``ModelDataUrl`` is a ``model.tar.gz`` (checked member by member before anything is written, like source archives:
:func:`trainforge.runtime.sourcecode.extract_archive`), or an ``s3://`` prefix ending in ``/`` whose objects are
the model's files (``CompressionType: NONE`` artifacts). The unpacked directory and its files lose their write bits;
the sandbox also binds it read-only at ``/opt/ml/model``.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from trainforge.errors import NotFoundError, PermissionDeniedError, TrainforgeError
from trainforge.runtime.failure import JobFailed, client_error
from trainforge.runtime.sourcecode import extract_archive
from trainforge.storage import ObjectStore

CLIENT_PREFIX = "ClientError: "


def fetch_model(store: ObjectStore, uri: str, model_dir: Path, tmp_dir: Path) -> str:
    """Fill ``model_dir`` from ``uri`` and make it read-only; return a line for the log.

    Raises:
        JobFailed: ``ClientError: Could not find model data at <uri>`` when there is nothing there, or a clear
            reason naming ``uri`` when it cannot be read or unpacked.
    """
    if not uri:
        raise client_error("the model has no ModelDataUrl: give PrimaryContainer.ModelDataUrl (a model.tar.gz)")
    if model_dir.exists():  # left by an earlier run on this root: start afresh
        make_writable(model_dir)
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if uri.endswith("/"):
        count = _fetch_prefix(store, uri, model_dir)
        make_read_only(model_dir)
        return f"Model data: {count} file(s) from {uri}"
    archive = tmp_dir / "model.tar.gz"
    try:
        store.download_file(uri, archive)
    except NotFoundError:
        raise client_error(f"Could not find model data at {uri}") from None
    except PermissionDeniedError as exc:
        raise client_error(f"cannot read model data at {uri}: {exc.message}") from None
    except TrainforgeError as exc:
        raise client_error(f"cannot download model data at {uri}: {exc.message}") from None
    size = archive.stat().st_size
    try:
        count = extract_archive(archive, model_dir, uri)
    except JobFailed as failed:
        detail = failed.reason.removeprefix(CLIENT_PREFIX).replace("source archive ", "", 1)
        raise client_error(f"model data {detail}") from None
    finally:
        archive.unlink(missing_ok=True)
    make_read_only(model_dir)
    return f"Model data: {count} entries ({size} bytes) unpacked from {uri}"


def _fetch_prefix(store: ObjectStore, prefix: str, model_dir: Path) -> int:
    try:
        objects = list(store.list(prefix))
    except TrainforgeError as exc:
        raise client_error(f"cannot list model data at {prefix}: {exc.message}") from None
    if not objects:
        raise client_error(f"Could not find model data at {prefix}")
    base = prefix[len("s3://") :].split("/", 1)[1] if prefix.count("/") > 2 else ""
    for info in objects:
        relative = info.key[len(base) :] if info.key.startswith(base) else info.key
        parts = [p for p in relative.split("/") if p]
        if not parts or ".." in parts:
            continue
        target = model_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.download_file(info.uri, target)
        except TrainforgeError as exc:
            raise client_error(f"cannot download model data {info.uri}: {exc.message}") from None
    return len(objects)


def make_read_only(directory: Path) -> None:
    """Remove every write bit under ``directory`` (itself included)."""
    write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for current, dirs, files in os.walk(directory, topdown=False):
        for name in [*files, *dirs]:
            path = Path(current) / name
            if path.is_symlink():
                continue
            path.chmod(path.stat().st_mode & ~write_bits)
    directory.chmod(directory.stat().st_mode & ~write_bits)


def make_writable(directory: Path) -> None:
    """Give the owner back write access under ``directory`` (so a job root can be removed)."""
    if not directory.exists():
        return
    for current, dirs, _ in os.walk(directory):
        for name in dirs:
            path = Path(current) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    directory.chmod(directory.stat().st_mode | stat.S_IWUSR)
