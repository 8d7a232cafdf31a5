"""``trainforge.s3``: SageMaker's ``S3Uploader`` / ``S3Downloader`` over the session's object store.

Notebooks use these to move data in and out of the object store (``S3Uploader.upload("data/", "s3://b/p")``,
``S3Downloader.read_file("s3://b/p/out.csv")``). They go through :attr:`Session.object_store`, which is the
server's local store or S3, whichever it announces.
"""

from __future__ import annotations

import os
from typing import Any

from trainforge.session import Session
from trainforge.storage import parse_s3_uri


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``("bucket", "key")`` (SageMaker's ``parse_s3_url``).

    Raises:
        ValidationError: ``url`` is not an ``s3://`` URI.
    """
    parsed = parse_s3_uri(url, field="s3_uri")
    return parsed.bucket, parsed.key


def s3_path_join(*args: str, with_end_slash: bool = False) -> str:
    """Join parts with single ``/`` (an ``s3://`` first part keeps its ``//``); empty parts are skipped."""
    parts = [str(arg) for arg in args if arg]
    if not parts:
        return ""
    head = parts[0]
    prefix = ""
    if head.startswith("s3://"):
        prefix, head = "s3://", head[len("s3://") :]
    joined = "/".join(p.strip("/") for p in [head, *parts[1:]] if p.strip("/"))
    out = prefix + joined
    return out + "/" if with_end_slash and not out.endswith("/") else out


def _session(sagemaker_session: Session | None) -> Session:
    return sagemaker_session if sagemaker_session is not None else Session()


class S3Uploader:
    """Upload local files and strings to the object store (``sagemaker.s3.S3Uploader``)."""

    @staticmethod
    def upload(
        local_path: str | os.PathLike[str],
        desired_s3_uri: str,
        kms_key: str | None = None,
        sagemaker_session: Session | None = None,
        callback: Any = None,
    ) -> str:
        """Upload a file or a directory tree under ``desired_s3_uri``.

        A file lands at ``<desired_s3_uri>/<file name>`` and that URI is returned; a directory's files land under
        ``desired_s3_uri`` keeping their relative paths, and ``desired_s3_uri`` is returned. ``kms_key`` and
        ``callback`` are accepted for compatibility (objects are encrypted as the server's store is configured).

        Raises:
            ValidationError: ``local_path`` does not exist, or ``desired_s3_uri`` is not an ``s3://`` URI.
        """
        bucket, key_prefix = parse_s3_url(desired_s3_uri)
        return _session(sagemaker_session).upload_data(local_path, bucket=bucket, key_prefix=key_prefix)

    @staticmethod
    def upload_string_as_file_body(
        body: str, desired_s3_uri: str, kms_key: str | None = None, sagemaker_session: Session | None = None
    ) -> str:
        """Store ``body`` (UTF-8) as the object ``desired_s3_uri`` and return that URI."""
        bucket, key = parse_s3_url(desired_s3_uri)
        return _session(sagemaker_session).upload_string_as_file_body(body, bucket, key, kms_key)

    @staticmethod
    def upload_bytes(
        b: bytes | Any, s3_uri: str, kms_key: str | None = None, sagemaker_session: Session | None = None
    ) -> str:
        """Store ``b`` (bytes, or a readable binary file) as the object ``s3_uri`` and return that URI."""
        parse_s3_url(s3_uri)
        data = b.read() if hasattr(b, "read") else bytes(b)
        _session(sagemaker_session).object_store.put_bytes(s3_uri, data)
        return s3_uri


class S3Downloader:
    """Read and download objects from the object store (``sagemaker.s3.S3Downloader``)."""

    @staticmethod
    def download(
        s3_uri: str,
        local_path: str | os.PathLike[str],
        kms_key: str | None = None,
        sagemaker_session: Session | None = None,
    ) -> list[str]:
        """Download the objects under ``s3_uri`` into the directory ``local_path``; the local paths written.

        As SageMaker: a URI naming one file (it has an extension) lands under its basename, a prefix's objects
        under their keys relative to the prefix.

        Raises:
            NotFoundError: No object is stored under ``s3_uri``.
        """
        bucket, key_prefix = parse_s3_url(s3_uri)
        return _session(sagemaker_session).download_data(local_path, bucket=bucket, key_prefix=key_prefix)

    @staticmethod
    def read_file(s3_uri: str, sagemaker_session: Session | None = None) -> str:
        """The UTF-8 text of the object ``s3_uri``.

        Raises:
            NotFoundError: There is no such object.
        """
        bucket, key = parse_s3_url(s3_uri)
        return _session(sagemaker_session).read_s3_file(bucket, key)

    @staticmethod
    def read_bytes(s3_uri: str, sagemaker_session: Session | None = None) -> bytes:
        """The bytes of the object ``s3_uri``.

        Raises:
            NotFoundError: There is no such object.
        """
        parse_s3_url(s3_uri)
        return _session(sagemaker_session).object_store.get_bytes(s3_uri)

    @staticmethod
    def list(s3_uri: str, sagemaker_session: Session | None = None) -> list[str]:
        """The ``s3://`` URIs of the objects under ``s3_uri``, in key order."""
        bucket, key_prefix = parse_s3_url(s3_uri)
        keys = _session(sagemaker_session).list_s3_files(bucket, key_prefix)
        return [f"s3://{bucket}/{key}" for key in keys]


__all__ = ["S3Downloader", "S3Uploader", "parse_s3_url", "s3_path_join"]
