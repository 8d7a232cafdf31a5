"""The object store on an S3-compatible endpoint (extra ``[s3]``: boto3).

Objects are S3 objects: ``s3://bucket/key`` is key ``key`` of bucket ``bucket``. Small objects go up in one
``PutObject``; from ``multipart_threshold`` on, files and streams go up as a parallel multipart upload and come
down as parallel ranged GETs (``part_size`` parts, ``max_concurrency`` threads; boto3's transfer manager).
S3 publishes an object only once it is whole (a multipart upload on completion; a failed one is aborted), so
every put is atomic. Unlike the local store, buckets are explicit: a bucket that does not exist is an error
that says so (``NotFoundError``), never an empty listing.

This module imports boto3; :func:`trainforge.storage.open_store` imports it only for ``kind: s3``.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import botocore.exceptions as bexc
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from s3transfer.manager import TransferManager

from trainforge.errors import NotFoundError, StorageError, TrainforgeError, ValidationError
from trainforge.storage.base import ObjectInfo
from trainforge.storage.s3_settings import DEFAULT_REGION, S3Credentials, S3Settings
from trainforge.storage.uri import S3Uri, check_key, parse_s3_uri

CHUNK = 1024 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_RETRIES = {"mode": "standard", "max_attempts": 5}
_CHECK_RETRIES = {"mode": "standard", "total_max_attempts": 2}


def _code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _etag(value: object) -> str | None:
    """An S3 ETag without its quotes (None when the reply has none)."""
    return value.strip('"') if isinstance(value, str) and value else None


def _message(exc: bexc.ClientError) -> str:
    err = exc.response.get("Error", {})
    return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")


def bucket_missing(bucket: str, uri: str) -> NotFoundError:
    """The error every operation raises for a bucket that does not exist."""
    return NotFoundError(f"bucket '{bucket}' does not exist ({uri})", details={"bucket": bucket, "uri": uri})


class S3ObjectStore:
    """Objects on an S3-compatible endpoint; same promises as :class:`~trainforge.storage.LocalObjectStore`.

    Keys that leave their bucket raise ``ValidationError``; a missing object raises ``NotFoundError`` (a
    missing bucket too, with a message saying the bucket does not exist); anything else (unreachable
    endpoint, rejected credentials, denied access) raises ``StorageError``. The client is created on first
    use and shared by threads.
    """

    def __init__(self, *, settings: S3Settings | None = None, sse_kms_key_id: str | None = None) -> None:
        self.settings = settings or S3Settings.from_env()
        self.sse_kms_key_id = sse_kms_key_id
        self._lock = threading.RLock()
        self._session: boto3.session.Session | None = None
        self._client: Any = None

    def with_encryption(self, key_id: str) -> S3ObjectStore:
        """This store, asking S3 to encrypt every object it writes with SSE-KMS under ``key_id``
        (``ServerSideEncryption=aws:kms``, ``SSEKMSKeyId``); reads are unchanged (S3 decrypts)."""
        other = S3ObjectStore(settings=self.settings, sse_kms_key_id=key_id)
        with self._lock:
            other._session, other._client = self._session, self._client
        return other

    def _put_args(self) -> dict[str, str]:
        if self.sse_kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.sse_kms_key_id}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3ObjectStore:
        """The store a ``{"kind": "s3", ...}`` config describes (see :meth:`S3Settings.from_config`)."""
        return cls(settings=S3Settings.from_config(config))

    # -- clients -------------------------------------------------------------------------------------------

    @property
    def session(self) -> boto3.session.Session:
        """The boto3 session: explicit credentials, else ``AWS_PROFILE``, else the default chain."""
        with self._lock:
            if self._session is None:
                s = self.settings
                creds = s.credentials
                try:
                    self._session = boto3.session.Session(
                        aws_access_key_id=creds.access_key_id if creds else None,
                        aws_secret_access_key=creds.secret_access_key if creds else None,
                        aws_session_token=creds.session_token if creds else None,
                        region_name=s.region,
                        profile_name=s.profile if creds is None else None,
                    )
                except bexc.ProfileNotFound as exc:
                    raise ValidationError(
                        f"AWS_PROFILE: {exc}; set AWS_PROFILE to a profile of ~/.aws/config or unset it",
                        field="AWS_PROFILE",
                    ) from None
            return self._session

    @property
    def region(self) -> str:
        """The region requests are signed for: the setting, else the profile's, else ``us-east-1``."""
        return self.settings.region or self.session.region_name or DEFAULT_REGION

    def _make_client(self, *, check: bool = False) -> Any:
        s = self.settings
        options: dict[str, Any] = {
            "region_name": self.region,
            "signature_version": "s3v4",
            "s3": {"addressing_style": s.addressing_style},
            "max_pool_connections": max(10, 2 * s.max_concurrency),
            "connect_timeout": 5 if check else 10,
            "read_timeout": 15 if check else 120,
            "retries": _CHECK_RETRIES if check else _RETRIES,
        }
        if s.endpoint_url:
            # Other S3 servers often reject the CRC trailers AWS added in 2025; send checksums only when needed.
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        return self.session.client("s3", endpoint_url=s.endpoint_url, config=Config(**options))

    @property
    def client(self) -> Any:
        """The boto3 S3 client (thread-safe), created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _transfer(self) -> TransferManager:
        s = self.settings
        config = TransferConfig(
            multipart_threshold=s.multipart_threshold,
            multipart_chunksize=s.part_size,
            max_concurrency=s.max_concurrency,
            use_threads=True,
        )
        return TransferManager(self.client, config)

    def resolved_credentials(self) -> S3Credentials:
        """The credentials this store signs with, resolved now (environment, profile or instance role).

        Raises:
            ValidationError: No credentials can be found (names ``AWS_ACCESS_KEY_ID``).
        """
        creds = self.settings.credentials
        if creds is not None:
            return creds
        found = self.session.get_credentials()
        if found is None:
            raise ValidationError(
                "AWS_ACCESS_KEY_ID: no AWS credentials found for the S3 object store; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
                field="AWS_ACCESS_KEY_ID",
            )
        frozen = found.get_frozen_credentials()
        return S3Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def config(self, *, credentials: bool) -> dict[str, Any]:
        """This store's ``storage`` config, with the resolved credentials when ``credentials`` is true."""
        base = S3Settings(
            endpoint_url=self.settings.endpoint_url,
            region=self.region,
            multipart_threshold=self.settings.multipart_threshold,
            part_size=self.settings.part_size,
            max_concurrency=self.settings.max_concurrency,
        )
        return base.to_config(credentials=self.resolved_credentials() if credentials else None)

    # -- errors --------------------------------------------------------------------------------------------

    def _error(self, exc: Exception, action: str, uri: str) -> TrainforgeError:
        """The trainforge error for a failed ``action`` on ``uri``."""
        where = self.settings.endpoint_url or "AWS S3"
        if isinstance(exc, TrainforgeError):
            return exc
        if isinstance(exc, bexc.ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return bucket_missing(parse_s3_uri(uri).bucket, uri)
            if code in _NOT_FOUND:
                return NotFoundError(f"no object at {uri}")
            if code == "InvalidBucketName":
                return ValidationError(f"uri: {uri!r} has an invalid bucket name", field="uri")
            if code in ("InvalidAccessKeyId", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"):
                return StorageError(f"could not {action} {uri}: {where} rejected the credentials ({_message(exc)})")
            return StorageError(f"could not {action} {uri}: {_message(exc) or exc}")
        if isinstance(exc, bexc.NoCredentialsError):
            return StorageError(
                f"could not {action} {uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE)"
            )
        if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError):
            return StorageError(f"could not {action} {uri}: cannot reach {where} ({exc})")
        if isinstance(exc, OSError):
            return StorageError(f"could not {action} {uri}: {exc}")
        return StorageError(f"could not {action} {uri}: {type(exc).__name__}: {exc}")

    def _missing(self, parsed: S3Uri, uri: str) -> NotFoundError:
        """``NotFoundError`` for a 404 without a body (HEAD): says whether the bucket itself is missing."""
        try:
            self.client.head_bucket(Bucket=parsed.bucket)
        except bexc.ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return bucket_missing(parsed.bucket, uri)
        except bexc.BotoCoreError:
            pass
        return NotFoundError(f"no object at {uri}")

    # -- URIs ----------------------------------------------------------------------------------------------

    @staticmethod
    def _parse(uri: str, *, field: str = "uri") -> S3Uri:
        parsed = parse_s3_uri(uri, field=field)
        check_key(parsed.key, field=field)
        if parsed.bucket in (".", ".."):
            raise ValidationError(f"{field}: bad bucket name {parsed.bucket!r}", field=field)
        return parsed

    def _object(self, uri: str) -> S3Uri:
        parsed = self._parse(uri)
        if not parsed.key or parsed.key.endswith("/"):
            raise ValidationError(f"uri: {uri!r} names a prefix, not an object", field="uri")
        return parsed

    # -- writes --------------------------------------------------------------------------------------------

    def _upload(self, parsed: S3Uri, uri: str, source: str | BinaryIO) -> None:
        try:
            with self._transfer() as manager:
                manager.upload(source, parsed.bucket, parsed.key, extra_args=self._put_args() or None).result()
        except Exception as exc:
            raise self._error(exc, "store", uri) from None

    def put_file(self, uri: str, path: Path) -> ObjectInfo:
        """Store the file at ``path`` under ``uri`` (multipart from ``multipart_threshold`` on); atomic."""
        parsed = self._object(uri)
        try:
            size = Path(path).stat().st_size
            small = Path(path).read_bytes() if size < self.settings.multipart_threshold else None
        except OSError as exc:
            raise StorageError(f"could not store {uri}: {exc}") from None
        if small is not None:
            return self.put_bytes(uri, small)
        self._upload(parsed, uri, str(path))
        return ObjectInfo(parsed.bucket, parsed.key, size, time.time())

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        """Store ``data`` under ``uri`` atomically."""
        parsed = self._object(uri)
        if len(data) >= self.settings.multipart_threshold:
            self._upload(parsed, uri, io.BytesIO(data))
        else:
            try:
                self.client.put_object(Bucket=parsed.bucket, Key=parsed.key, Body=data, **self._put_args())
            except Exception as exc:
                raise self._error(exc, "store", uri) from None
        return ObjectInfo(parsed.bucket, parsed.key, len(data), time.time())

    def put_stream(self, uri: str, stream: BinaryIO) -> ObjectInfo:
        """Store everything read from ``stream`` under ``uri`` atomically (multipart when it is large)."""
        parsed = self._object(uri)
        self._upload(parsed, uri, stream)
        return self.info(uri)

    # -- reads ---------------------------------------------------------------------------------------------

    def info(self, uri: str) -> ObjectInfo:
        """Size and modification time of the object at ``uri``; ``NotFoundError`` if there is none."""
        parsed = self._object(uri)
        try:
            head = self.client.head_object(Bucket=parsed.bucket, Key=parsed.key)
        except bexc.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise self._missing(parsed, uri) from None
            raise self._error(exc, "read", uri) from None
        except Exception as exc:
            raise self._error(exc, "read", uri) from None
        return ObjectInfo(
            parsed.bucket,
            parsed.key,
            int(head["ContentLength"]),
            head["LastModified"].timestamp(),
            _etag(head.get("ETag")),
        )

    def get_bytes(self, uri: str) -> bytes:
        """The content of the object at ``uri``."""
        parsed = self._object(uri)
        try:
            body = self.client.get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"]
            with body:
                data: bytes = body.read()
            return data
        except Exception as exc:
            raise self._error(exc, "read", uri) from None

    def read_chunks(self, uri: str, *, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Open the object now (``NotFoundError`` is raised by this call) and iterate over its content."""
        parsed = self._object(uri)
        try:
            body = self.client.get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"]
        except Exception as exc:
            raise self._error(exc, "read", uri) from None

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            except (bexc.BotoCoreError, OSError) as exc:
                raise self._error(exc, "read", uri) from None
            finally:
                body.close()

        return chunks()

    def download_file(self, uri: str, dest: Path) -> None:
        """Write the object to a new file at ``dest`` (ranged parallel GETs for large objects)."""
        parsed = self._object(uri)
        dest = Path(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self._transfer() as manager:
                manager.download(parsed.bucket, parsed.key, str(dest)).result()
            os.chmod(dest, 0o644)
        except bexc.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise self._missing(parsed, uri) from None
            raise self._error(exc, "read", uri) from None
        except Exception as exc:
            raise self._error(exc, "read", uri) from None

    def list(self, uri_prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with the prefix's key, in key order; a missing bucket raises ``NotFoundError``."""
        parsed = self._parse(uri_prefix, field="prefix")
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=parsed.bucket, Prefix=parsed.key)
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        parsed.bucket,
                        item["Key"],
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                        _etag(item.get("ETag")),
                    )
        except Exception as exc:
            raise self._error(exc, "list", uri_prefix) from None

    def exists(self, uri: str) -> bool:
        """Whether an object is stored at exactly ``uri`` (False in a missing bucket)."""
        try:
            self.info(uri)
        except NotFoundError:
            return False
        return True

    def delete(self, uri: str) -> None:
        """Remove the object at ``uri`` if it exists (nothing to do in a missing bucket)."""
        parsed = self._object(uri)
        try:
            self.client.delete_object(Bucket=parsed.bucket, Key=parsed.key)
        except bexc.ClientError as exc:
            if _code(exc) not in _NOT_FOUND | {"NoSuchBucket"}:
                raise self._error(exc, "delete", uri) from None
        except Exception as exc:
            raise self._error(exc, "delete", uri) from None

    # -- buckets -------------------------------------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist; the server's startup check.

        Fails fast (one retry, short timeouts) with a ``ValidationError`` naming the setting to fix: an
        unreachable endpoint (``AWS_ENDPOINT_URL_S3``), an unknown access key (``AWS_ACCESS_KEY_ID``), a wrong
        secret (``AWS_SECRET_ACCESS_KEY``), an expired token (``AWS_SESSION_TOKEN``), or denied access.
        """
        from trainforge.storage.s3_check import check_and_create

        check_and_create(self, self._make_client(check=True), bucket)
