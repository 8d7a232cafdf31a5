"""Object stores addressed by ``s3://`` URIs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainforge.errors import ValidationError
from trainforge.storage.base import ObjectInfo, ObjectStore
from trainforge.storage.encryption import CallbackKeyring, KeyDirectory, Keyring
from trainforge.storage.local import LocalObjectStore
from trainforge.storage.uri import S3Uri, check_key, parse_s3_uri, s3_join

__all__ = [
    "CallbackKeyring",
    "KeyDirectory",
    "Keyring",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Uri",
    "aws_environment",
    "check_key",
    "open_store",
    "parse_s3_uri",
    "s3_join",
]


def open_store(config: Mapping[str, Any], *, keyring: Keyring | None = None) -> ObjectStore:
    """The object store a server's storage config describes.

    ``keyring`` gives the local store the data keys of objects encrypted at rest (see
    :mod:`trainforge.storage.encryption`); S3 decrypts server-side and needs none.

    ``{"kind": "local", "root": "/path"}``: the folder store. ``{"kind": "s3", "endpoint_url", "region",
    "addressing_style"[, "credentials": {"access_key_id", "secret_access_key", "session_token"}]}``: an
    S3-compatible endpoint (extra ``[s3]``); without ``credentials`` this process's own ``AWS_*`` environment
    or profile signs the requests.

    Raises:
        ValidationError: An unknown kind, or ``s3`` without boto3 installed.
    """
    kind = config.get("kind", "local")
    if kind == "local":
        return LocalObjectStore(Path(str(config["root"])), keyring=keyring)
    if kind == "s3":
        try:
            from trainforge.storage.s3 import S3ObjectStore
        except ImportError as exc:
            raise ValidationError(
                f"storage.kind: the S3 object store needs boto3 ({exc}); install trainforge[s3]", field="storage.kind"
            ) from None
        return S3ObjectStore.from_config(config)
    raise ValidationError(f"storage.kind: unknown object store kind {kind!r} (known: local, s3)", field="storage.kind")


def aws_environment(config: Mapping[str, Any]) -> dict[str, str]:
    """The ``AWS_*`` variables that point AWS tools (boto3, the AWS CLI, SageMaker's toolkit) at the object store
    a storage config describes: endpoint (``AWS_ENDPOINT_URL_S3`` and the toolkit's ``S3_ENDPOINT_URL``), region,
    and the config's credentials when it carries them. Empty for the local store."""
    if config.get("kind") != "s3":
        return {}
    env: dict[str, str] = {}
    endpoint = config.get("endpoint_url")
    if endpoint:
        env["AWS_ENDPOINT_URL_S3"] = env["S3_ENDPOINT_URL"] = str(endpoint)
    region = config.get("region")
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = str(region)
    creds = config.get("credentials")
    if isinstance(creds, Mapping):
        env["AWS_ACCESS_KEY_ID"] = str(creds["access_key_id"])
        env["AWS_SECRET_ACCESS_KEY"] = str(creds["secret_access_key"])
        if creds.get("session_token"):
            env["AWS_SESSION_TOKEN"] = str(creds["session_token"])
    return env
