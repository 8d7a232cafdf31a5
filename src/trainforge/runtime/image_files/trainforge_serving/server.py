"""The HTTP server of a model: ``GET /ping`` and ``POST /invocations`` (reference §7.3).

A ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (one thread per connection, ``TCP_NODELAY``, each
answer written in one piece). ``/ping`` answers 200 once the model is loaded. ``/invocations`` reads the body (a
body over ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, 6 by default, is a 413 and closes the connection), runs the handlers on a
worker pool and answers what they return; a request that takes longer than ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
seconds (60) is answered 504 (the handler is left to finish). ``GET /execution-parameters`` answers what batch
transform may use, as SageMaker's containers do.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .errors import PayloadTooLarge
from .handlers import Answer, Transformer

MB = 1024 * 1024
DRAIN_LIMIT = 256 * MB  # a body over the payload limit is read and dropped up to this size, else the connection closes


class ModelServer(ThreadingHTTPServer):
    """The server; :attr:`transformer` answers invocations."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        transformer: Transformer,
        *,
        max_payload_bytes: int = 6 * MB,
        timeout_s: float = 60.0,
        workers: int = 16,
        access_log: bool = False,
    ) -> None:
        super().__init__(address, _Handler)
        self.transformer = transformer
        self.max_payload_bytes = max_payload_bytes
        self.timeout_s = timeout_s
        self.access_log = access_log
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="invocation")

    def server_close(self) -> None:
        """Close the socket and let running handlers finish in the background."""
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        """Run the handlers for one request within the timeout."""
        transformer = self.transformer

        def run() -> Answer:
            transformer.context.set_headers(headers)
            return transformer.invoke(body, headers.get("content-type"), headers.get("accept"))

        future = self.pool.submit(run)
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            message = f"The model did not answer within {self.timeout_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"
            return Answer(504, message.encode(), "text/plain; charset=utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ModelServer
    server_version = "trainforge-serving"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str, *, close: bool = False) -> None:
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        if close:
            head.append("Connection: close")
            self.close_connection = True
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.log_request(status, len(body))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ping":
            if self.server.transformer.loaded:
                self._send(200, b"\n", "application/json")
            else:
                self._send(503, b"model not loaded\n", "text/plain; charset=utf-8")
        elif path == "/execution-parameters":
            params = {
                "MaxConcurrentTransforms": self.server.pool._max_workers,
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": max(1, self.server.max_payload_bytes // MB),
            }
            self._send(200, json.dumps(params).encode(), "application/json")
        else:
            self._send(404, f"no route GET {path}; use GET /ping or POST /invocations\n".encode(), "text/plain")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if path != "/invocations":
            self._skip(length)
            self._send(404, f"no route POST {path}; use POST /invocations\n".encode(), "text/plain")
            return
        if length > self.server.max_payload_bytes:
            error = PayloadTooLarge(length, self.server.max_payload_bytes)
            drained = self._drain(length)  # read what the client sends, so it sees the 413 and not a reset
            self._send(413, error.message.encode(), "text/plain; charset=utf-8", close=not drained)
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        started = time.perf_counter()
        answer = self.server.invoke(body, headers)
        if answer.status >= 500:
            elapsed = (time.perf_counter() - started) * 1000
            first = answer.body.decode("utf-8", "replace").strip().splitlines()[:1]
            sys.stderr.write(f"POST /invocations {answer.status} in {elapsed:.1f} ms: {first[0] if first else ''}\n")
        self._send(answer.status, answer.body, answer.content_type)

    def _drain(self, length: int) -> bool:
        """Read and drop a body of ``length`` bytes (up to :data:`DRAIN_LIMIT`); whether all of it was read."""
        if length > DRAIN_LIMIT:
            return False
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return False
            left -= len(chunk)
        return True

    def _skip(self, length: int) -> None:
        if 0 < length <= self.server.max_payload_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True
