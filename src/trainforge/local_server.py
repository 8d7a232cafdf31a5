"""Find, start and stop the embedded trainforge server (DESIGN §5).

Resolution order: ``TRAINFORGE_ENDPOINT`` (+ ``TRAINFORGE_TOKEN``) when set; otherwise the server recorded
in ``$TRAINFORGE_HOME/server.json`` if its ``/health`` answers; otherwise a new one is started detached
(``python -m trainforge.cli server run``, output in ``$TRAINFORGE_HOME/server.log``). The token of the
embedded server is read from ``$TRAINFORGE_HOME/token``.

An ``https`` server is verified with ``TRAINFORGE_CA_BUNDLE`` (else the system trust store); its ``server.json``
names its certificate, so a client that cannot verify it is told which file to trust. Only probes that send no
secret (``/health`` while starting or stopping this home's own server) trust that recorded certificate directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from trainforge.client import TrainforgeClient, tls_problem, verifying_context
from trainforge.errors import ServerUnavailableError, TrainforgeError
from trainforge.settings import Settings

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 2.0
_POLL_S = 0.1
# Settings never handed to the server process: they describe how a client reaches a server.
_CLIENT_ONLY = frozenset({"endpoint", "token"})


@dataclass(frozen=True)
class ServerInfo:
    """A reachable server.

    Attributes:
        url: Base URL of the API.
        token: Bearer token to use (``None`` if unknown).
        pid: Process id reported by the server (``None`` if it did not say).
        home: The ``TRAINFORGE_HOME`` of an embedded server; ``None`` for a configured endpoint.
        version: The server's version string.
        started: Whether this call started the server.
        cert: The certificate an https embedded server serves (from ``server.json``); None otherwise.
        self_signed: Whether ``cert`` is the home's own ``--tls self-signed`` certificate.
    """

    url: str
    token: str | None
    pid: int | None
    home: str | None
    version: str | None = None
    started: bool = False
    cert: str | None = None
    self_signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--output json`` (the token is left out)."""
        data = asdict(self)
        data.pop("token")
        return data


@dataclass(frozen=True)
class StopResult:
    """What :func:`stop_server` did."""

    was_running: bool
    stopped: bool
    pid: int | None
    message: str


def read_server_file(settings: Settings) -> dict[str, Any] | None:
    """The content of ``server.json``, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(settings.server_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("url") else None


def read_token(settings: Settings) -> str | None:
    """The embedded server's token from ``$TRAINFORGE_HOME/token`` (``None`` if there is none)."""
    try:
        token = settings.token_path.read_text().strip()
    except OSError:
        return None
    return token or None


def probe_health(
    url: str,
    *,
    timeout: float = HEALTH_TIMEOUT_S,
    verify: ssl.SSLContext | None = None,
    server_cert: str | None = None,
) -> dict[str, Any] | None:
    """``GET <url>/health``; the answer if the server says ``status: ok``, else ``None``.

    ``verify`` checks an https server's certificate (default: ``TRAINFORGE_CA_BUNDLE`` from the environment, else
    the system trust store); ``server_cert`` is named in the error when it fails.

    Raises:
        AuthError: The server's certificate cannot be verified (the message names the CA bundle to set).
        ServerUnavailableError: The server answers in the other scheme (https on an http URL, or the reverse).
    """
    base = url.rstrip("/")
    if verify is None and base.startswith("https://"):
        verify = verifying_context(cafile=os.environ.get("TRAINFORGE_CA_BUNDLE") or None)
    try:
        response = httpx.get(f"{base}/health", timeout=timeout, verify=verify if verify is not None else True)
        body = response.json()
    except httpx.TransportError as exc:
        problem = tls_problem(base, exc, server_cert=server_cert)
        if problem is not None:
            raise problem from None
        return None
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        return None
    return body


def _client_context(settings: Settings, url: str) -> ssl.SSLContext | None:
    """How a client of these settings verifies ``url``: ``ca_bundle``, else the system store (None for http)."""
    return verifying_context(cafile=settings.ca_bundle) if url.startswith("https://") else None


