"""Packaging and publishing a job's artifacts (reference §7.1).

``model.tar.gz`` holds the **contents** of ``opt/ml/model`` at the archive root (no ``model/`` prefix) and
``output.tar.gz`` the contents of ``opt/ml/output/data``; both go to ``<S3OutputPath>/<job>/output/``.
Archives use gzip level 1 (tarfile's default, 9, is several times slower for little gain on model data),
are written to a temporary file first and then stored whole, so an artifact appears only when complete.
With ``OutputDataConfig.CompressionType = NONE`` the files are stored one by one under
``<S3OutputPath>/<job>/output/model/`` and ``.../output/data/`` instead.

A Completed job always stores its model, even an empty one; a Failed or Stopped job whose model directory is empty
stores none (``empty_model=False``), and its description then has no ``ModelArtifacts``.

A full disk fails the job with SageMaker's ``Artifact upload failed:Insufficient disk space`` words
(:func:`~trainforge.runtime.failure.disk_full`): a ``ClientError`` when the archive does not fit next to the
job's files (or in a ``file://`` output path), an ``InternalServerError`` when the object store's own volume is
full. The temporary archive is removed either way, and no partial object is ever stored.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from trainforge.errors import TrainforgeError
from trainforge.runtime.failure import DiskPhase, disk_full, is_disk_full
from trainforge.runtime.lineage import archive_content_sha256, tree_content_sha256
from trainforge.spec import contract
from trainforge.storage import ObjectStore, s3_join

GZIP_LEVEL = 1


def make_archive(src_dir: Path, dest: Path, *, compresslevel: int = GZIP_LEVEL) -> int:
    """Write a ``tar.gz`` of the contents of ``src_dir`` (entries at the archive root, sorted) to ``dest``.

    Symbolic links are stored as links, not followed. Returns the number of top-level entries; an empty
    or missing directory gives a valid empty archive.
    """
    entries = sorted(os.listdir(src_dir)) if src_dir.is_dir() else []
    with tarfile.open(dest, "w:gz", compresslevel=compresslevel) as tar:
        for name in entries:
            tar.add(src_dir / name, arcname=name, recursive=True)
    return len(entries)


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
        target = Path(uri[len("file://") :])
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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


def publish_archive(
    store: ObjectStore, src_dir: Path, uri: str, tmp_dir: Path, *, content_hash: bool = False
) -> Artifact:
    """Archive ``src_dir`` into a temporary file under ``tmp_dir`` and store it at ``uri``; with ``content_hash``
    the artifact carries the archive's content hash."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".artifact-", suffix=".tar.gz", dir=tmp_dir)
    os.close(fd)
    archive = Path(tmp)
    try:
        try:
            entries = make_archive(src_dir, archive)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            archive.unlink(missing_ok=True)
            what = f"packaging {uri.rsplit('/', 1)[-1]} from {src_dir} ({tree_bytes(src_dir)} bytes)"
            raise disk_full(DiskPhase.UPLOAD, what, tmp_dir) from None
        digest = archive_content_sha256(archive) if content_hash else None
        publish_file(store, uri, archive)
    finally:
        archive.unlink(missing_ok=True)
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
    tmp_dir: Path,
    compressed: bool = True,
    empty_model: bool = True,
) -> list[Artifact]:
    """Publish the model and the output data of a job; return what was stored (model first, ``kind`` set).

    With ``empty_model=False`` (a Failed or Stopped job) an empty model directory publishes no model at all: the
    list then holds the output data only.

    Raises :class:`~trainforge.runtime.failure.JobFailed` for a full disk (see the module doc), else the store's
    errors (``ValidationError`` for a bad output path, ``StorageError``) or ``OSError``.
    """
    prefix = output_prefix(output_path, job_name)
    stored: list[Artifact] = []
    if empty_model or not is_empty_dir(model_dir):
        if compressed:
            model = publish_archive(
                store, model_dir, s3_join(prefix, contract.MODEL_ARCHIVE), tmp_dir, content_hash=True
            )
        else:
            model = publish_tree(store, model_dir, s3_join(prefix, "model"))
            model = replace(model, content_sha256=tree_content_sha256(model_dir))
        stored.append(replace(model, kind="model"))
    if compressed:
        output = publish_archive(store, output_data_dir, s3_join(prefix, contract.OUTPUT_ARCHIVE), tmp_dir)
    else:
        output = publish_tree(store, output_data_dir, s3_join(prefix, "data"))
    stored.append(replace(output, kind="output"))
    return stored
