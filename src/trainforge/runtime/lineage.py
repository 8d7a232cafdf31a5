"""A job's lineage: what exactly a host ran -- its environment, its code and its data.

The environment part (:func:`environment_fingerprint`) names the Python version, every installed distribution
and the hashes of the lock and of the stored ``requirements.txt`` resolution the environment was built from.
Its ``Fingerprint`` is the sha256 of the canonical JSON (sorted keys, compact) of exactly those four values
and nothing else -- no paths, no build times -- so two builds of the same image on two nodes, or in two
``TRAINFORGE_ENVS_DIR``\\ s, fingerprint identically, and any difference in what is installed changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from trainforge.archives import open_archive
from trainforge.runtime.channels import SourceObject, list_file_objects, list_manifest_objects, list_store_objects
from trainforge.runtime.envcache import environment_record, installed_distributions, interpreter_of
from trainforge.storage import ObjectStore


def canonical_sha256(value: Any) -> str:
    """The sha256 (hex) of ``value``'s canonical JSON: sorted keys, no whitespace, UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint_of(
    *, python: str | None, distributions: dict[str, str], lock_sha256: str | None, layer_sha256: str | None
) -> str:
    """The ``Fingerprint`` of an environment from its parts (see the module docstring)."""
    return canonical_sha256(
        {"Python": python, "Distributions": distributions, "LockSha256": lock_sha256, "LayerSha256": layer_sha256}
    )


