"""The supervisor's HTTP client for the server's agent routes (``/v1/agent/training-jobs/{name}/...``).

Every request carries ``Authorization: Bearer <agent token>``. A reply is classified once
(:class:`ReplyKind`) so callers decide on meaning, not on status codes: connection errors, timeouts,
5xx, 408 and 429 are worth retrying; 404 means the job is gone; 409 means the server refused this
particular change; any other 4xx is a request the server will never accept. Whenever a request fails
to reach the server, ``server_file`` (when configured) is re-read, so a server restarted on another
port is found again.

An ``https`` server is verified (hostname included) against ``ca_bundle_pem`` (the CA the scheduler hands the
supervisor: the server's ``TRAINFORGE_CA_BUNDLE`` or the certificate it serves) or else the system trust store,
plus the certificate that ``server_file`` names when it names one (this machine's server, same trust as its token).
A certificate that cannot be verified is retried like a lost server, and each failure says so in the log.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from trainforge.client import certificate_failure, verifying_context

log = logging.getLogger(__name__)

AGENT_PREFIX = "/v1/agent/training-jobs"
BACKOFF_START = 0.1
BACKOFF_CAP = 2.0
RESOLUTION_PATIENCE_SECONDS = 60.0  # how long a layer build waits for an unreachable server before going on alone
_RETRY_CODES = frozenset({408, 425, 429})


def _context(ca_bundle_pem: str | None) -> tuple[ssl.SSLContext, bool]:
    """A verifying context of its own (certificates are added to it later) holding ``ca_bundle_pem``, and whether
    the system's trust store must still be loaded into it (when no usable PEM was handed over)."""
    if ca_bundle_pem:
        try:
            return verifying_context(cadata=ca_bundle_pem), False
        except (ssl.SSLError, ValueError) as exc:
            log.error("the CA bundle handed to this supervisor is not usable PEM (%s); using the system's", exc)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, hostname included; CAs loaded when needed
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context, True


class ServerLocator:
    """The server's current base URL, refreshed from ``server_file`` on demand, and the SSL context that verifies
    it (:attr:`ssl_context`, shared by every client of this locator). Thread-safe.

    Args:
        url: The server's base URL as the scheduler gave it.
        server_file: The server's ``server.json`` (or a node-local file with its ``url``), re-read on failures.
        ca_bundle_pem: The CA certificate(s) an https server is verified with (None: the system trust store).
    """

    def __init__(self, url: str, server_file: str | Path | None = None, *, ca_bundle_pem: str | None = None) -> None:
        self._url = url.rstrip("/")
        self._file = Path(server_file) if server_file else None
        self._lock = threading.Lock()
        self.ssl_context, self._system_pending = _context(ca_bundle_pem)
        self._trusted: set[str] = set()
        data = self._read_file()
        if data is not None:
            self._trust(data.get("cert"))
        self._load_system_trust(self._url)

    @property
    def url(self) -> str:
        """The base URL to use now (no trailing slash)."""
        with self._lock:
            return self._url

    def refresh(self) -> bool:
        """Re-read ``server_file``; return True if it names a different URL (which is then used).

        The file is the server's ``server.json``; its ``url`` key (or ``server_url``/``endpoint``) is used.
        A missing or unreadable file changes nothing.
        """
        data = self._read_file()
        if data is None:
            return False
        self._trust(data.get("cert"))
        url = next((data[k] for k in ("url", "server_url", "endpoint") if isinstance(data.get(k), str)), None)
        if not url:
            return False
        url = url.rstrip("/")
        self._load_system_trust(url)
        with self._lock:
            if url == self._url:
                return False
            log.info("server moved: %s -> %s", self._url, url)
            self._url = url
            return True

    def _load_system_trust(self, url: str) -> None:
        """Load the system trust store into :attr:`ssl_context` once an https URL needs it (loading costs ~30 ms,
        which a supervisor of a plain-http server need not pay)."""
        if not url.startswith("https://"):
            return
        with self._lock:
            if self._system_pending:
                self.ssl_context.load_default_certs()
                self._system_pending = False

    def _read_file(self) -> dict[str, Any] | None:
        if self._file is None:
            return None
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _trust(self, cert: object) -> None:
        """Add the certificate the server file names to :attr:`ssl_context` (again when the file changed)."""
        if not isinstance(cert, str) or not cert:
            return
        try:
            version = f"{cert}:{Path(cert).stat().st_mtime_ns}"
        except OSError:
            return
        with self._lock:
            if version in self._trusted:
                return
            try:
                self.ssl_context.load_verify_locations(cafile=cert)
            except (OSError, ssl.SSLError) as exc:
                log.warning("cannot trust the server's certificate %s: %s", cert, exc)
                return
            self._trusted.add(version)


