"""Use cases of stored ``requirements.txt`` layer resolutions: a supervisor fetches the one stored for a key, or
stores its own (first writer wins) and installs whichever is stored (:mod:`trainforge.runtime.locks.layers`)."""

from __future__ import annotations

import re
from typing import Any

from trainforge.errors import NotFoundError, ValidationError
from trainforge.store.environment_locks import EnvironmentLockRecord, EnvironmentLockStore

KEY_RE = re.compile(r"^[0-9a-f]{32,64}$")
MAX_RESOLUTION_BYTES = 4 * 1024 * 1024
MAX_PYTHON_LENGTH = 32


def _check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise ValidationError(
            f"key: {key!r} is not a resolution key (32 to 64 lower-case hex characters, as the supervisor computes)",
            field="key",
        )
    return key


def _reply(record: EnvironmentLockRecord) -> dict[str, Any]:
    return {
        "Key": record.key,
        "Resolution": record.resolution,
        "Python": record.python,
        "CreatedTime": record.created_time,
    }


def get_environment_lock(store: EnvironmentLockStore, key: str) -> dict[str, Any]:
    """The resolution stored under ``key``: ``{"Key", "Resolution", "Python", "CreatedTime"}``.

    Raises :class:`ValidationError` for a malformed key and :class:`NotFoundError` when nothing is stored under it.
    """
    record = store.get(_check_key(key))
    if record is None:
        raise NotFoundError(f"no resolution is stored under key {key}", details={"key": key})
    return _reply(record)


def put_environment_lock(
    store: EnvironmentLockStore, key: str, *, resolution: str, python: str
) -> tuple[dict[str, Any], bool]:
    """Store ``resolution`` under ``key`` unless one is stored there; return the stored one (as
    :func:`get_environment_lock` does) and whether this call stored it.

    Raises :class:`ValidationError` naming the field for a malformed key, an empty or oversized resolution, or a
    ``python`` that is not a version.
    """
    _check_key(key)
    if not resolution.strip():
        raise ValidationError("resolution: must not be empty (the output of uv pip compile)", field="resolution")
    if len(resolution.encode("utf-8")) > MAX_RESOLUTION_BYTES:
        raise ValidationError(
            f"resolution: longer than {MAX_RESOLUTION_BYTES} bytes; a requirements.txt layer this large cannot be "
            "stored",
            field="resolution",
        )
    if not python or len(python) > MAX_PYTHON_LENGTH or not re.match(r"^\d+\.\d+(\.\d+)?\S*$", python):
        raise ValidationError(f"python: {python!r} is not a Python version such as 3.11.7", field="python")
    record, created = store.put(key, resolution, python)
    return _reply(record), created
