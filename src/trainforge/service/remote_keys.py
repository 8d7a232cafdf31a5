"""Per-job integrity keys for remote-function payloads.

The server holds one secret (``$TRAINFORGE_HOME/remote_function.secret``, mode 0600). Each job's key is an HMAC
of its name under that secret: the caller (holding the API token) and the job itself (through its supervisor)
get that job's key only, so a payload written into the object store by anyone else — or by another job — fails
verification instead of being unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from trainforge.errors import ValidationError
from trainforge.spec.job import JOB_NAME_RE


def ensure_secret(path: Path) -> bytes:
    """The secret stored at ``path``, created (0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = bytes.fromhex(path.read_text().strip())
        if value:
            return value
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    value = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as out:
        out.write(value.hex() + "\n")
    return value


def job_key(secret: bytes, job_name: str) -> str:
    """The hex HMAC key for one job's remote-function payloads."""
    if not JOB_NAME_RE.match(job_name):
        raise ValidationError(f"TrainingJobName: {job_name!r} is not a valid job name", field="TrainingJobName")
    return hmac.new(secret, b"trainforge-remote-function:" + job_name.encode(), hashlib.sha256).hexdigest()
