"""The HTTP client of the trainforge REST API: one method per route.

The transport is swappable (``transport=``), so tests can run the SDK against the server app in-process.
Every server error body is turned back into its class of :mod:`trainforge.errors`; a server that cannot be
reached raises :class:`~trainforge.errors.ServerUnavailableError` with a message saying how to start one.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from trainforge.errors import AuthError, ServerUnavailableError, TrainforgeError, ValidationError, error_from_body

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RECONNECT_FOR_S = 120.0
# A follow stream may be silent while a job computes; after this long without a byte we reconnect
# (the cursor makes a reconnect exact, so nothing is lost or repeated).
STREAM_IDLE_S = 300.0
_RETRYABLE_HTTP = frozenset({502, 503, 504})

_LIST_PARAMS = {
    "name_contains": "NameContains",
    "status_equals": "StatusEquals",
    "sort_by": "SortBy",
    "sort_order": "SortOrder",
    "max_results": "MaxResults",
    "next_token": "NextToken",
    "creation_time_after": "CreationTimeAfter",
    "creation_time_before": "CreationTimeBefore",
    "last_modified_time_after": "LastModifiedTimeAfter",
    "last_modified_time_before": "LastModifiedTimeBefore",
}


def unavailable_message(base_url: str, cause: object) -> str:
    """The one-line explanation given when the server at ``base_url`` cannot be reached."""
    return (
        f"cannot reach the trainforge server at {base_url} ({cause}). Start one with "
        "`trainforge server start`, or set TRAINFORGE_ENDPOINT and TRAINFORGE_TOKEN to a running server."
    )


CA_BUNDLE_ENV = "TRAINFORGE_CA_BUNDLE"
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def verifying_context(*, cafile: str | Path | None = None, cadata: str | None = None) -> ssl.SSLContext:
    """An SSL context that verifies servers (hostname included) against ``cafile``/``cadata`` (PEM) when given,
    else against the system trust store.

    A certificate in ``cafile``/``cadata`` is trusted as it is, even one that is not self-signed (so a server's
    own certificate can be pinned). Contexts for files are cached by path and modification time.

    Raises:
        ValidationError: ``cafile`` is missing, unreadable or holds no certificate (names TRAINFORGE_CA_BUNDLE).
    """
    if cadata is not None:
        context = ssl.create_default_context(cadata=cadata)
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        return context
    key = ("", 0, 0)
    if cafile is not None:
        path = Path(cafile).expanduser()
        try:
            stat = path.stat()
        except OSError as exc:
            raise ValidationError(
                f"{CA_BUNDLE_ENV}={cafile}: {exc.strerror or exc}; point it at the server's CA certificate (PEM)",
                field=CA_BUNDLE_ENV,
            ) from None
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _contexts_lock:
        cached = _contexts.get(key)
        if cached is not None:
            return cached
        if cafile is None:
            context = ssl.create_default_context()
        else:
            try:
                context = ssl.create_default_context(cafile=key[0])
            except (OSError, ssl.SSLError) as exc:
                raise ValidationError(
                    f"{CA_BUNDLE_ENV}={cafile} holds no usable PEM certificate ({exc})", field=CA_BUNDLE_ENV
                ) from None
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        _contexts[key] = context
        return context


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate-verification error behind an ``httpx`` error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def certificate_message(url: str, failure: ssl.SSLCertVerificationError, *, server_cert: str | None = None) -> str:
    """The one-line explanation given when the certificate of the server at ``url`` cannot be verified.

    ``server_cert`` is where the server's own certificate is on this machine (from its ``server.json``), named as
    the fix when known.
    """
    reason = failure.verify_message or failure.reason or str(failure)
    if failure.verify_code in _NAME_MISMATCH:
        return (
            f"cannot verify the TLS certificate of {url} ({reason}): reach the server by a name its certificate "
            "holds (TRAINFORGE_ENDPOINT), or give it a certificate for this name"
        )
    where = (
        f"for --tls self-signed: {server_cert}"
        if server_cert
        else "for --tls self-signed: <home>/tls/cert.pem on the server's machine"
    )
    return (
        f"cannot verify the TLS certificate of {url} ({reason}): set {CA_BUNDLE_ENV} to the server's CA "
        f"certificate ({where})"
    )


def _serves_tls(url: str, timeout: float = 2.0) -> bool:
    """Whether the ``http://`` server at ``url`` completes a TLS handshake (it speaks https)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=parts.hostname),
        ):
            return True
    except (OSError, ValueError):
        return False


