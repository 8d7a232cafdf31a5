"""How to reach an S3-compatible object store, read the way AWS tools read it.

Pure data, no client library: the server turns these settings into the ``storage`` config it hands to
supervisors (with credentials) and to SDKs (``GET /v1/config``, without them), and :mod:`trainforge.storage.s3`
opens a store from that config.

Environment (as the AWS CLI reads it): ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (unset: AWS itself);
``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``), else ``AWS_PROFILE`` or the default
credential chain; ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's region, else ``us-east-1``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from trainforge.errors import ValidationError

MiB = 1024 * 1024
DEFAULT_REGION = "us-east-1"
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 32 * MiB
DEFAULT_MAX_CONCURRENCY = 4
MIN_PART_SIZE = 5 * MiB
"""S3's smallest multipart part (all parts but the last)."""

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 endpoint is and how to sign requests to it.

    ``endpoint_url`` None means AWS S3 itself (virtual-hosted addressing); any other endpoint is addressed
    path-style (``http://host:port/bucket/key``), which every S3-compatible server understands. ``credentials``
    None means the default chain (environment, ``profile``, instance role). ``endpoint_var`` names the
    variable the endpoint came from, so errors can say which setting to fix.
    """

    endpoint_url: str | None = None
    region: str | None = None
    credentials: S3Credentials | None = None
    profile: str | None = None
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    endpoint_var: str = "AWS_ENDPOINT_URL_S3"

    def __post_init__(self) -> None:
        if self.part_size < MIN_PART_SIZE:
            raise ValidationError(
                f"storage.part_size: at least {MIN_PART_SIZE} bytes (S3's minimum part)", field="storage.part_size"
            )
        if self.multipart_threshold < 1 or self.max_concurrency < 1:
            raise ValidationError("storage: multipart_threshold and max_concurrency must be positive", field="storage")

    @property
    def addressing_style(self) -> str:
        """``path`` for a custom endpoint, ``auto`` (virtual-hosted) for AWS."""
        return "path" if self.endpoint_url else "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """Settings from ``AWS_*`` variables (``os.environ`` by default); blank values count as unset."""
        env = os.environ if environ is None else environ

        def first(names: tuple[str, ...]) -> tuple[str | None, str | None]:
            for name in names:
                value = (env.get(name) or "").strip()
                if value:
                    return name, value
            return None, None

        endpoint_var, endpoint = first(ENDPOINT_VARS)
        _, region = first(REGION_VARS)
        key_id = (env.get("AWS_ACCESS_KEY_ID") or "").strip()
        secret = (env.get("AWS_SECRET_ACCESS_KEY") or "").strip()
        token = (env.get("AWS_SESSION_TOKEN") or "").strip() or None
        credentials = S3Credentials(key_id, secret, token) if key_id and secret else None
        if bool(key_id) != bool(secret):
            missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
            raise ValidationError(
                f"{missing}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together", field=missing
            )
        return cls(
            endpoint_url=endpoint.rstrip("/") if endpoint else None,
            region=region,
            credentials=credentials,
            profile=(env.get("AWS_PROFILE") or "").strip() or None,
            endpoint_var=endpoint_var or "AWS_ENDPOINT_URL_S3",
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> S3Settings:
        """Settings from a server's ``storage`` config (``kind: s3``).

        The config's endpoint and region win (they describe the deployment). Its ``credentials``, when
        present (the supervisors' config), are used as given; without them (the SDK's config) credentials
        come from this process's own ``AWS_*`` environment or profile, as with SageMaker.
        """
        local = cls.from_env(environ)
        creds = config.get("credentials")
        credentials = local.credentials
        profile = local.profile
        if isinstance(creds, Mapping):
            credentials = S3Credentials(
                str(creds["access_key_id"]), str(creds["secret_access_key"]), creds.get("session_token") or None
            )
            profile = None
        endpoint = str(config["endpoint_url"]).rstrip("/") if config.get("endpoint_url") else None
        # Errors name the variable the endpoint came from; one from elsewhere is the server's config.
        same = endpoint is None or endpoint == local.endpoint_url
        return replace(
            local,
            endpoint_url=endpoint or local.endpoint_url,
            region=str(config["region"]) if config.get("region") else local.region,
            credentials=credentials,
            profile=profile,
            multipart_threshold=int(config.get("multipart_threshold") or local.multipart_threshold),
            part_size=int(config.get("part_size") or local.part_size),
            max_concurrency=int(config.get("max_concurrency") or local.max_concurrency),
            endpoint_var=local.endpoint_var if same else "storage.endpoint_url",
        )

    def to_config(self, *, credentials: S3Credentials | None = None) -> dict[str, Any]:
        """The ``storage`` config: ``{"kind": "s3", "endpoint_url", "region", "addressing_style"}`` (the last one
        informational: it follows from the endpoint), plus
        ``"credentials": {"access_key_id", "secret_access_key", "session_token"}`` when ``credentials`` is given.

        Part sizes are included only when they differ from the defaults.
        """
        out: dict[str, Any] = {
            "kind": "s3",
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "addressing_style": self.addressing_style,
        }
        for name, default in (
            ("multipart_threshold", DEFAULT_MULTIPART_THRESHOLD),
            ("part_size", DEFAULT_PART_SIZE),
            ("max_concurrency", DEFAULT_MAX_CONCURRENCY),
        ):
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        if credentials is not None:
            out["credentials"] = {
                "access_key_id": credentials.access_key_id,
                "secret_access_key": credentials.secret_access_key,
                "session_token": credentials.session_token,
            }
        return out
