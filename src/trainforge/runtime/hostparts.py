"""One set of artifacts from the hosts of a multi-host job (reference §7.1: merged, later files overwrite).

Each host other than the first (``algo-2`` ...) stores the contents of its ``/opt/ml/model`` and
``/opt/ml/output/data`` as plain tar parts under ``<S3OutputPath>/<job>/output/.hosts/<host>/``. The first host
(``algo-1``, the leader) waits until every other host has ended, extracts their parts over its own directories in
host order (so a file of ``algo-3`` replaces the same file of ``algo-2``, which replaced ``algo-1``'s), publishes
``model.tar.gz`` and ``output.tar.gz`` once, and deletes the parts.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from trainforge.runtime.layout import host_sort_key
from trainforge.runtime.packaging import output_prefix
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
            _tar(directory, Path(tmp))
            uri = s3_join(prefix, name)
            store.put_file(uri, Path(tmp))
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
        JobFailed: A part is not a safe archive (``ClientError``).
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
            store.download_file(uri, local)
            try:
                directory.mkdir(parents=True, exist_ok=True)
                extract_archive(local, directory, f"{host}/{name}")
            finally:
                local.unlink(missing_ok=True)
            store.delete(uri)
        if found:
            merged.append(host)
    return merged
