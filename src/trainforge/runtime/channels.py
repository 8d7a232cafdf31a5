"""Staging input channels into ``opt/ml/input/data/<channel>`` (File mode; FastFile is staged the same way).

Staged data arrives as **copies** (never hard links): the job runs as the same user as the object store,
so a link would let the job change a stored object. In the sandbox, a channel that is exactly one directory of
the local object store is not copied at all: :func:`bindable_channel` finds that directory and the sandbox
binds it read-only at the channel's path (zero-copy). Sources:

- ``s3://bucket/prefix`` in the object store: every object whose key starts with the prefix. The path of an
  object under the channel directory is its key after the prefix; for a prefix without a trailing ``/``,
  a key continuing with ``/`` drops that ``/``, an object whose key *is* the prefix keeps its basename, and
  any other key keeps the part after the prefix's last ``/``.
- ``file:///path``: a file (copied under its basename) or a directory tree.
- ``S3DataType=ManifestFile``: the manifest object lists a ``{"prefix": ...}`` then relative keys.

``ShardedByS3Key``: with the objects sorted by key, host ``i`` of ``n`` (position in the sorted host list)
gets objects ``k`` with ``k % n == i``. A channel whose source has no objects fails the job; on S3 one whose bucket
does not exist fails it with the store's message (``bucket '<name>' does not exist (s3://...)``).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from trainforge.errors import TrainforgeError
from trainforge.runtime.failure import DiskPhase, JobFailed, client_error, disk_full, is_disk_full
from trainforge.spec.job import ChannelSpec
from trainforge.storage import ObjectStore, parse_s3_uri

BIND_MODES = frozenset({"File", "FastFile"})


@dataclass(frozen=True)
class SourceObject:
    """One object of a channel: where it comes from and its path relative to the channel directory."""

    source: str
    relative: str
    size: int
    etag: str | None = None  # the store's ETag where it keeps one (S3)


@dataclass(frozen=True)
class StagedChannel:
    """What was staged for one channel on this host; ``bound`` is the store directory the sandbox binds
    read-only in place of a copy (None: the files were copied into the channel directory). ``listed`` is every
    object of the channel's source as listed, before any sharding over hosts (the job's data manifest)."""

    name: str
    files: int
    bytes: int
    bound: Path | None = None
    listed: tuple[SourceObject, ...] = ()


def relative_key(prefix: str, key: str) -> str:
    """The path of object ``key`` inside a channel whose S3 prefix is ``prefix`` (see module doc)."""
    if prefix.endswith("/") or not prefix:
        return key[len(prefix) :]
    if key == prefix:
        return posixpath.basename(key)
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    parent = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    return key[len(parent) :]


def shard(objects: list[SourceObject], host_index: int, host_count: int) -> list[SourceObject]:
    """The objects host ``host_index`` of ``host_count`` gets under ``ShardedByS3Key`` (sorted by source)."""
    ordered = sorted(objects, key=lambda o: o.source)
    return [obj for k, obj in enumerate(ordered) if k % host_count == host_index]


def _check_relative(relative: str, channel: str, source: str) -> str:
    parts = PurePosixPath(relative).parts
    if not relative or relative.startswith("/") or any(p in ("..", ".") for p in parts):
        raise client_error(f"channel '{channel}': object {source} maps to an unsafe path {relative!r}")
    return relative


def list_store_objects(store: ObjectStore, uri: str) -> list[SourceObject]:
    """Every object under the ``s3://`` prefix ``uri`` with its channel-relative path."""
    parsed = parse_s3_uri(uri, field="S3Uri")
    out = []
    for info in store.list(uri):
        if info.key.endswith("/"):
            continue
        out.append(SourceObject(info.uri, relative_key(parsed.key, info.key), info.size, info.etag))
    return out


