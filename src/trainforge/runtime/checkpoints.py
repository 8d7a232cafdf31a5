"""Checkpoints (reference §7.2): objects under ``CheckpointConfig.S3Uri`` are copied into the job's local checkpoint
directory before training, and the directory's files are stored back there when the job ends (completed,
stopped or failed), so a restarted or cloned job resumes from them."""

from __future__ import annotations

from pathlib import Path

from trainforge.runtime.publish import publish_tree
from trainforge.storage import ObjectStore, parse_s3_uri


def _prefix(s3_uri: str) -> str:
    return s3_uri.rstrip("/") + "/"


def restore(store: ObjectStore, s3_uri: str, local: Path) -> int:
    """Copy every object under ``s3_uri`` to ``local`` (relative paths kept); returns how many."""
    prefix = _prefix(s3_uri)
    key_prefix = parse_s3_uri(prefix, field="CheckpointConfig.S3Uri").key
    count = 0
    for obj in store.list(prefix):
        relative = obj.key[len(key_prefix) :]
        if relative:
            store.download_file(obj.uri, local / relative)
            count += 1
    return count


def save(store: ObjectStore, local: Path, s3_uri: str) -> int:
    """Store every file under ``local`` at ``<s3_uri>/<relative path>``; returns how many."""
    return len(publish_tree(store, local, s3_uri.rstrip("/")))