def _recorded_cert(settings: Settings, url: str) -> tuple[str | None, bool]:
    """The certificate (and whether self-signed) that this home's ``server.json`` records for ``url``."""
    record = read_server_file(settings)
    if record is None or str(record["url"]).rstrip("/") != url.rstrip("/"):
        return None, False
    cert = record.get("cert")
    return (str(cert) if cert else None), bool(record.get("self_signed"))


def _own_server_context(cert: str | None) -> ssl.SSLContext | None:
    """For ``/health`` probes of this home's own server (no secret is sent): trust the certificate the server says
    it serves, without a hostname check; None when it names none."""
    if cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_verify_locations(cafile=cert)
    except (OSError, ssl.SSLError):
        return None
    return context


def find_server(settings: Settings, *, trust_own_cert: bool = False) -> ServerInfo | None:
    """The server this configuration points at, if it answers ``/health``; never starts one.

    An https server is verified as a client of ``settings`` would verify it; with ``trust_own_cert`` (an embedded
    server this process started or stops) the certificate its ``server.json`` names is trusted too.

    Raises:
        AuthError: The server answers but its certificate cannot be verified (the message says what to set).
    """
    if settings.endpoint:
        url = settings.endpoint.rstrip("/")
        cert, self_signed = _recorded_cert(settings, url)
        health = probe_health(url, verify=_client_context(settings, url), server_cert=cert)
        if health is None:
            return None
        return ServerInfo(
            url=url,
            token=settings.token,
            pid=health.get("pid"),
            home=None,
            version=health.get("version"),
            cert=cert,
            self_signed=self_signed,
        )
    record = read_server_file(settings)
    if record is None:
        return None
    url = str(record["url"]).rstrip("/")
    cert = str(record["cert"]) if record.get("cert") else None
    verify = (_own_server_context(cert) if trust_own_cert else None) or _client_context(settings, url)
    health = probe_health(url, verify=verify, server_cert=cert)
    if health is None:
        return None
    return ServerInfo(
        url=url,
        token=read_token(settings),
        pid=health.get("pid", record.get("pid")),
        home=str(settings.resolved_home),
        version=health.get("version"),
        cert=cert,
        self_signed=bool(record.get("self_signed")),
    )


@contextlib.contextmanager
def _start_lock(settings: Settings) -> Iterator[None]:
    """Serialize find-or-start between processes sharing one home (two notebooks starting at once)."""
    import fcntl

    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(home / "server.start.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _server_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRAINFORGE_ENDPOINT", None)
    for name in settings.model_fields_set - _CLIENT_ONLY:
        value = getattr(settings, name)
        if value is not None:
            env[f"TRAINFORGE_{name.upper()}"] = str(value)
    env["TRAINFORGE_HOME"] = str(settings.resolved_home)
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def start_server(settings: Settings, *, timeout_s: float = START_TIMEOUT_S) -> ServerInfo:
    """Start an embedded server detached and wait until it answers ``/health``.

    The server outlives the calling process (its own session); its output goes to
    ``$TRAINFORGE_HOME/server.log``. Its TLS settings are checked first (:func:`trainforge.server.tls.prepare`).

    Raises:
        ValidationError: A TLS setting cannot work, or the server would serve plain http to the network.
        ServerUnavailableError: It exited while starting, or did not answer within ``timeout_s``.
    """
    from trainforge.server.tls import prepare

    settings, _ = prepare(settings)
    home = settings.resolved_home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = home / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainforge.cli", "server", "run"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=_server_env(settings),
            cwd=str(home),
        )
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            # The server's own one-line "error: ..." (a setting that cannot work) says what to fix: pass it on.
            last = _last_line(log_path).removeprefix("error: ")
            raise ServerUnavailableError(
                f"the trainforge server exited with code {code} while starting"
                + (f": {last}" if last else "")
                + f" (log: {log_path})"
            )
        found = find_server(settings.model_copy(update={"endpoint": None}), trust_own_cert=True)
        if found is not None:
            return dataclasses.replace(found, started=True)
        if time.monotonic() >= deadline:
            proc.terminate()
            raise ServerUnavailableError(
                f"the trainforge server did not answer within {timeout_s:.0f} s (log: {log_path})"
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_POLL_S)


