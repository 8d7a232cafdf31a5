"""Packaging and publishing a job's artifacts (reference §7.1).

``model.tar.gz`` holds the **contents** of ``opt/ml/model`` at the archive root (no ``model/`` prefix) and
``output.tar.gz`` the contents of ``opt/ml/output/data``; both go to ``<S3OutputPath>/<job>/output/``.
Archives are standard gzip written with ISA-L at level 1 (:mod:`trainforge.archives`) and streamed straight into
their destination as they are made: the object store's ``put_stream`` (the local store writes a temporary file
next to the object and renames it; S3 uploads parts) or, for a ``file://`` output path, a temporary file next to
the target, renamed when complete. Nothing is written twice and no space next to the job's files is needed; an
artifact appears only when complete. The model's content hash is computed from the bytes as they are archived.
With ``OutputDataConfig.CompressionType = NONE`` the files are stored one by one under
``<S3OutputPath>/<job>/output/model/`` and ``.../output/data/`` instead.

A Completed job always stores its model, even an empty one; a Failed or Stopped job whose model directory is empty
stores none (``empty_model=False``), and its description then has no ``ModelArtifacts``.

A full disk fails the job with SageMaker's ``Artifact upload failed:Insufficient disk space`` words
(:func:`~trainforge.runtime.failure.disk_full`): a ``ClientError`` when the archive does not fit in a ``file://``
output path, an ``InternalServerError`` when the object store's own volume is full. No partial object or temporary
file is left either way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from trainforge import archives
from trainforge.errors import TrainforgeError
from trainforge.runtime.failure import DiskPhase, disk_full, is_disk_full
from trainforge.runtime.lineage import contents_sha256, tree_content_sha256
from trainforge.spec import contract
from trainforge.storage import ObjectStore, s3_join
from trainforge.storage.writer import object_writer


def make_archive(src_dir: Path, dest: Path | IO[bytes], *, contents: archives.Contents | None = None) -> int:
    """Write a ``tar.gz`` of the contents of ``src_dir`` (entries at the archive root, sorted) to ``dest``.

    Symbolic links are stored as links, not followed. Returns the number of top-level entries; an empty
    or missing directory gives a valid empty archive. ``contents`` collects what the content hash needs.
    """
    return archives.write_archive(src_dir, dest, contents=contents)


def _file_target(uri: str) -> Path:
    return Path(uri[len("file://") :])


@contextmanager
def _local_file(target: Path) -> Iterator[IO[bytes]]:
    """A file that becomes ``target`` (fsync'd, renamed over it) when the block ends without an exception; on an
    exception it is removed and ``target`` is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _destination(store: ObjectStore, uri: str) -> Iterator[IO[bytes]]:
    """Where an archive is written as it is made: the object at ``uri``, or the ``file://`` path."""
    if uri.startswith("file://"):
        with _local_file(_file_target(uri)) as out:
            yield out
    else:
        with object_writer(store, uri) as out:
            yield out


def publish_file(store: ObjectStore, uri: str, path: Path) -> None:
    """Store the file ``path`` at ``uri`` (``s3://`` via the object store, ``file://`` as an atomic copy).

    Raises :class:`~trainforge.runtime.failure.JobFailed` when the destination's disk is full (``ClientError``
    for a ``file://`` path, ``InternalServerError`` for the object store), else the store's errors or ``OSError``.
    """
    try:
        _publish_file(store, uri, path)
    except (TrainforgeError, OSError) as exc:
        if not is_disk_full(exc):
            raise
        if uri.startswith("file://"):
            target = Path(uri[len("file://") :])
            raise disk_full(DiskPhase.UPLOAD, f"copying {path.stat().st_size} bytes to {uri}", target.parent) from None
        raise disk_full(
            DiskPhase.STORE, f"storing {uri} ({path.stat().st_size} bytes) in the object store", None
        ) from None


def _publish_file(store: ObjectStore, uri: str, path: Path) -> None:
    if uri.startswith("file://"):
        with _local_file(_file_target(uri)) as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
        return
    store.put_file(uri, path)


@dataclass(frozen=True)
class Artifact:
    """One published artifact: where it went, how many top-level entries or files it holds, and which it is
    (``model`` or ``output``; empty when the caller did not say). ``content_sha256`` is the model's content hash
    (:func:`~trainforge.runtime.lineage.archive_content_sha256`; None for output data)."""

    uri: str
    entries: int
    kind: str = ""
    content_sha256: str | None = None


def is_empty_dir(path: Path) -> bool:
    """Whether ``path`` holds nothing (a missing directory holds nothing)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except (FileNotFoundError, NotADirectoryError):
        return True


def output_prefix(output_path: str, job_name: str) -> str:
    """``<S3OutputPath>/<job>/output`` (no trailing slash; a trailing slash on the path changes nothing)."""
    return s3_join(output_path, job_name, "output")


def publish_archive(store: ObjectStore, src_dir: Path, uri: str, *, content_hash: bool = False) -> Artifact:
    """Archive ``src_dir`` straight into ``uri`` (see the module doc); with ``content_hash`` the artifact carries the
    content hash of what was archived.

    Raises :class:`~trainforge.runtime.failure.JobFailed` for a full disk (see the module doc), else the store's
    errors or ``OSError``.
    """
    contents = archives.Contents() if content_hash else None
    try:
        with _destination(store, uri) as out:
            entries = make_archive(src_dir, out, contents=contents)
    except (TrainforgeError, OSError) as exc:
        if not is_disk_full(exc):
            raise
        what = f"packaging {uri.rsplit('/', 1)[-1]} from {src_dir} ({tree_bytes(src_dir)} bytes) into {uri}"
        if uri.startswith("file://"):
            where = _file_target(uri).parent
            fix = (
                f"Please make sure the output path has room for the archive (about the size of the files): free "
                f"space under {where}, use an s3:// output path, or write a smaller model"
            )
            raise disk_full(DiskPhase.UPLOAD, what, where, fix=fix) from None
        raise disk_full(DiskPhase.STORE, f"{what} (the object store)", None) from None
    digest = contents_sha256(contents.files, contents.links) if contents is not None else None
    return Artifact(uri, entries, content_sha256=digest)


def tree_bytes(root: Path) -> int:
    """The total size of the regular files under ``root`` (0 when it is missing)."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total


def publish_tree(store: ObjectStore, src_dir: Path, prefix: str) -> Artifact:
    """Store every regular file under ``src_dir`` at ``<prefix>/<relative path>`` (uncompressed output)."""
    count = 0
    if src_dir.is_dir():
        for dirpath, dirnames, filenames in os.walk(src_dir):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    publish_file(store, s3_join(prefix, path.relative_to(src_dir).as_posix()), path)
                    count += 1
    return Artifact(prefix + "/", count)


def publish_artifacts(
    store: ObjectStore,
    *,
    output_path: str,
    job_name: str,
    model_dir: Path,
    output_data_dir: Path,
    tmp_dir: Path | None = None,
    compressed: bool = True,
    empty_model: bool = True,
) -> list[Artifact]:
    """Publish the model and the output data of a job; return what was stored (model first, ``kind`` set).

    With ``empty_model=False`` (a Failed or Stopped job) an empty model directory publishes no model at all: the
    list then holds the output data only. ``tmp_dir`` is not used (archives stream to their destination and
    need no space of their own); it is accepted for callers that still name one.

    Raises :class:`~trainforge.runtime.failure.JobFailed` for a full disk (see the module doc), else the store's
    errors (``ValidationError`` for a bad output path, ``StorageError``) or ``OSError``.
    """
    del tmp_dir
    prefix = output_prefix(output_path, job_name)
    stored: list[Artifact] = []
    if empty_model or not is_empty_dir(model_dir):
        if compressed:
            model = publish_archive(store, model_dir, s3_join(prefix, contract.MODEL_ARCHIVE), content_hash=True)
        else:
            model = publish_tree(store, model_dir, s3_join(prefix, "model"))
            model = replace(model, content_sha256=tree_content_sha256(model_dir))
        stored.append(replace(model, kind="model"))
    if compressed:
        output = publish_archive(store, output_data_dir, s3_join(prefix, contract.OUTPUT_ARCHIVE))
    else:
        output = publish_tree(store, output_data_dir, s3_join(prefix, "data"))
    stored.append(replace(output, kind="output"))
    return stored