def environment_fingerprint(
    python: str,
    *,
    image: str,
    lock_sha256: str | None,
    layer_sha256: str | None = None,
    locked: bool = True,
    installed: tuple[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``Environment`` part of a host's lineage for the interpreter ``python``.

    Args:
        python: The interpreter the job runs with (inspected in a subprocess unless it is this one).
        image: The catalogue image name the environment stands for.
        lock_sha256: The sha256 of the image's lock file, or None where the environment was not built from a
            lock (the server's own interpreter).
        layer_sha256: The sha256 of the stored resolution of the code's ``requirements.txt`` installed on top,
            or None where there is no such layer.
        locked: False where something was installed without a lock (requirements naming local files, a
            ``setup.py`` package): the distributions are still listed, but another node may resolve differently.
        installed: The interpreter's version and installed distributions when already known (recorded by the
            environment's build); None asks the interpreter.

    Returns:
        ``{"Image", "Python", "LockSha256", "LayerSha256", "Locked", "Distributions", "Fingerprint"}`` with
        ``Distributions`` mapping each installed distribution's normalized name to its version, sorted by name.
        Raises :class:`~trainforge.runtime.failure.JobFailed` when the interpreter cannot be inspected.
    """
    if installed is not None:
        version, distributions = installed[0], dict(sorted(installed[1].items()))
    else:
        version = interpreter_of(python).version
        distributions = dict(sorted(installed_distributions(python).items()))
    return {
        "Image": image,
        "Python": version,
        "LockSha256": lock_sha256,
        "LayerSha256": layer_sha256,
        "Locked": locked,
        "Distributions": distributions,
        "Fingerprint": fingerprint_of(
            python=version, distributions=distributions, lock_sha256=lock_sha256, layer_sha256=layer_sha256
        ),
    }


def container_environment(image: str, digest: str, lock_sha256: str | None = None) -> dict[str, Any]:
    """The ``Environment`` part of a container job's lineage: the image reference and, as its fingerprint, the
    digest of the image that ran (what is inside a container image is the image's own business); for a catalogue
    image's build, the lock it was built from (its ``ai.trainforge.lock-sha256`` label)."""
    return {
        "Image": image,
        "Python": None,
        "LockSha256": lock_sha256,
        "LayerSha256": None,
        "Locked": True,
        "Distributions": {},
        "Fingerprint": digest,
    }


def environment_lineage(python: str, *, image: str) -> dict[str, Any]:
    """:func:`environment_fingerprint` of the environment :func:`~trainforge.runtime.envcache.prepare_environment`
    returned ``python`` for: its lock and layer hashes are read from the environment's metadata file."""
    record = environment_record(python)
    installed = None
    if record.python_version is not None and record.distributions is not None:
        installed = (record.python_version, record.distributions)
    return environment_fingerprint(
        python,
        image=image,
        lock_sha256=record.lock_sha256,
        layer_sha256=record.layer_sha256,
        locked=record.locked,
        installed=installed,
    )


# ----------------------------------------------------------------------------------- code, data, output, recorder
#
# The code fingerprint is the sha256 and size of ``sourcedir.tar.gz`` as fetched; the data manifest lists each
# channel object's key, size and ETag, where the local store (which keeps no ETag) gives the sha256 of the object's
# content instead; a model's content hash covers its files' names and bytes, not the archive's mtimes.

HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and the size in bytes of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def code_fingerprint(uri: str, archive: Path) -> dict[str, Any]:
    """The ``Code`` part of a lineage: ``{"Uri", "Sha256", "Size"}`` of the source archive fetched from ``uri``."""
    sha, size = sha256_file(archive)
    return {"Uri": uri, "Sha256": sha, "Size": size}


def store_object_sha256(store: ObjectStore, uri: str) -> str:
    """The sha256 (hex) of the content of the object at ``uri`` (the plaintext, for an object encrypted at rest)."""
    digest = hashlib.sha256()
    for block in store.read_chunks(uri):
        digest.update(block)
    return digest.hexdigest()


def manifest_entry(store: ObjectStore, obj: SourceObject) -> dict[str, Any]:
    """One data-manifest entry ``{"Key", "Size", "ETag"}`` for a channel object: an ``s3://`` object's size and
    ETag from the store (the content's sha256 where the store keeps no ETag), a ``file://`` file's size and sha256.
    """
    if not obj.source.startswith("s3://"):
        sha, size = sha256_file(Path(obj.source))
        return {"Key": f"file://{obj.source}", "Size": size, "ETag": sha}
    size, etag = obj.size, obj.etag
    if etag is None:
        info = store.info(obj.source)  # a ManifestFile entry is listed without size; the local store has no ETag
        size, etag = info.size, info.etag
    return {"Key": obj.source, "Size": size, "ETag": etag or store_object_sha256(store, obj.source)}


def channel_manifest(store: ObjectStore, objects: Iterable[SourceObject]) -> list[dict[str, Any]]:
    """A channel's data manifest: one :func:`manifest_entry` per object, sorted by key."""
    return sorted((manifest_entry(store, obj) for obj in objects), key=lambda entry: str(entry["Key"]))


def current_manifest(store: ObjectStore, uri: str, data_type: str = "S3Prefix") -> list[dict[str, Any]]:
    """The data manifest of a channel source as it is now (listed the way staging lists it).

    Raises the store's errors (``NotFoundError`` for a missing bucket or manifest object) and
    :class:`~trainforge.runtime.failure.JobFailed` for an unreadable manifest file.
    """
    if uri.startswith("file://"):
        objects = list_file_objects(uri)
    elif data_type == "ManifestFile":
        objects = list_manifest_objects(store, uri)
    else:
        objects = list_store_objects(store, uri)
    return channel_manifest(store, objects)


def _content_line(kind: str, name: str, value: str) -> bytes:
    return f"{kind}\0{name}\0{value}\n".encode("utf-8", "surrogateescape")


def _member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def contents_sha256(files: Mapping[str, str], links: Mapping[str, str]) -> str:
    """The content hash (as :func:`archive_content_sha256` defines it) of regular files (name -> sha256 hex of the
    bytes) and symbolic links (name -> target), e.g. as :mod:`trainforge.archives` records them while archiving."""
    lines = [_content_line("F", name, digest) for name, digest in files.items()]
    lines += [_content_line("L", name, target) for name, target in links.items()]
    return hashlib.sha256(b"".join(sorted(lines))).hexdigest()


def archive_content_sha256(archive: Path) -> str:
    """The content hash of a ``tar(.gz)``: sha256 over its regular files (name and the sha256 of the bytes) and
    symbolic links (name and target), sorted by name. Directories, owners, modes and mtimes do not count, so the
    same files packaged twice hash the same, and :func:`tree_content_sha256` of the packaged directory agrees."""
    lines: list[bytes] = []
    with open_archive(archive, stream=True) as tar:
        for member in tar:
            name = _member_name(member.name)
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                digest = hashlib.sha256()
                with handle:
                    while block := handle.read(HASH_CHUNK):
                        digest.update(block)
                lines.append(_content_line("F", name, digest.hexdigest()))
            elif member.issym():
                lines.append(_content_line("L", name, member.linkname))
    return hashlib.sha256(b"".join(sorted(lines))).hexdigest()


def tree_content_sha256(root: Path) -> str:
    """The content hash (as :func:`archive_content_sha256` defines it) of the files under ``root``."""
    lines: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                lines.append(_content_line("L", rel, os.readlink(path)))
            elif path.is_file():
                lines.append(_content_line("F", rel, sha256_file(path)[0]))
    return hashlib.sha256(b"".join(sorted(lines))).hexdigest()


class LineageRecorder:
    """Collects one host's lineage while its supervisor prepares and runs the job; :meth:`payload` is what the
    supervisor reports (with its ``Training`` status and its final one). Parts never recorded stay null
    (``Data`` empty): a job that failed early reports what was known by then."""

    def __init__(self) -> None:
        self._environment: dict[str, Any] | None = None
        self._code: dict[str, Any] | None = None
        self._data: dict[str, list[dict[str, Any]]] = {}
        self._container: dict[str, Any] | None = None
        self._output: dict[str, Any] | None = None

    def set_code(self, code: dict[str, Any]) -> None:
        """Record the ``Code`` part (see :func:`code_fingerprint`)."""
        self._code = code

    def add_channel(self, name: str, manifest: list[dict[str, Any]]) -> None:
        """Record channel ``name``'s data manifest (see :func:`channel_manifest`)."""
        self._data[name] = manifest

    def set_environment(self, environment: dict[str, Any]) -> None:
        """Record the ``Environment`` part (see :func:`environment_fingerprint`)."""
        self._environment = environment

    def set_container(self, image: str, digest: str, *, lock_sha256: str | None = None) -> None:
        """Record a container job's image: ``Container`` = ``{"Image", "Digest"}`` and the environment that
        stands for it (:func:`container_environment`; ``lock_sha256`` for a catalogue image's build)."""
        self._container = {"Image": image, "Digest": digest}
        self._environment = container_environment(image, digest, lock_sha256)

    def set_model_content(self, sha256: str) -> None:
        """Record the content hash of the model this host packaged (``Output.ModelContentSha256``)."""
        self._output = {"ModelContentSha256": sha256}

    @property
    def known(self) -> bool:
        """Whether anything was recorded yet."""
        return any((self._environment, self._code, self._data, self._container, self._output))

    def payload(self) -> dict[str, Any]:
        """The lineage as the agent status route takes it (``lineage``), a fresh copy each call."""
        out: dict[str, Any] = {
            "Environment": self._environment,
            "Code": self._code,
            "Data": {name: list(entries) for name, entries in self._data.items()},
            "Container": self._container,
        }
        if self._output is not None:
            out["Output"] = dict(self._output)
        return out