def list_manifest_objects(store: ObjectStore, uri: str) -> list[SourceObject]:
    """The objects a ManifestFile at ``uri`` lists: ``[{"prefix": "s3://b/p/"}, "rel/key", ...]``."""
    try:
        manifest = json.loads(store.get_bytes(uri))
    except ValueError as exc:
        raise client_error(f"manifest {uri} is not valid JSON: {exc}") from None
    if (
        not isinstance(manifest, list)
        or not manifest
        or not isinstance(manifest[0], dict)
        or not isinstance(manifest[0].get("prefix"), str)
    ):
        raise client_error(f'manifest {uri} must be a JSON list starting with {{"prefix": "s3://..."}}')
    prefix = manifest[0]["prefix"]
    out = []
    for entry in manifest[1:]:
        if not isinstance(entry, str):
            raise client_error(f"manifest {uri}: entries after the prefix must be strings, got {entry!r}")
        out.append(SourceObject(prefix.rstrip("/") + "/" + entry.lstrip("/"), entry.lstrip("/"), 0))
    return out


def list_file_objects(uri: str) -> list[SourceObject]:
    """The files of a ``file://`` source: the file itself (by basename) or every file of the tree."""
    root = Path(uri[len("file://") :])
    if root.is_file():
        return [SourceObject(str(root), root.name, root.stat().st_size)]
    if not root.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                out.append(SourceObject(str(path), path.relative_to(root).as_posix(), path.stat().st_size))
    return out


def _copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)  # a new inode with the content (sendfile), never a link
    os.chmod(dest, 0o644)


