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
from typing import Any

from trainforge.runtime.envcache import environment_record, installed_distributions, interpreter_of


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

    Returns:
        ``{"Image", "Python", "LockSha256", "LayerSha256", "Locked", "Distributions", "Fingerprint"}`` with
        ``Distributions`` mapping each installed distribution's normalized name to its version, sorted by name.
        Raises :class:`~trainforge.runtime.failure.JobFailed` when the interpreter cannot be inspected.
    """
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


def container_environment(image: str, digest: str) -> dict[str, Any]:
    """The ``Environment`` part of a container job's lineage: the image reference and, as its fingerprint, the
    digest of the image that ran (what is inside a container image is the image's own business)."""
    return {
        "Image": image,
        "Python": None,
        "LockSha256": None,
        "LayerSha256": None,
        "Locked": True,
        "Distributions": {},
        "Fingerprint": digest,
    }


def environment_lineage(python: str, *, image: str) -> dict[str, Any]:
    """:func:`environment_fingerprint` of the environment :func:`~trainforge.runtime.envcache.prepare_environment`
    returned ``python`` for: its lock and layer hashes are read from the environment's metadata file."""
    record = environment_record(python)
    return environment_fingerprint(
        python, image=image, lock_sha256=record.lock_sha256, layer_sha256=record.layer_sha256, locked=record.locked
    )
