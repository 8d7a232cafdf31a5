"""The S3 store's startup check: reach the endpoint, prove the credentials, create the default bucket.

Every failure is a one-line ``ValidationError`` that names the setting to fix (``details["field"]``) and
how, so ``trainforge server start`` can print it as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import botocore.exceptions as bexc

from trainforge.errors import ValidationError

if TYPE_CHECKING:
    from trainforge.storage.s3 import S3ObjectStore

_UNREACHABLE = (
    bexc.EndpointConnectionError,
    bexc.ConnectTimeoutError,
    bexc.ReadTimeoutError,
    bexc.ConnectionClosedError,
    bexc.SSLError,
)
FALLBACK = "or unset TRAINFORGE_STORAGE to keep objects in a local folder"


def _credential_setting(store: S3ObjectStore, default: str) -> str:
    """The setting the credentials came from: ``default`` (an ``AWS_*`` key variable) or ``AWS_PROFILE``."""
    if store.settings.credentials is None and store.settings.profile:
        return "AWS_PROFILE"
    return default


def startup_error(store: S3ObjectStore, exc: Exception, bucket: str) -> ValidationError:
    """The ``ValidationError`` that explains why the check of ``bucket`` failed with ``exc``."""
    s = store.settings
    where = s.endpoint_url or f"AWS S3 ({store.region})"
    if isinstance(exc, _UNREACHABLE):
        var = s.endpoint_var
        if s.endpoint_url:
            fix = f"set {var} to the URL of a running S3-compatible server (e.g. http://127.0.0.1:9000), {FALLBACK}"
        else:
            fix = f"check the network, or set AWS_ENDPOINT_URL_S3 to an S3-compatible server, {FALLBACK}"
        return ValidationError(f"{var}: cannot reach the S3 endpoint {where} ({exc}); {fix}", field=var)
    if isinstance(exc, bexc.NoCredentialsError):
        return ValidationError(
            "AWS_ACCESS_KEY_ID: no AWS credentials found for the S3 object store; set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), {FALLBACK}",
            field="AWS_ACCESS_KEY_ID",
        )
    if not isinstance(exc, bexc.ClientError):
        var = s.endpoint_var
        return ValidationError(f"{var}: the S3 endpoint {where} could not be used ({exc}); {FALLBACK}", field=var)
    err = exc.response.get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", ""))
    key_id = store.resolved_credentials().access_key_id
    if code in ("InvalidAccessKeyId", "InvalidClientTokenId"):
        var = _credential_setting(store, "AWS_ACCESS_KEY_ID")
        return ValidationError(
            f"{var}: {where} does not know the access key {key_id} ({code}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to credentials of that endpoint",
            field=var,
        )
    if code == "SignatureDoesNotMatch":
        var = _credential_setting(store, "AWS_SECRET_ACCESS_KEY")
        return ValidationError(
            f"{var}: {where} rejected the signature made with the secret key of {key_id} ({code}); set "
            "AWS_SECRET_ACCESS_KEY to that access key's secret",
            field=var,
        )
    if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
        var = _credential_setting(store, "AWS_SESSION_TOKEN")
        return ValidationError(
            f"{var}: {where} rejected the session token ({code}: {message}); renew the temporary credentials",
            field=var,
        )
    if code in ("AuthorizationHeaderMalformed", "PermanentRedirect", "301", "IllegalLocationConstraintException"):
        return ValidationError(
            f"AWS_REGION: {where} expects another region than {store.region} ({code}: {message}); set AWS_REGION",
            field="AWS_REGION",
        )
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        var = _credential_setting(store, "AWS_ACCESS_KEY_ID")
        return ValidationError(
            f"{var}: the access key {key_id} may not list or create bucket '{bucket}' on {where} ({code}); grant "
            f"it s3:ListBucket, s3:CreateBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on '{bucket}', or "
            "use other credentials",
            field=var,
        )
    if code == "BucketAlreadyExists":
        return ValidationError(
            f"storage: bucket '{bucket}' on {where} belongs to another account; use credentials of its owner",
            field="storage",
        )
    var = s.endpoint_var
    return ValidationError(
        f"{var}: {where} answered {code or 'an error'} ({message or exc}) to a request for bucket '{bucket}'; "
        f"is it an S3-compatible endpoint? {FALLBACK}",
        field=var,
    )


def check_and_create(store: S3ObjectStore, client: Any, bucket: str) -> None:
    """List ``bucket`` (proves endpoint and credentials) and create it when S3 says it does not exist.

    Raises:
        ValidationError: See :func:`startup_error`.
    """
    store.resolved_credentials()
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        return
    except bexc.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise startup_error(store, exc, bucket) from None
    except (bexc.BotoCoreError, OSError) as exc:
        raise startup_error(store, exc, bucket) from None
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if store.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": store.region}
    try:
        client.create_bucket(**kwargs)
    except bexc.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise startup_error(store, exc, bucket) from None
    except (bexc.BotoCoreError, OSError) as exc:
        raise startup_error(store, exc, bucket) from None
