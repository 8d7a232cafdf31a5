"""Invocations: route ``POST /v1/endpoints/{name}/invocations`` to a serving instance, and count them per minute.

The route is kept lean (the server adds at most a few hundred microseconds): the addresses of each endpoint's
serving instances and its owner live in memory (:class:`InvocationRouter`, refreshed by the reconciler after each
pass and by the routes that change an endpoint), one shared keep-alive client (:mod:`.forward`) keeps connections to
the instances open, and metrics are counted in memory (:class:`InvocationMetrics`) and written every few seconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import ModelError, NotFoundError, ServerUnavailableError, ValidationError
from trainforge.service.forward import InstanceClient, ReplyTimeout, Unreachable
from trainforge.service.models import visible
from trainforge.service.principal import Principal
from trainforge.spec.endpoints import INVOCABLE, MAX_PAYLOAD_BYTES, EndpointStatus, endpoint_not_found_message
from trainforge.store.inference import EndpointStore, MetricPoint

INVOKE_TIMEOUT_S = 60.0  # the serving process's own limit (reference §7.3)
FORWARDED_HEADERS = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")
METRIC_NAMES = ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency", "OverheadLatency")
# How many invocations each minute's average latency is over (kept as points of their own, never shown).
SAMPLES = {"ModelLatency": "ModelLatency:samples", "OverheadLatency": "OverheadLatency:samples"}
FLUSH_EVERY_S = 5.0
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Route:
    """What the invocation route needs of one endpoint, without reading the database."""

    name: str
    created_by: str | None
    status: str
    variant: str
    log_owner: str
    instances: tuple[tuple[str, str], ...]  # (host, address) of the serving launch's InService instances


@dataclass
class _Bucket:
    count: int = 0
    e4: int = 0
    e5: int = 0
    model_sum: float = 0.0
    model_n: int = 0
    overhead_sum: float = 0.0
    overhead_n: int = 0
    dirty: bool = False
    merged: bool = False  # points a previous server process stored for this minute were added in

    def values(self) -> dict[str, float]:
        return {
            "Invocations": float(self.count),
            "Invocation4XXErrors": float(self.e4),
            "Invocation5XXErrors": float(self.e5),
            "ModelLatency": self.model_sum / self.model_n if self.model_n else 0.0,
            "OverheadLatency": self.overhead_sum / self.overhead_n if self.overhead_n else 0.0,
            SAMPLES["ModelLatency"]: float(self.model_n),
            SAMPLES["OverheadLatency"]: float(self.overhead_n),
        }


@dataclass
class InvocationMetrics:
    """Per endpoint life (``log_owner``) and minute: invocations, 4XX/5XX errors, model and overhead latency
    (microseconds, averages), counted in memory and written by :meth:`flush`."""

    store: EndpointStore
    _buckets: dict[tuple[str, float], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flushed: float = 0.0

    def record(self, owner: str, *, status: int | None, model_us: float | None, overhead_us: float) -> None:
        """Count one invocation: ``status`` the model's answer (None: no instance answered)."""
        minute = float(int(time.time() // 60) * 60)
        with self._lock:
            bucket = self._buckets.get((owner, minute))
            if bucket is None:
                bucket = self._buckets[(owner, minute)] = _Bucket()
            bucket.count += 1
            if status is None or status >= 500:
                bucket.e5 += 1
            elif status >= 400:
                bucket.e4 += 1
            if model_us is not None:
                bucket.model_sum += model_us
                bucket.model_n += 1
            bucket.overhead_sum += overhead_us
            bucket.overhead_n += 1
            bucket.dirty = True

    def flush(self) -> None:
        """Write every minute counted since the last flush (a minute's points are replaced by its new totals);
        minutes that are over and written are forgotten."""
        self._flushed = time.monotonic()
        with self._lock:
            dirty = [(key, b) for key, b in self._buckets.items() if b.dirty]
            for _, bucket in dirty:
                bucket.dirty = False
        for (owner, minute), bucket in dirty:
            if not bucket.merged:
                before = self.store.points_at(owner, minute)
                with self._lock:
                    bucket.merged = True
                    bucket.count += int(before.get("Invocations", 0))
                    bucket.e4 += int(before.get("Invocation4XXErrors", 0))
                    bucket.e5 += int(before.get("Invocation5XXErrors", 0))
                    model_n = int(before.get(SAMPLES["ModelLatency"], 0))
                    overhead_n = int(before.get(SAMPLES["OverheadLatency"], 0))
                    bucket.model_sum += before.get("ModelLatency", 0.0) * model_n
                    bucket.model_n += model_n
                    bucket.overhead_sum += before.get("OverheadLatency", 0.0) * overhead_n
                    bucket.overhead_n += overhead_n
            with self._lock:
                values = bucket.values()
            self.store.replace_points(owner, minute, values)
        current = float(int(time.time() // 60) * 60)
        with self._lock:
            for key in [k for k, b in self._buckets.items() if k[1] < current and not b.dirty]:
                del self._buckets[key]

    def flush_if_due(self) -> None:
        """:meth:`flush` when the last one is :data:`FLUSH_EVERY_S` old."""
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()


def metric_totals(points: list[MetricPoint]) -> dict[str, float]:
    """Totals over points: counts summed, latencies averaged over the invocations they were measured on."""
    weights: dict[tuple[str, float], float] = {}
    for p in points:
        for name, samples in SAMPLES.items():
            if p.name == samples:
                weights[(name, p.timestamp)] = p.value
    totals: dict[str, float] = dict.fromkeys(METRIC_NAMES, 0.0)
    sums = {name: 0.0 for name in SAMPLES}
    counts = {name: 0.0 for name in SAMPLES}
    for p in points:
        if p.name in SAMPLES:
            n = weights.get((p.name, p.timestamp), 0.0)
            sums[p.name] += p.value * n
            counts[p.name] += n
        elif p.name in totals:
            totals[p.name] += p.value
    for name in SAMPLES:
        totals[name] = sums[name] / counts[name] if counts[name] else 0.0
    return totals


def shown_points(points: list[MetricPoint]) -> list[MetricPoint]:
    """The points an API reader sees (the sample counts behind the averages left out)."""
    return [p for p in points if p.name in METRIC_NAMES]


def _message(body: bytes) -> str:
    return body[:MAX_MESSAGE].decode("utf-8", errors="replace").strip()


@dataclass
class InvocationRouter:
    """Endpoints' serving addresses in memory, and the forwarding of invocations to them."""

    store: EndpointStore
    metrics: InvocationMetrics
    _routes: dict[str, Route] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    _client: InstanceClient = field(default_factory=InstanceClient)

    def replace(self, routes: dict[str, Route]) -> None:
        """Make ``routes`` the known endpoints (the reconciler's view after a pass)."""
        self._routes = routes

    def put(self, route: Route) -> None:
        """Know (or update) one endpoint."""
        self._routes = {**self._routes, route.name: route}

    def forget(self, name: str) -> None:
        """Forget an endpoint (deleted, or going)."""
        if name in self._routes:
            self._routes = {k: v for k, v in self._routes.items() if k != name}

    def route(self, name: str) -> Route | None:
        """The cached route of ``name``, if known."""
        return self._routes.get(name)

    async def aclose(self) -> None:
        """Close the kept connections and write the counted metrics (at server shutdown)."""
        self._client.close()
        self.metrics.flush()

    def check(self, route: Route | None, name: str, principal: Principal) -> Route:
        """The route if ``principal`` may invoke the endpoint and it is invocable; else the matching error."""
        if route is None or not visible(principal, route.created_by):
            raise NotFoundError(endpoint_not_found_message(name))
        if route.status not in INVOCABLE:
            if route.status == EndpointStatus.CREATING:
                hint = f"wait until it is (trainforge endpoints describe {name})"
            elif route.status == EndpointStatus.FAILED:
                hint = f"see its FailureReason (trainforge endpoints describe {name}), then delete and create it again"
            else:
                hint = "create it again once it is gone"
            raise ValidationError(
                f"EndpointName: endpoint {name!r} is {route.status}; it can be invoked when it is InService: {hint}",
                field="EndpointName",
                details={"EndpointStatus": route.status},
            )
        return route

    @staticmethod
    def check_size(size: int) -> None:
        """:class:`ValidationError` naming ``Body`` when ``size`` is over the 6 MB limit."""
        if size > MAX_PAYLOAD_BYTES:
            raise ValidationError(
                f"Body: the payload is {size} bytes; an invocation takes at most {MAX_PAYLOAD_BYTES} bytes (6 MB). "
                "Send smaller requests, or run a batch transform job (transformer.transform()) over the data",
                field="Body",
                details={"size": size, "limit": MAX_PAYLOAD_BYTES},
            )

    async def invoke(
        self, route: Route, body: bytes, headers: dict[str, str], started: float
    ) -> tuple[bytes, str, dict[str, str]]:
        """Forward ``body`` to a serving instance (round robin; an unreachable one -> the next) and return the
        model's ``(body, content_type, extra headers)``.

        Raises:
            ModelError: The model answered with a status >= 400 (the endpoint keeps serving).
            ServerUnavailableError: No instance could be reached.
        """
        instances = route.instances
        if not instances:
            self.metrics.record(
                route.log_owner, status=None, model_us=None, overhead_us=(time.perf_counter() - started) * 1e6
            )
            raise ServerUnavailableError(
                f"Endpoint {route.name!r} has no instance in service right now; try again shortly "
                f"(trainforge endpoints describe {route.name})"
            )
        first = next(self._turn) % len(instances)
        for i in range(len(instances)):
            host, address = instances[(first + i) % len(instances)]
            sent = time.perf_counter()
            try:
                response = await self._client.post(address, "/invocations", body, headers, timeout=INVOKE_TIMEOUT_S)
            except Unreachable:
                continue
            except ReplyTimeout:
                now = time.perf_counter()
                self.metrics.record(
                    route.log_owner, status=504, model_us=(now - sent) * 1e6, overhead_us=(sent - started) * 1e6
                )
                raise ModelError(
                    f'Received server error (504) from {host} with message "the model did not answer within '
                    f'{INVOKE_TIMEOUT_S:.0f} s". See the logs: trainforge endpoints logs {route.name}',
                    details={"OriginalStatusCode": 504, "OriginalMessage": "timed out"},
                ) from None
            answered = time.perf_counter()
            model_us = (answered - sent) * 1e6
            self.metrics.record(
                route.log_owner,
                status=response.status,
                model_us=model_us,
                overhead_us=max(0.0, (answered - started) * 1e6 - model_us),
            )
            if response.status >= 400:
                kind = "server" if response.status >= 500 else "client"
                message = _message(response.content)
                raise ModelError(
                    f'Received {kind} error ({response.status}) from {host} with message "{message}". '
                    f"See the logs: trainforge endpoints logs {route.name}",
                    details={"OriginalStatusCode": response.status, "OriginalMessage": message},
                )
            extra = {"X-Amzn-Invoked-Production-Variant": route.variant}
            attributes = response.headers.get("x-amzn-sagemaker-custom-attributes")
            if attributes:
                extra["X-Amzn-SageMaker-Custom-Attributes"] = attributes
            return response.content, response.headers.get("content-type", "application/octet-stream"), extra
        self.metrics.record(
            route.log_owner, status=None, model_us=None, overhead_us=(time.perf_counter() - started) * 1e6
        )
        raise ServerUnavailableError(
            f"Endpoint {route.name!r}: none of its {len(instances)} instance(s) could be reached; the server is "
            f"replacing lost instances, try again shortly (trainforge endpoints describe {route.name})"
        )

    @staticmethod
    def forwarded_headers(headers: Any) -> dict[str, str]:
        """The request headers passed on to the model."""
        out = {}
        for name in FORWARDED_HEADERS:
            value = headers.get(name)
            if value is not None:
                out[name] = value
        return out
