"""The object store as one job's supervisor and user code may use it.

:func:`job_object_store` is the store every read and write the supervisor does for a job goes through: scoped to the
job's role (a read needs a read or write grant, a write a write grant; a refusal is a ``PermissionDeniedError``
that fails the job with ``ClientError: ... access denied to s3://...``), and writing encrypted at rest under the
job's ``KmsKeyId`` (else ``VolumeKmsKeyId``). :func:`code_storage_environment` is what the job's own code is given
to reach the store itself: on S3, credentials scoped to the role (STS ``AssumeRole`` with a session policy) where
the endpoint supports STS, else none; on the local store nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import PermissionDeniedError, StorageError
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.runtime.failure import client_error
from trainforge.runtime.launch import SupervisorConfig
from trainforge.storage import CallbackKeyring, ObjectStore, aws_environment, open_store, s3_join
from trainforge.storage.encryption import job_kms_key_id
from trainforge.storage.scoped import Grants, ScopedObjectStore

log = logging.getLogger(__name__)

KEY_FETCH_DEADLINE_S = 60.0
STS_MIN_SECONDS = 900
STS_MAX_SECONDS = 43200
STS_MARGIN_SECONDS = 600
"""Credentials outlive the job's ``MaxRuntimeInSeconds`` by this much (the upload after a stop still needs them)."""
_NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def job_grants(cfg: SupervisorConfig) -> Grants | None:
    """The job's role as grants; None when the job is unrestricted (no role, or read and write of ``s3://``)."""
    if cfg.role is None:
        return None
    grants = Grants.from_role(cfg.role)
    return None if grants.unrestricted else grants


def check_job_outputs(cfg: SupervisorConfig, grants: Grants) -> None:
    """Fail the job now (``ClientError``) when its role cannot write where the job will write: its output path
    (``<S3OutputPath>/<job>/``) and its checkpoint location."""
    spec = cfg.spec
    output = (spec.get("OutputDataConfig") or {}).get("S3OutputPath")
    if isinstance(output, str) and output.startswith("s3://"):
        target = s3_join(output, cfg.job_name) + "/"
        if not grants.can_write(target):
            raise client_error(f"OutputDataConfig.S3OutputPath: {grants.denied(target, 'write').message}")
    checkpoint = (spec.get("CheckpointConfig") or {}).get("S3Uri")
    if isinstance(checkpoint, str) and checkpoint.startswith("s3://"):
        target = checkpoint.rstrip("/") + "/"
        if not grants.can_write(target):
            raise client_error(f"CheckpointConfig.S3Uri: {grants.denied(target, 'write').message}")


class _AgentKeys:
    """Fetches data keys from the server's agent route with the job's agent token."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self._client: AgentClient | None = None
        self._lock = threading.Lock()

    def _agent(self) -> AgentClient:
        with self._lock:
            if self._client is None:
                self._client = AgentClient(
                    locator=ServerLocator(
                        self.cfg.server_url, self.cfg.server_file, ca_bundle_pem=self.cfg.ca_bundle_pem
                    ),
                    token=self.cfg.agent_token,
                    job_name=self.cfg.job_name,
                    host=self.cfg.host,
                )
            return self._client

    def __call__(self, key_id: str, uri: str, for_write: bool) -> bytes:
        body = {"key_id": key_id, "uri": uri or None, "for_write": for_write}
        deadline = time.monotonic() + KEY_FETCH_DEADLINE_S
        while True:
            reply = self._agent().send("data-key", body)
            if reply.kind is not ReplyKind.RETRY or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if reply.ok and isinstance(reply.field("Key"), str):
            return base64.b64decode(reply.field("Key"))
        message = ""
        if isinstance(reply.body, dict):
            message = str((reply.body.get("error") or {}).get("message") or "")
        message = message or reply.error or "no answer"
        if reply.status_code == 403:
            raise PermissionDeniedError(f"the server refused the key of '{key_id}' for {uri or 'writing'}: {message}")
        raise StorageError(f"cannot get the key of '{key_id}' from the server for {uri or 'writing'}: {message}")


def job_object_store(cfg: SupervisorConfig) -> ObjectStore:
    """The object store for the job ``cfg`` describes: scoped to its role, encrypting under its key.

    Raises:
        JobFailed: (``ClientError``) the role cannot write the job's output path or checkpoint location.
        TrainforgeError: The store cannot be opened.
    """
    store = open_store(cfg.storage, keyring=CallbackKeyring(_AgentKeys(cfg)))
    key_id = job_kms_key_id(cfg.spec)
    if key_id is not None:
        store = store.with_encryption(key_id)
    grants = job_grants(cfg)
    if grants is None:
        return store
    check_job_outputs(cfg, grants)
    return ScopedObjectStore(store, grants)


@dataclass(frozen=True)
class CodeStorage:
    """What the job's code gets to reach the object store: environment variables, and a line for the job log."""

    env: dict[str, str] = field(default_factory=dict)
    notice: str | None = None