class ReplyKind(StrEnum):
    """What a reply means to the supervisor."""

    OK = "ok"
    RETRY = "retry"
    GONE = "gone"
    CONFLICT = "conflict"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AgentReply:
    """One answer (or failure to get one): its kind, HTTP status (None without a response) and JSON body."""

    kind: ReplyKind
    status_code: int | None
    body: Any
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is ReplyKind.OK

    def field(self, name: str) -> Any:
        """A top-level field of a JSON object body, or None."""
        return self.body.get(name) if isinstance(self.body, dict) else None


def classify(status_code: int) -> ReplyKind:
    """The :class:`ReplyKind` of an HTTP status code."""
    if 200 <= status_code < 300:
        return ReplyKind.OK
    if status_code == 404:
        return ReplyKind.GONE
    if status_code == 409:
        return ReplyKind.CONFLICT
    if status_code >= 500 or status_code in _RETRY_CODES:
        return ReplyKind.RETRY
    return ReplyKind.REJECTED


class AgentClient:
    """Calls the agent routes for one job and host. Safe to share between threads.

    :meth:`send` makes one attempt; :meth:`deliver` retries until the reply is not ``RETRY`` (backoff from
    0.1 s doubling to :data:`BACKOFF_CAP`) or ``cancel`` is set.
    """

    def __init__(
        self,
        *,
        locator: ServerLocator,
        token: str,
        job_name: str,
        host: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        prefix: str = AGENT_PREFIX,
    ) -> None:
        self.locator = locator
        self.prefix = prefix
        self.job_name = job_name
        self.host = host
        self._http = httpx.Client(
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "trainforge-supervisor"},
            transport=transport,
            verify=locator.ssl_context,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _url(self, route: str) -> str:
        return f"{self.locator.url}{self.prefix}/{self.job_name}/{route}"

    def send(self, route: str, body: dict[str, Any], *, timeout: float | None = None) -> AgentReply:
        """POST ``body`` to ``route`` once and classify the outcome; never raises for network errors."""
        return self.call("POST", route, body, timeout=timeout)

    def call(
        self, method: str, route: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> AgentReply:
        """One ``method`` request to ``route`` (with ``body`` as JSON), classified; never raises for network errors."""
        try:
            if timeout is None:
                response = self._http.request(method, self._url(route), json=body)
            else:
                response = self._http.request(method, self._url(route), json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            self.locator.refresh()
            failure = certificate_failure(exc)
            if failure is not None:
                problem = (
                    f"cannot verify the TLS certificate of {self.locator.url} ({failure.verify_message or failure}): "
                    "the supervisor's CA bundle (the server's TRAINFORGE_CA_BUNDLE, else the certificate it serves) "
                    "does not hold its CA"
                )
                return AgentReply(ReplyKind.RETRY, None, None, problem)
            return AgentReply(ReplyKind.RETRY, None, None, f"{type(exc).__name__}: {exc}")
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text[:2000]
        kind = classify(response.status_code)
        error = ""
        if kind is not ReplyKind.OK:
            error = f"HTTP {response.status_code}: {str(payload)[:500]}"
            if kind is ReplyKind.RETRY:
                self.locator.refresh()
        return AgentReply(kind, response.status_code, payload, error)

    def deliver(self, route: str, body: dict[str, Any], *, cancel: threading.Event | None = None) -> AgentReply:
        """POST until the server gives a definite answer (anything but ``RETRY``) or ``cancel`` is set.

        Returns the last reply; it is of kind ``RETRY`` only when cancelled.
        """
        delay = BACKOFF_START
        waiter = cancel or threading.Event()
        while True:
            reply = self.send(route, body)
            if reply.kind is not ReplyKind.RETRY:
                return reply
            log.warning("POST %s failed (%s); retrying in %.1fs", route, reply.error, delay)
            if waiter.wait(delay):
                return reply
            delay = min(BACKOFF_CAP, delay * 2)

    def status_body(self, status: str, message: str, failure_reason: str | None) -> dict[str, Any]:
        """The body of a status report."""
        return {"host": self.host, "status": status, "message": message, "failure_reason": failure_reason}

    def logs_body(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        """The body of a log batch: ``lines`` are ``{"seq", "timestamp", "stream", "message"}``."""
        return {"host": self.host, "lines": lines}

    def heartbeat(self, *, timeout: float = 5.0) -> AgentReply:
        """One heartbeat; the reply carries ``stop_requested`` and the job's statuses."""
        return self.send("heartbeat", {"host": self.host}, timeout=timeout)

    def post_metrics(self, points: list[dict[str, Any]], *, cancel: threading.Event | None = None) -> AgentReply:
        """Deliver metric points ``{"name", "value", "timestamp"}`` (retrying like :meth:`deliver`)."""
        return self.deliver("metrics", {"host": self.host, "points": points}, cancel=cancel)

    def environment_locks(self, *, patience: float = RESOLUTION_PATIENCE_SECONDS) -> AgentEnvironmentLocks:
        """The server's store of ``requirements.txt`` layer resolutions, reached through this client."""
        return AgentEnvironmentLocks(self, patience=patience)


class AgentEnvironmentLocks:
    """Layer resolutions kept by the server (``GET``/``PUT .../environment-locks/{key}``), as
    :class:`trainforge.runtime.locks.layers.ResolutionStore` asks.

    A server that cannot be reached for ``patience`` seconds (retrying as :meth:`AgentClient.deliver` does) does not
    hold the job up: :meth:`get` then answers None and :meth:`put` the caller's own resolution, which is installed
    without being shared.
    """

    def __init__(self, client: AgentClient, *, patience: float = RESOLUTION_PATIENCE_SECONDS) -> None:
        self._client = client
        self._patience = patience

    def _call(self, method: str, key: str, body: dict[str, Any] | None = None) -> AgentReply:
        deadline = time.monotonic() + self._patience
        delay = BACKOFF_START
        while True:
            reply = self._client.call(method, f"environment-locks/{key}", body)
            if reply.kind is not ReplyKind.RETRY or time.monotonic() + delay > deadline:
                return reply
            log.warning("%s environment-locks/%s failed (%s); retrying in %.1fs", method, key, reply.error, delay)
            time.sleep(delay)
            delay = min(BACKOFF_CAP, delay * 2)

    def get(self, key: str) -> str | None:
        """The resolution the server holds for ``key``, or None (none stored, or the server unreachable)."""
        reply = self._call("GET", key)
        found = reply.field("Resolution") if reply.ok else None
        if not reply.ok and reply.kind is not ReplyKind.GONE:
            log.warning("cannot fetch the stored resolution %s: %s", key, reply.error)
        return found if isinstance(found, str) else None

    def put(self, key: str, resolution: str, python: str) -> str:
        """Store ``resolution`` unless the server holds one for ``key``; the one it holds (else ``resolution``)."""
        reply = self._call("PUT", key, {"resolution": resolution, "python": python})
        stored = reply.field("Resolution") if reply.ok else None
        if not isinstance(stored, str):
            log.warning("cannot store the resolution %s (%s): installing it unshared", key, reply.error)
            return resolution
        return stored