def tls_problem(base_url: str, exc: httpx.TransportError, *, server_cert: str | None = None) -> TrainforgeError | None:
    """The error for a request to ``base_url`` that failed because of TLS, or None when TLS is not the cause.

    A certificate that cannot be verified is an :class:`~trainforge.errors.AuthError` (retrying cannot help; the
    message says which CA bundle to set). An ``http://`` URL of a server that speaks https, or an ``https://`` URL
    of one that speaks plain http, is a :class:`~trainforge.errors.ServerUnavailableError` saying which scheme.
    """
    failure = certificate_failure(exc)
    if failure is not None:
        return AuthError(certificate_message(base_url, failure, server_cert=server_cert))
    if base_url.startswith("http://"):
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) and _serves_tls(base_url):
            https = "https://" + base_url[len("http://") :]
            return ServerUnavailableError(
                f"cannot talk to the trainforge server at {base_url}: it serves https; use {https} "
                f"(TRAINFORGE_ENDPOINT) with {CA_BUNDLE_ENV} set to its CA certificate"
            )
    elif isinstance(exc, httpx.ConnectError) and "WRONG_VERSION_NUMBER" in str(exc):
        plain = "http://" + base_url[len("https://") :]
        return ServerUnavailableError(
            f"cannot talk to the trainforge server at {base_url}: it does not speak TLS; use {plain}, or start "
            "the server with --tls-cert/--tls-key or --tls self-signed"
        )
    return None


def transport_error(base_url: str, exc: httpx.TransportError, *, server_cert: str | None = None) -> TrainforgeError:
    """The error to raise for a request to ``base_url`` that failed below HTTP: :func:`tls_problem`'s when TLS
    is the cause, else a :class:`~trainforge.errors.ServerUnavailableError` saying how to start a server."""
    problem = tls_problem(base_url, exc, server_cert=server_cert)
    return problem or ServerUnavailableError(unavailable_message(base_url, exc))


