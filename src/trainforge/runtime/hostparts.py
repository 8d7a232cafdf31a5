"""One set of artifacts from the hosts of a multi-host job (reference §7.1: merged, later files overwrite).

Each host other than the first (``algo-2`` ...) stores the contents of its ``/opt/ml/model`` and
``/opt/ml/output/data`` as plain tar parts under ``<S3OutputPath>/<job>/output/.hosts/<host>/``. The first host
(``algo-1``, the leader) waits until every other host has ended, extracts their parts over its own directories in
host order (so a file of ``algo-3`` replaces the same file of ``algo-2``, which replaced ``algo-1``'s), publishes
``model.tar.gz`` and ``output.tar.gz`` once, and deletes the parts. A part that does not fit the disk (being
written on its host, or downloaded and extracted on the leader) fails the job with ``Artifact upload
failed:Insufficient disk space`` (:func:`~trainforge.runtime.failure.disk_full`); temporary files are removed.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from trainforge.runtime.failure import DiskPhase, disk_full, is_disk_full
from trainforge.runtime.layout import host_sort_key
from trainforge.runtime.packaging import output_prefix, publish_file, tree_bytes
from trainforge.runtime.sourcecode import extract_archive
from trainforge.storage import ObjectStore, s3_join

PARTS_DIR = ".hosts"
MODEL_PART = "model.tar"
OUTPUT_PART = "output.tar"


def parts_prefix(output_path: str, job_name: str, host: str) -> str:
    """Where ``host`` stores its parts: ``<S3OutputPath>/<job>/output/.hosts/<host>``."""
    return s3_join(output_prefix(output_path, job_name), PARTS_DIR, host)


def leader(hosts: list[str]) -> str:
    """The host that merges and publishes the job's artifacts: the first (``algo-1``)."""
    return sorted(hosts, key=host_sort_key)[0]


def _tar(src_dir: Path, dest: Path) -> None:
    entries = sorted(os.listdir(src_dir)) if src_dir.is_dir() else []
    with tarfile.open(dest, "w") as tar:
        for name in entries:
            tar.add(src_dir / name, arcname=name, recursive=True)


def upload_parts(
    store: ObjectStore,
    *,
    output_path: str,
    job_name: str,
    host: str,
    model_dir: Path,
    output_data_dir: Path,
    tmp_dir: Path,
) -> list[str]:
    """Store this host's model and output-data directories as parts for the leader; return their URIs."""
    prefix = parts_prefix(output_path, job_name, host)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    stored = []
    for name, directory in ((MODEL_PART, model_dir), (OUTPUT_PART, output_data_dir)):
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tar", dir=tmp_dir)
        os.close(fd)
        try:
            try:
                _tar(directory, Path(tmp))
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                Path(tmp).unlink(missing_ok=True)
                what = f"packaging this host's {name} from {directory} ({tree_bytes(directory)} bytes)"
                raise disk_full(DiskPhase.UPLOAD, what, tmp_dir) from None
            uri = s3_join(prefix, name)
            publish_file(store, uri, Path(tmp))
            stored.append(uri)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return stored


def merge_parts(
    store: ObjectStore,
    *,
    output_path: str,
    job_name: str,
    peers: list[str],
    model_dir: Path,
    output_data_dir: Path,
    tmp_dir: Path,
) -> list[str]:
    """Extract the parts of ``peers`` over the leader's directories in host order, then delete them; return the
    hosts whose parts were found (a host that stored none, e.g. one that never ran its code, is skipped).

    Raises:
        JobFailed: A part is not a safe archive (``ClientError``), or does not fit the disk.
    """
    merged = []
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for host in sorted(peers, key=host_sort_key):
        prefix = parts_prefix(output_path, job_name, host)
        found = False
        for name, directory in ((MODEL_PART, model_dir), (OUTPUT_PART, output_data_dir)):
            uri = s3_join(prefix, name)
            if not store.exists(uri):
                continue
            found = True
            local = tmp_dir / f"{host}-{name}"
            try:
                store.download_file(uri, local)
                directory.mkdir(parents=True, exist_ok=True)
                extract_archive(local, directory, f"{host}/{name}")
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                local.unlink(missing_ok=True)
                raise disk_full(DiskPhase.UPLOAD, f"merging the {name} of {host}", tmp_dir) from None
            finally:
                local.unlink(missing_ok=True)
            store.delete(uri)
        if found:
            merged.append(host)
    return merged