def ensure_server(settings: Settings, *, timeout_s: float = START_TIMEOUT_S) -> ServerInfo:
    """The configured endpoint, or the running embedded server, or a newly started one.

    Raises:
        ServerUnavailableError: ``TRAINFORGE_ENDPOINT`` is set but does not answer, or starting failed.
    """
    if settings.endpoint:
        found = find_server(settings)
        if found is None:
            raise ServerUnavailableError(
                f"the trainforge server at TRAINFORGE_ENDPOINT={settings.endpoint} does not answer /health; "
                "check that it is running and reachable"
            )
        return found
    with _start_lock(settings):
        found = find_server(settings)
        if found is not None:
            return found
        return start_server(settings, timeout_s=timeout_s)


def connect(settings: Settings, *, start: bool = True) -> TrainforgeClient:
    """A client of the server these settings designate.

    With ``TRAINFORGE_ENDPOINT`` set the client is built without contacting the server. Otherwise the
    embedded server is found, or started when ``start`` is true.

    Raises:
        ServerUnavailableError: No server is running and ``start`` is false, or starting failed.
    """
    if settings.endpoint:
        cert, _ = _recorded_cert(settings, settings.endpoint)
        return TrainforgeClient(settings.endpoint, settings.token, ca_bundle=settings.ca_bundle, server_cert=cert)
    if start:
        info = ensure_server(settings)
    else:
        found = find_server(settings)
        if found is None:
            raise ServerUnavailableError(
                f"no trainforge server is running for TRAINFORGE_HOME={settings.resolved_home}; "
                "start one with `trainforge server start`"
            )
        info = found
    return TrainforgeClient(info.url, info.token, ca_bundle=settings.ca_bundle, server_cert=info.cert)


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own exited child (a zombie would look alive to kill(pid, 0)).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _looks_like_trainforge(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc").is_dir():
        return True
    try:
        return b"trainforge" in cmdline.read_bytes()
    except OSError:
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _remove_record(settings: Settings, pid: int | None) -> None:
    record = read_server_file(settings)
    if record is not None and (pid is None or record.get("pid") == pid):
        settings.server_file.unlink(missing_ok=True)


def stop_server(settings: Settings, *, timeout_s: float = STOP_TIMEOUT_S) -> StopResult:
    """Stop the embedded server of ``settings.home``: SIGTERM, wait, SIGKILL after ``timeout_s``.

    Running jobs are not stopped: their supervisors are separate processes and report again to the next
    server. Idempotent: stopping a server that is not running reports so and succeeds.
    """
    record = read_server_file(settings)
    if record is None:
        return StopResult(False, True, None, f"no trainforge server is running for {settings.resolved_home}")
    pid = record.get("pid")
    url = str(record["url"])
    cert = str(record["cert"]) if record.get("cert") else None
    try:
        health = probe_health(url, verify=_own_server_context(cert) or _client_context(settings, url))
    except TrainforgeError:
        health = None  # a server we cannot verify is still ours to stop by its pid
    if health is not None and isinstance(health.get("pid"), int):
        pid = health["pid"]
    if not isinstance(pid, int) or not _pid_alive(pid) or (health is None and not _looks_like_trainforge(pid)):
        _remove_record(settings, None)
        return StopResult(False, True, None, "no trainforge server was running (removed a stale server.json)")
    os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        _remove_record(settings, pid)
        return StopResult(True, True, pid, f"stopped the trainforge server (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    gone = _wait_gone(pid, 5.0)
    _remove_record(settings, pid)
    if gone:
        return StopResult(True, True, pid, f"killed the trainforge server (pid {pid}) after {timeout_s:.0f} s")
    return StopResult(True, False, pid, f"the trainforge server (pid {pid}) did not exit")