def stage_channel(
    store: ObjectStore,
    channel: ChannelSpec,
    dest: Path,
    *,
    host_index: int,
    host_count: int,
    input_mode: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> StagedChannel:
    """Copy the channel's objects for this host into ``dest`` (an existing, empty directory).

    Raises :class:`JobFailed` (``ClientError: channel '<name>': ...``) for Pipe mode, an unsupported data
    type, a source with no objects, a bucket that does not exist, keys rejected by the store (e.g. ``..``),
    or an unreadable object; ``ClientError: Data download failed:Insufficient disk space ...`` when the data
    does not fit the disk (what was copied of the channel is removed then).
    Returns early, with what was copied so far, once ``should_stop()`` turns true.
    """
    name = channel.ChannelName
    source = channel.DataSource.S3DataSource
    if source is None:
        raise client_error(f"channel '{name}': only S3DataSource (s3:// or file://) channels are supported")
    uri = source.S3Uri
    if input_mode == "Pipe":
        raise client_error(f"channel '{name}': input mode Pipe is not supported yet; use File or FastFile")
    objects: list[SourceObject] = []
    try:
        if source.S3DataType == "AugmentedManifestFile":
            raise client_error(f"channel '{name}': S3DataType AugmentedManifestFile is not supported")
        if uri.startswith("file://"):
            if source.S3DataType != "S3Prefix":
                raise client_error(f"channel '{name}': {source.S3DataType} needs an s3:// URI")
            objects = list_file_objects(uri)
        elif uri.startswith("s3://"):
            if source.S3DataType == "ManifestFile":
                objects = list_manifest_objects(store, uri)
            else:
                objects = list_store_objects(store, uri)
        else:
            raise client_error(f"channel '{name}': unsupported URI scheme in {uri} (use s3:// or file://)")
        if not objects:
            raise client_error(f"channel '{name}': no objects found under {uri}")
        listed = tuple(objects)
        if source.S3DataDistributionType == "ShardedByS3Key" and host_count > 1:
            objects = shard(objects, host_index, host_count)
        files = size = 0
        root = dest.resolve()
        for obj in objects:
            if should_stop():
                break
            target = root / _check_relative(obj.relative, name, obj.source)
            if obj.source.startswith("s3://"):
                store.download_file(obj.source, target)
            else:
                _copy_file(Path(obj.source), target)
            files += 1
            size += target.stat().st_size
    except JobFailed:
        raise
    except (TrainforgeError, OSError) as exc:
        if is_disk_full(exc):
            raise _disk_full(name, uri, dest, objects) from None
        if isinstance(exc, TrainforgeError):
            raise client_error(f"channel '{name}': {exc.message}") from None
        raise client_error(f"channel '{name}': could not stage {uri}: {exc}") from None
    return StagedChannel(name, files, size, listed=listed)


def _disk_full(name: str, uri: str, dest: Path, objects: list[SourceObject]) -> JobFailed:
    """The failure of a channel that does not fit this host's disk; what was copied is removed first, so the
    space is free again for the job's log and for other jobs."""
    for child in list(dest.iterdir()) if dest.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    total = sum(obj.size for obj in objects)
    listed = f", {len(objects)} object(s), {total} bytes" if total else ""
    return disk_full(DiskPhase.DOWNLOAD, f"staging channel '{name}' from {uri}{listed}", dest)


def _encryption_magic() -> bytes | None:
    """The header every encrypted local-store object starts with (None: unknown, so nothing is bound)."""
    try:
        from trainforge.storage.encryption import MAGIC
    except ImportError:
        return None
    return MAGIC


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return True  # unreadable: not bound (the copy path reports it)


def bindable_channel(
    store: ObjectStore,
    storage: Mapping[str, object],
    channel: ChannelSpec,
    *,
    host_count: int,
    input_mode: str,
) -> StagedChannel | None:
    """The channel as a read-only bind of one local-store directory, when that gives the code exactly the files a
    copy would; else None (the caller copies with :func:`stage_channel`).

    Bound only for an ``S3Prefix`` channel of the local store in ``File`` or ``FastFile`` mode, not sharded over
    several hosts, whose every listed object (listed through ``store``, so the job's role applies) is the file
    ``<directory>/<its channel-relative path>`` and is not encrypted at rest. Nothing is read but the listing and
    the first bytes of each file.
    """
    source = channel.DataSource.S3DataSource
    if storage.get("kind", "local") != "local" or source is None:
        return None
    if source.S3DataType != "S3Prefix" or input_mode not in BIND_MODES or not source.S3Uri.startswith("s3://"):
        return None
    if source.S3DataDistributionType == "ShardedByS3Key" and host_count > 1:
        return None
    magic = _encryption_magic()
    if magic is None:
        return None
    try:
        parsed = parse_s3_uri(source.S3Uri, field="S3Uri")
        root = Path(str(storage["root"])).resolve() / parsed.bucket
        directory = (root / parsed.key).resolve()
        if not directory.is_dir() or not directory.is_relative_to(root):
            return None
        objects = list_store_objects(store, source.S3Uri)
    except (TrainforgeError, OSError, KeyError):
        return None  # the copy path reports the problem in its own words
    if not objects:
        return None
    size = 0
    for obj in objects:
        key = parse_s3_uri(obj.source, field="S3Uri").key
        path = directory / obj.relative
        if ".." in PurePosixPath(obj.relative).parts or path != root / key or _starts_with(path, magic):
            return None
        size += obj.size
    return StagedChannel(channel.ChannelName, len(objects), size, bound=directory, listed=tuple(objects))


def link_channel(bound: StagedChannel, dest: Path) -> None:
    """Stage a channel :func:`bindable_channel` found as hard links of the store's files into ``dest`` (a copy
    where a link cannot be made, e.g. across file systems).

    Only for code that sees ``dest`` through a read-only bind (a warm worker's sandboxed forkserver binds its
    slot's ``input/data`` read-only): a link shares the stored object's inode, so writing through a writable path
    would change the stored object. Raises :class:`JobFailed` as :func:`stage_channel` does.
    """
    assert bound.bound is not None
    root = dest.resolve()
    try:
        for obj in bound.listed:
            source = bound.bound / obj.relative
            target = root / _check_relative(obj.relative, bound.name, obj.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                _copy_file(source, target)
    except OSError as exc:
        if is_disk_full(exc):
            raise _disk_full(bound.name, str(bound.bound), dest, list(bound.listed)) from None
        raise client_error(f"channel '{bound.name}': could not stage {bound.bound}: {exc}") from None
