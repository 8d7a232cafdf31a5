"""Self-contained models: a ``model.tar.gz`` repacked with its inference code under ``code/`` (reference §7.3).

SageMaker repacks only some framework models (``utils.repack_model``); trainforge repacks every framework model,
so a ``model.tar.gz`` and an image are all it takes to serve. Archives are streamed member by member from files
on disk into the object store (:mod:`trainforge.archives`, :func:`~trainforge.storage.writer.object_writer`):
neither the model nor the code is ever held in memory whole, and the repacked archive is written once.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainforge.archives import create, open_archive
from trainforge.errors import ValidationError
from trainforge.fw_utils import validate_source_code
from trainforge.storage import ObjectStore
from trainforge.storage.writer import object_writer

CODE_DIR = "code"


def _relative(name: str) -> str:
    """A member name without a leading ``./`` or ``/`` (``./code/x.py`` -> ``code/x.py``)."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _is_code(name: str) -> bool:
    rel = _relative(name)
    return rel == CODE_DIR or rel.startswith(CODE_DIR + "/")


def _copy_members(source: Path, out: tarfile.TarFile, *, prefix: str = "", skip_code: bool = False) -> None:
    """Stream every member of the archive ``source`` into ``out`` (names under ``prefix``), in order."""
    with open_archive(source, stream=True) as archive:
        for member in archive:
            rel = _relative(member.name)
            if not rel or rel == "." or (skip_code and _is_code(member.name)):
                continue
            member.name = f"{prefix}{rel}"
            if member.islnk():
                member.linkname = f"{prefix}{_relative(member.linkname)}"
            data = archive.extractfile(member) if member.isfile() else None
            out.addfile(member, data)


def _check_sources(model_data: object, entry_point: str, source_dir: str | None, dependencies: Sequence[str]) -> str:
    if not isinstance(model_data, str) or not model_data.startswith("s3://"):
        raise ValidationError(
            f"model_data: a framework model needs the s3:// URI of a model.tar.gz to pack its code into, got "
            f"{model_data!r}",
            field="model_data",
        )
    remote_source = bool(source_dir) and str(source_dir).startswith("s3://")
    if remote_source:  # the entry point is inside the archive; only the dependencies are local
        validate_source_code(None, None, dependencies)
    else:
        validate_source_code(entry_point, source_dir, dependencies)
    return model_data


def repack_model(
    store: ObjectStore,
    model_data: str | Mapping[str, Any] | None,
    target_uri: str,
    *,
    entry_point: str,
    source_dir: str | None = None,
    dependencies: Sequence[str] | None = None,
) -> str:
    """Write ``model_data`` with the inference code under ``code/`` to ``target_uri`` and return ``target_uri``.

    The model's own entries are kept as they are, except an existing ``code/`` tree, which the new code replaces.
    The code is every top-level entry of ``source_dir`` (a local directory, or the ``s3://`` URI of a
    ``sourcedir.tar.gz``), or the lone ``entry_point`` file when there is no ``source_dir``; each ``dependencies``
    path lands under ``code/lib/``. Symlinks in local code are followed.

    Raises:
        ValidationError: ``model_data`` is not an ``s3://`` URI or names no object (field ``model_data``), or the
            code does not exist (field ``entry_point``, ``source_dir`` or ``dependencies``); checked before
            anything is written.
    """
    deps = list(dependencies or [])
    model_uri = _check_sources(model_data, entry_point, source_dir, deps)
    if not store.exists(model_uri):
        raise ValidationError(
            f"model_data: no model.tar.gz at {model_uri}; check the URI (a training job's is its "
            "ModelArtifacts.S3ModelArtifacts)",
            field="model_data",
        )
    with tempfile.TemporaryDirectory(prefix="trainforge-repack-") as tmp:
        work = Path(tmp)
        model = work / "model.tar.gz"
        store.download_file(model_uri, model)
        remote_code: Path | None = None
        if source_dir and source_dir.startswith("s3://"):
            remote_code = work / "sourcedir.tar.gz"
            store.download_file(source_dir, remote_code)
        with object_writer(store, target_uri) as stream, create(stream, dereference=True) as out:
            _copy_members(model, out, skip_code=True)
            if remote_code is not None:
                _copy_members(remote_code, out, prefix=f"{CODE_DIR}/")
            elif source_dir:
                for name in sorted(os.listdir(source_dir)):
                    out.add(os.path.join(source_dir, name), arcname=f"{CODE_DIR}/{name}")
            else:
                out.add(entry_point, arcname=f"{CODE_DIR}/{os.path.basename(entry_point)}")
            for dep in deps:
                out.add(dep, arcname=f"{CODE_DIR}/lib/{os.path.basename(os.path.normpath(dep))}")
    return target_uri


__all__ = ["CODE_DIR", "repack_model"]
