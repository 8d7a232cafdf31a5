"""Handing out the data keys of objects encrypted at rest in the local store (the server keeps them).

Only the server holds the key files (``<home>/kms``). A supervisor asks for the key its job writes with (the job's
``KmsKeyId``, else ``VolumeKmsKeyId``) and for the key of an encrypted object it reads, which it gets only when the
job's role may read that object; a user (the SDK, which reads the local store directly) gets the key of an object
that one of their roles may read (an admin: any). The key id comes from the object's own header, read by the
server, never from the caller alone.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from trainforge.errors import PermissionDeniedError, ValidationError
from trainforge.service.roles import Caller, RoleService
from trainforge.settings import Settings
from trainforge.storage import KeyDirectory, LocalObjectStore, ObjectStore
from trainforge.storage.encryption import job_kms_key_id
from trainforge.storage.scoped import Grants
from trainforge.store.records import JobRecord

KMS_DIR = "kms"


def server_keyring(settings: Settings) -> KeyDirectory:
    """The server's data keys: ``<home>/kms``."""
    return KeyDirectory(settings.resolved_home / KMS_DIR)


def _answer(key_id: str, key: bytes) -> dict[str, Any]:
    return {"KeyId": key_id, "Key": base64.b64encode(key).decode("ascii")}


class DataKeyService:
    """Data keys for supervisors and users, over the server's own object store and key directory."""

    def __init__(self, *, keyring: KeyDirectory, objects: ObjectStore, roles: RoleService) -> None:
        self.keyring = keyring
        self.objects = objects
        self.roles = roles

    def _key_id_of(self, uri: str) -> str:
        if not isinstance(self.objects, LocalObjectStore):
            raise ValidationError(
                "uri: this server's object store encrypts server-side (S3 SSE-KMS); no data key is needed", field="uri"
            )
        key_id = self.objects.encryption_key_id(uri)
        if key_id is None:
            raise ValidationError(f"uri: {uri} is not encrypted; read it directly", field="uri")
        return key_id

    def for_job(self, job: JobRecord, *, uri: str | None, key_id: str | None, for_write: bool) -> dict[str, Any]:
        """The key a job's supervisor needs: to write (the job's own key id), or to read the object ``uri``.

        Raises:
            PermissionDeniedError: The key is not the job's, or the job's role may not read ``uri``.
            ValidationError: Neither ``uri`` nor a write was asked for, or ``uri`` is not encrypted.
        """
        if for_write:
            own = job_kms_key_id(job.spec)
            if own is None or key_id != own:
                raise PermissionDeniedError(f"job {job.name!r} writes with key '{own}', not '{key_id}'")
            return _answer(own, self.keyring.data_key(own, uri=uri or "", for_write=True))
        if not uri:
            raise ValidationError("uri: name the encrypted object to read", field="uri")
        if job.role_json:
            Grants.from_role(json.loads(job.role_json)).check_read(uri)
        found = self._key_id_of(uri)
        return _answer(found, self.keyring.data_key(found, uri=uri, for_write=False))

    def for_user(self, caller: Caller, uri: str) -> dict[str, Any]:
        """The key of the encrypted object ``uri`` for ``caller``, when one of their roles may read it (an admin
        always may).

        Raises:
            PermissionDeniedError: No role of the caller may read ``uri``.
        """
        grants = self.roles.grants_of(caller)
        if grants is not None:
            grants.check_read(uri)
        found = self._key_id_of(uri)
        return _answer(found, self.keyring.data_key(found, uri=uri, for_write=False))