def _epoch(value: float | int | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return repr(value.timestamp())
    return repr(float(value))


class _Retry(Exception):
    """Internal: the follow stream should be reopened."""


class TrainforgeClient:
    """A synchronous client of one trainforge server.

    Args:
        base_url: Server URL, e.g. ``http://127.0.0.1:8765``.
        token: Bearer token for the ``/v1`` routes (``None`` sends no ``Authorization`` header).
        transport: An ``httpx`` transport to use instead of the network (in-process tests).
        timeout: Seconds allowed for each ordinary request.
        reconnect_for_s: How long :meth:`follow_logs` keeps trying to reconnect after losing the server.
        ca_bundle: The CA certificate(s) (PEM file) an ``https`` server is verified with; None:
            ``TRAINFORGE_CA_BUNDLE`` from the environment when set, else the system trust store.
        server_cert: Where the server's own certificate is on this machine (from its ``server.json``); named in
            the error when the server's certificate cannot be verified.

    A server whose certificate cannot be verified makes every call raise :class:`~trainforge.errors.AuthError`
    with a one-line message naming ``TRAINFORGE_CA_BUNDLE``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        reconnect_for_s: float = DEFAULT_RECONNECT_FOR_S,
        ca_bundle: str | Path | None = None,
        server_cert: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.reconnect_for_s = reconnect_for_s
        self.server_cert = server_cert
        headers = {"Accept": "application/json", "User-Agent": "trainforge-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        bundle = ca_bundle if ca_bundle is not None else (os.environ.get(CA_BUNDLE_ENV) or None)
        # Only an https server needs the context (a bad bundle must not break a plain-http client).
        verify: ssl.SSLContext | bool = (
            verifying_context(cafile=bundle) if self.base_url.startswith("https://") and transport is None else True
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout, verify=verify
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __enter__(self) -> TrainforgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> TrainforgeError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        return error_from_body(body, response.status_code)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, params=params, json=json_body)
        except httpx.TransportError as exc:
            raise transport_error(self.base_url, exc, server_cert=self.server_cert) from None
        if response.status_code >= 400:
            raise self._error(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise TrainforgeError(
                f"server answered {method} {path} with a body that is not JSON: {response.text[:200]!r}"
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """Send one request to ``path`` (e.g. ``/v1/users``) and return its decoded JSON body (``{}`` if empty).

        For routes without a method of their own here (see :mod:`trainforge.admin_client`). Raises the
        :mod:`trainforge.errors` class the server's error body names, or
        :class:`~trainforge.errors.ServerUnavailableError` when the server cannot be reached.
        """
        return self._request(method, path, params=params, json_body=json_body)

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        content: bytes,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send ``content`` as the raw body of one request and return the response (status < 400).

        For routes whose bodies are not JSON (endpoint invocations). Raises the :mod:`trainforge.errors` class the
        server's error body names, or :class:`~trainforge.errors.ServerUnavailableError`.
        """
        try:
            response = self._http.request(
                method,
                path,
                content=content,
                headers=dict(headers or {}),
                timeout=timeout if timeout is not None else self._http.timeout,
            )
        except httpx.TransportError as exc:
            raise transport_error(self.base_url, exc, server_cert=self.server_cert) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _job_path(name: str, suffix: str = "") -> str:
        return f"/v1/training-jobs/{quote(name, safe='')}{suffix}"

    # -- routes -----------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "version", "pid"}``. Needs no token."""
        result: dict[str, Any] = self._request("GET", "/health")
        return result

    def get_config(self) -> dict[str, Any]:
        """``GET /v1/config``: region, account id, default bucket, object-store config and version."""
        result: dict[str, Any] = self._request("GET", "/v1/config")
        return result

    def create_training_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/training-jobs`` with a CreateTrainingJob body; returns ``{"TrainingJobArn": ...}``.

        Raises:
            ValidationError: The request breaks a rule (the error names the field).
            ConflictError: The name is taken by a different job.
        """
        result: dict[str, Any] = self._request("POST", "/v1/training-jobs", json_body=dict(request))
        return result

    def describe_training_job(self, name: str) -> dict[str, Any]:
        """``GET /v1/training-jobs/{name}``: the DescribeTrainingJob shape (epoch-second timestamps).

        Raises:
            NotFoundError: No job has this name.
        """
        result: dict[str, Any] = self._request("GET", self._job_path(name))
        return result

    def list_training_jobs(
        self,
        *,
        name_contains: str | None = None,
        status_equals: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
        creation_time_after: float | datetime | None = None,
        creation_time_before: float | datetime | None = None,
        last_modified_time_after: float | datetime | None = None,
        last_modified_time_before: float | datetime | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/training-jobs``: one page of ``TrainingJobSummaries`` and, if more exist, ``NextToken``."""
        values: dict[str, Any] = {
            "name_contains": name_contains,
            "status_equals": status_equals,
            "sort_by": sort_by,
            "sort_order": sort_order,
            "max_results": max_results,
            "next_token": next_token,
            "creation_time_after": _epoch(creation_time_after),
            "creation_time_before": _epoch(creation_time_before),
            "last_modified_time_after": _epoch(last_modified_time_after),
            "last_modified_time_before": _epoch(last_modified_time_before),
        }
        params = {_LIST_PARAMS[k]: v for k, v in values.items() if v is not None}
        result: dict[str, Any] = self._request("GET", "/v1/training-jobs", params=params)
        return result

    def iter_training_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every job summary matching ``filters`` (the keywords of :meth:`list_training_jobs`), page by page."""
        token: str | None = filters.pop("next_token", None)
        while True:
            page = self.list_training_jobs(next_token=token, **filters)
            yield from page.get("TrainingJobSummaries", [])
            token = page.get("NextToken")
            if not token:
                return

    def stop_training_job(self, name: str) -> dict[str, Any]:
        """``POST /v1/training-jobs/{name}/stop``: ask the job to stop (``Stopping`` then ``Stopped``).

        Raises:
            NotFoundError: No job has this name.
        """
        result: dict[str, Any] = self._request("POST", self._job_path(name, "/stop"))
        return result

    def rerun_training_job(self, name: str, *, new_name: str | None = None) -> dict[str, Any]:
        """``POST /v1/training-jobs/{name}/rerun``: submit the job's spec again under ``new_name`` (default
        ``<name>-rerun-<n>``); returns ``{"TrainingJobArn", "TrainingJobName", "Warnings"}``, the warnings saying
        what changed since the job ran (channel objects, code object).

        Raises:
            NotFoundError: No job has this name.
            ValidationError: ``new_name`` is not a valid job name.
            ConflictError: ``new_name`` is taken.
        """
        body = {"TrainingJobName": new_name} if new_name is not None else {}
        result: dict[str, Any] = self._request("POST", self._job_path(name, "/rerun"), json_body=body)
        return result

    def remote_function_key(self, name: str) -> str:
        """``GET /v1/remote-function-keys/{name}``: the HMAC key of one remote-function job's payloads."""
        result: dict[str, Any] = self._request("GET", f"/v1/remote-function-keys/{quote(name, safe='')}")
        return str(result["key"])

    def logs(
        self,
        name: str,
        *,
        cursor: int = 0,
        limit: int = 1000,
        host: str | None = None,
        attempt: int | None = None,
    ) -> dict[str, Any]:
        """``GET .../logs``: up to ``limit`` events with a cursor greater than ``cursor``, oldest first.

        Returns ``{"events": [...], "next_cursor", "TrainingJobStatus", "SecondaryStatus"}``; each event has the
        ``attempt`` (run of the job) that wrote it. ``host`` keeps one host's lines, ``attempt`` one attempt's.
        """
        params: dict[str, Any] = {"cursor": cursor, "limit": limit}
        if host:
            params["host"] = host
        if attempt is not None:
            params["attempt"] = attempt
        result: dict[str, Any] = self._request("GET", self._job_path(name, "/logs"), params=params)
        return result

    def metrics(
        self,
        name: str,
        names: Sequence[str] | None = None,
        host: str | None = None,
        *,
        start_time: float | datetime | None = None,
        end_time: float | datetime | None = None,
    ) -> dict[str, Any]:
        """``GET .../metrics``: the job's metric points, ordered by metric name then time.

        Returns ``{"points": [{"name", "value", "timestamp", "host"}, ...]}`` (epoch-second timestamps).
        ``names`` keeps those metrics (default: all, ``system/...`` included), ``host`` one host's points,
        ``start_time``/``end_time`` an interval (inclusive).

        Raises:
            NotFoundError: No job has this name.
        """
        params: dict[str, Any] = {}
        if names:
            params["names"] = list(names)
        if host:
            params["host"] = host
        if start_time is not None:
            params["start_time"] = _epoch(start_time)
        if end_time is not None:
            params["end_time"] = _epoch(end_time)
        result: dict[str, Any] = self._request("GET", self._job_path(name, "/metrics"), params=params)
        return result

    def follow_logs(
        self, name: str, cursor: int = 0, *, host: str | None = None, attempt: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Follow a job's log stream until it ends, reconnecting transparently.

        Yields the stream's objects in order: ``{"type": "status", ...}`` (the current status on each
        connect, then each new transition), ``{"type": "log", "cursor", "host", "seq", "timestamp",
        "stream", "message", "attempt"}``, and last ``{"type": "end", "TrainingJobStatus", "SecondaryStatus"}``.
        A dropped connection is reopened from the last log cursor seen, so every log line is yielded exactly
        once; a status object may be yielded again after a reconnect. ``host`` keeps one host's lines only,
        ``attempt`` one attempt's (a job retried after a lost host runs again as attempt 2, 3, ...).

        Raises:
            NotFoundError: No job has this name.
            ServerUnavailableError: The server stayed unreachable for ``reconnect_for_s`` seconds.
        """
        path = self._job_path(name, "/logs")
        timeout = httpx.Timeout(self._http.timeout.connect or DEFAULT_TIMEOUT_S, read=STREAM_IDLE_S)
        failing_since: float | None = None
        backoff = 0.1
        while True:
            got_any = False
            last_problem: object = "the server closed the stream"
            try:
                params: dict[str, Any] = {"follow": "true", "cursor": cursor}
                if host:
                    params["host"] = host
                if attempt is not None:
                    params["attempt"] = attempt
                with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                    if response.status_code in _RETRYABLE_HTTP:
                        last_problem = f"HTTP {response.status_code}"
                        raise _Retry
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    for line in response.iter_lines():
                        if not line.strip():
                            continue
                        try:
                            event = json.loads(line)
                        except ValueError:
                            # A line cut by a dropped connection: reopen from the last cursor.
                            last_problem = "truncated stream"
                            raise _Retry from None
                        got_any = True
                        if event.get("type") == "log" and "cursor" in event:
                            cursor = max(cursor, int(event["cursor"]))
                        yield event
                        if event.get("type") == "end":
                            return
            except httpx.ReadTimeout:
                # Silence, not failure: reopen at once.
                continue
            except httpx.TransportError as exc:
                failure = certificate_failure(exc)
                if failure is not None:
                    raise AuthError(certificate_message(self.base_url, failure, server_cert=self.server_cert)) from None
                last_problem = exc
            except _Retry:
                pass
            now = time.monotonic()
            if got_any or failing_since is None:
                failing_since = now
                backoff = 0.1
            if now - failing_since >= self.reconnect_for_s:
                raise ServerUnavailableError(unavailable_message(self.base_url, last_problem))
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
