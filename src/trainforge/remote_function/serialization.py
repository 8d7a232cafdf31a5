"""Payloads of remote functions: cloudpickle bytes plus ``metadata.json`` with an HMAC under the job's key.

Layout (reference §6.2): ``<s3_root_uri>/<job>/{function,arguments,results,exception}/{payload.pkl,metadata.json}``.
Unlike SageMaker's bare SHA-256 next to the payload, the metadata carries ``hmac_sha256`` keyed by a per-job
key only the caller and the job get from the server, so a payload replaced by anyone else is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
from typing import Any

import cloudpickle

from trainforge.remote_function.errors import DeserializationError, SerializationError
from trainforge.storage import ObjectStore, s3_join

FORMAT_VERSION = "trainforge-2026-11"
PAYLOAD = "payload.pkl"
METADATA = "metadata.json"


def python_version() -> str:
    """This interpreter's version, e.g. ``3.11.7``."""
    return platform.python_version()


def serializer_version() -> str:
    """The cloudpickle version payloads are written with."""
    return str(cloudpickle.__version__)


def sign(key: str, payload: bytes) -> str:
    """The hex HMAC-SHA256 of ``payload`` under the hex ``key``."""
    return hmac.new(bytes.fromhex(key), payload, hashlib.sha256).hexdigest()


def dumps(obj: Any, *, what: str) -> bytes:
    """cloudpickle ``obj``; :class:`SerializationError` naming ``what`` when it cannot be pickled."""
    try:
        return bytes(cloudpickle.dumps(obj))
    except Exception as exc:  # pickling can raise almost anything (TypeError, PicklingError, RecursionError)
        raise SerializationError(
            f"{what}: cannot be sent to a remote job: {type(exc).__name__}: {exc}. Objects holding locks, "
            "sockets, open files or other process-local resources cannot be pickled; pass plain data instead.",
            field=what,
        ) from None


def metadata_for(key: str, payload: bytes, **extra: Any) -> dict[str, Any]:
    """The ``metadata.json`` content for ``payload``."""
    return {
        "version": FORMAT_VERSION,
        "python_version": python_version(),
        "serialization_module": "cloudpickle",
        "serializer_version": serializer_version(),
        "sha256_hash": hashlib.sha256(payload).hexdigest(),
        "hmac_sha256": sign(key, payload),
        **extra,
    }


def upload(store: ObjectStore, prefix: str, key: str, payload: bytes, **extra: Any) -> None:
    """Write ``payload.pkl`` then ``metadata.json`` under ``prefix``."""
    store.put_bytes(s3_join(prefix, PAYLOAD), payload)
    store.put_bytes(s3_join(prefix, METADATA), json.dumps(metadata_for(key, payload, **extra)).encode())


def download(store: ObjectStore, prefix: str, key: str) -> tuple[bytes, dict[str, Any]]:
    """Read and verify a payload; :class:`DeserializationError` when it is missing or fails the HMAC check."""
    try:
        metadata = json.loads(store.get_bytes(s3_join(prefix, METADATA)))
        payload = store.get_bytes(s3_join(prefix, PAYLOAD))
    except ValueError as exc:
        raise DeserializationError(f"{prefix}: metadata.json is not valid JSON: {exc}") from None
    expected = str(metadata.get("hmac_sha256", ""))
    if not expected or not hmac.compare_digest(expected, sign(key, payload)):
        raise DeserializationError(
            f"{prefix}: integrity check failed (HMAC mismatch): the payload was not written by this job or its "
            "caller, so it is not unpickled"
        )
    return payload, metadata


def loads(payload: bytes, *, what: str) -> Any:
    """Unpickle a verified payload; :class:`DeserializationError` naming ``what`` when types are missing."""
    try:
        return cloudpickle.loads(payload)
    except Exception as exc:
        raise DeserializationError(f"{what}: cannot be unpickled here: {type(exc).__name__}: {exc}") from None
