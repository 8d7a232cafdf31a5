"""A fault-injecting HTTP proxy for tests: put it in front of a real trainforge server and break the path between.

Every request is forwarded to the upstream server unchanged (one upstream connection per request) unless a queued
fault claims it. Faults are consumed in order, each for ``count`` requests whose path contains ``path``:

- ``fail``: answer ``status`` (503 by default) with the server's error body, without forwarding;
- ``drop``: close the client's connection without forwarding (the request never reached the server);
- ``lose_replies``: forward, let the server act, then close the connection instead of replying (the server stored
  the batch, the client never hears so and sends it again);
- ``delay``: wait ``seconds`` before forwarding (a slow server).

``stop()`` closes the listening socket (connections are refused, as with a dead server) and ``start()`` opens it
again on the same port. ``served`` counts the requests that reached the upstream server, ``outcomes`` records
what happened to each request, in order.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

FaultKind = Literal["fail", "drop", "lose_replies", "delay"]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    """One queued fault: what to do to the next ``count`` requests whose path contains ``path``."""

    kind: FaultKind
    count: int
    path: str = ""
    status: int = 503
    seconds: float = 0.0


class FaultProxy:
    """A threaded HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.served = 0
        self.outcomes: list[tuple[str, str]] = []
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.start()

    # ------------------------------------------------------------------------------------------- control

    @property
    def url(self) -> str:
        """The proxy's base URL (stable across :meth:`stop`/:meth:`start`)."""
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Listen (again) on the proxy's port."""
        if self._httpd is not None:
            return
        httpd = _Server(("127.0.0.1", self._port), _handler_for(self))
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every open connection: new connections are refused."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    close = stop

    def fail(self, count: int, *, status: int = 503, path: str = "") -> None:
        """Answer the next ``count`` matching requests with ``status`` without forwarding them."""
        self._add(Fault("fail", count, path, status=status))

    def drop(self, count: int, *, path: str = "") -> None:
        """Close the connection of the next ``count`` matching requests without forwarding them."""
        self._add(Fault("drop", count, path))

    def lose_replies(self, count: int, *, path: str = "") -> None:
        """Forward the next ``count`` matching requests but close the connection instead of replying."""
        self._add(Fault("lose_replies", count, path))

    def delay(self, seconds: float, count: int, *, path: str = "") -> None:
        """Hold the next ``count`` matching requests ``seconds`` before forwarding them."""
        self._add(Fault("delay", count, path, seconds=seconds))

    def pending(self) -> int:
        """How many faulted requests are still to come."""
        with self._lock:
            return sum(f.count for f in self._faults)

    def clear(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._faults.clear()

    @contextmanager
    def down(self) -> Iterator[None]:
        """The server unreachable (connections refused) for the ``with`` block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def outcome_counts(self) -> dict[str, int]:
        """How many requests ended each way (``forwarded``, ``fail 503``, ``drop``, ``lose_replies``, ...)."""
        with self._lock:
            counts: dict[str, int] = {}
            for _, outcome in self.outcomes:
                counts[outcome] = counts.get(outcome, 0) + 1
            return counts

    # ------------------------------------------------------------------------------------------- internals

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _claim(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path in path:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def _record(self, path: str, outcome: str) -> None:
        with self._lock:
            self.outcomes.append((path, outcome))
            if outcome in ("forwarded", "lose_replies", "delay"):
                self.served += 1

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # close() alone leaves a handler's connection open


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._claim(self.path)
            if fault is not None and fault.kind == "drop":
                proxy._record(self.path, "drop")
                self.close_connection = True
                return
            if fault is not None and fault.kind == "fail":
                proxy._record(self.path, f"fail {fault.status}")
                error = {"error": {"code": "ServerUnavailable", "message": "injected by FaultProxy", "details": {}}}
                self._reply(fault.status, [("Content-Type", "application/json")], json.dumps(error).encode())
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                status, reply_headers, data = proxy._forward(self.command, self.path, headers, body)
            except OSError:
                proxy._record(self.path, "upstream down")
                self.close_connection = True
                return
            if fault is not None and fault.kind == "lose_replies":
                proxy._record(self.path, "lose_replies")
                self.close_connection = True
                return
            proxy._record(self.path, "delay" if fault is not None else "forwarded")
            self._reply(status, reply_headers, data)

        def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in _HOP_BY_HOP and key.lower() not in ("content-length", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler
