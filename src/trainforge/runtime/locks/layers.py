"""``requirements.txt`` layers resolved once: the resolution (every package pinned with hashes) is stored on the
server under a key that names what the resolution depends on, so every node installs the same packages.

The key (:func:`resolution_key`) hashes the requirements text, the base environment's identity (its lock's sha256,
or for a base built without a lock every distribution installed in it), the Python version and the machine
architecture -- nothing node-specific such as paths. The first node to build a layer fetches the stored resolution
(:class:`ResolutionStore`); if there is none it resolves with :func:`resolve_requirements` and stores it, and when
another node stored one first (first writer wins) it installs that one instead of its own.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

RESOLUTION_VERSION = "1"
# Options of a requirements file that a resolution must keep for its install (uv pip compile drops them).
_INDEX_OPTION = re.compile(r"^(-i\b|--index-url\b|--extra-index-url\b|--no-index\b)")


class ResolutionStore(Protocol):
    """Where layer resolutions are kept (the server, through the job's agent routes)."""

    def get(self, key: str) -> str | None:
        """The stored resolution for ``key``, or None when there is none (or the store cannot be reached)."""
        ...

    def put(self, key: str, resolution: str, python: str) -> str:
        """Store ``resolution`` for ``key`` unless one is stored already; return the stored one (``resolution``
        itself when the store cannot be reached)."""
        ...


def resolution_key(*, requirements_text: str, base_identity: str, python_version: str) -> str:
    """The node-independent key of the resolution of ``requirements_text`` on a base (32 hex characters).

    ``base_identity`` is the base's lock sha256, or a hash of its installed distributions (see
    :func:`distributions_identity`).
    """
    payload = json.dumps(
        {
            "resolution": RESOLUTION_VERSION,
            "requirements": requirements_text,
            "base": base_identity,
            "python": python_version,
            "machine": platform.machine(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def distributions_identity(distributions: Mapping[str, str]) -> str:
    """The identity of a base built without a lock: a hash of its installed distributions."""
    return hashlib.sha256(json.dumps(dict(sorted(distributions.items()))).encode()).hexdigest()


def resolution_sha256(resolution: str) -> str:
    """The sha256 (hex) of a resolution's text: the ``LayerSha256`` of an environment that installed it."""
    return hashlib.sha256(resolution.encode("utf-8")).hexdigest()


def index_options(requirements_text: str) -> list[str]:
    """The index options (``--index-url``, ``--extra-index-url``, ``--no-index``) a requirements file sets."""
    return [line.strip() for line in requirements_text.splitlines() if _INDEX_OPTION.match(line.strip())]


def resolution_command(uv: str, *, python: str, requirements: str, output: str) -> list[str]:
    """``uv pip compile`` of ``requirements`` for the interpreter ``python``, with hashes, into ``output``.

    ``output`` holds the base's packages (``name==version``) beforehand: uv prefers the versions of an existing
    output file, so packages the base has stay at its versions unless the requirements ask for others -- as pip
    in a SageMaker container leaves the image's packages alone when they satisfy the requirements.
    """
    return [
        uv,
        "pip",
        "compile",
        "--generate-hashes",
        "--no-header",
        "--quiet",
        "--python",
        python,
        "--output-file",
        output,
        requirements,
    ]


def prefer_base(output: Path, base_packages: Mapping[str, str]) -> None:
    """Write the base's packages as the preferences :func:`resolution_command` starts from."""
    output.write_text("".join(f"{name}=={version}\n" for name, version in sorted(base_packages.items())), "utf-8")


def finish_resolution(requirements_text: str, compiled: str) -> str:
    """The resolution to store: the requirements' index options, then uv's pins with hashes."""
    options = index_options(requirements_text)
    return "".join(f"{line}\n" for line in options) + compiled
