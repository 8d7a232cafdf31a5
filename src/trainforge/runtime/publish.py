"""Publish a directory tree as individual objects (used for remote-function results)."""

from __future__ import annotations

from pathlib import Path

from trainforge.storage import ObjectStore, s3_join


def publish_tree(store: ObjectStore, root: Path, prefix: str) -> list[str]:
    """Store every regular file under ``root`` at ``<prefix>/<relative path>``; return the URIs written.

    Each object appears whole (the store writes atomically); a missing ``root`` publishes nothing.
    """
    if not root.is_dir():
        return []
    written = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        uri = s3_join(prefix, path.relative_to(root).as_posix())
        store.put_file(uri, path)
        written.append(uri)
    return written