def session_policy(grants: Grants) -> dict[str, Any]:
    """An IAM session policy allowing exactly the role's prefixes (read: Get/List; write: also Put/Delete)."""

    def resource(prefix: str) -> tuple[str, str]:
        rest = prefix[len("s3://") :]
        bucket, _, key = rest.partition("/")
        return (bucket or "*"), key

    statements: list[dict[str, Any]] = []
    for access, prefixes in (("read", (*grants.read, *grants.write)), ("write", grants.write)):
        objects = sorted({f"arn:aws:s3:::{b}/{k}*" for b, k in map(resource, prefixes)})
        if not objects:
            continue
        actions = (
            ["s3:GetObject"] if access == "read" else ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        )
        statements.append({"Effect": "Allow", "Action": actions, "Resource": objects})
        if access == "read":
            for bucket, key in sorted(set(map(resource, prefixes))):
                statements.append(
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket"],
                        "Resource": [f"arn:aws:s3:::{bucket}"],
                        **({"Condition": {"StringLike": {"s3:prefix": [f"{key}*"]}}} if key else {}),
                    }
                )
    return {"Version": "2012-10-17", "Statement": statements}


def _duration(cfg: SupervisorConfig) -> int:
    runtime = int((cfg.spec.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or 86400)
    return max(STS_MIN_SECONDS, min(STS_MAX_SECONDS, runtime + STS_MARGIN_SECONDS))


def _assume_role(cfg: SupervisorConfig, grants: Grants) -> dict[str, str]:
    """Short-lived credentials limited to ``grants`` (STS ``AssumeRole`` at the store's endpoint)."""
    import boto3  # the [s3] extra: present whenever the store is S3

    from trainforge.storage.s3_settings import S3Settings

    settings = S3Settings.from_config(cfg.storage)
    creds = settings.credentials
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key_id if creds else None,
        aws_secret_access_key=creds.secret_access_key if creds else None,
        aws_session_token=creds.session_token if creds else None,
        region_name=settings.region or "us-east-1",
    )
    from botocore.config import Config

    sts = session.client(
        "sts",
        endpoint_url=settings.endpoint_url,
        config=Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 2}),
    )
    answer = sts.assume_role(
        RoleArn=f"arn:aws:iam::{cfg.account_id}:role/{grants.name}",
        RoleSessionName=cfg.job_name[:64],
        Policy=json.dumps(session_policy(grants), separators=(",", ":")),
        DurationSeconds=_duration(cfg),
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": str(answer["AccessKeyId"]),
        "AWS_SECRET_ACCESS_KEY": str(answer["SecretAccessKey"]),
        "AWS_SESSION_TOKEN": str(answer["SessionToken"]),
    }


def code_storage_environment(cfg: SupervisorConfig) -> CodeStorage:
    """How the job's code reaches the object store.

    Local store: nothing (the code has no business in the server's store; the sandbox hides it). S3 with an
    unrestricted role: the endpoint, region and the supervisor's credentials (``AWS_*``, ``S3_ENDPOINT_URL``). S3 with
    a restricted role: the endpoint and region with short-lived credentials scoped to the role's prefixes where the
    endpoint supports STS ``AssumeRole``; otherwise no credentials at all (credential variables blanked), and the
    notice says so.
    """
    if cfg.storage.get("kind") != "s3":
        return CodeStorage()
    grants = job_grants(cfg)
    if grants is None:
        return CodeStorage(aws_environment(cfg.storage))
    base = aws_environment({k: v for k, v in cfg.storage.items() if k != "credentials"})
    try:
        scoped = _assume_role(cfg, grants)
    except Exception as exc:  # any STS failure: unsupported endpoint, denied, policy too large
        log.info("no scoped credentials for %s: %s", cfg.job_name, exc)
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return CodeStorage(
            {**base, **_NO_CREDENTIALS},
            f"[trainforge] Object-store credentials: none for the job's code (role '{grants.name}' is restricted and "
            f"the endpoint gave no scoped credentials: {reason}); channels, checkpoints and uploads still go through "
            "trainforge",
        )
    return CodeStorage(
        {**base, **_NO_CREDENTIALS, **scoped},
        f"[trainforge] Object-store credentials: short-lived (up to {_duration(cfg)} s), limited to role "
        f"'{grants.name}' ({len(grants.read)} read, {len(grants.write)} write prefixes)",
    )
