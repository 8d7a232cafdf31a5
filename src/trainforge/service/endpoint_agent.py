"""Use cases of endpoint instances' serving supervisors: status reports, log lines, heartbeats.

Each launch (attempt) of an endpoint has its own agent token. The endpoint's newest launch's token hash is in
``endpoints.agent_token_hash``; older launches that still run (serving while a new one starts, or being stopped)
keep theirs in the endpoint's handle, so their supervisors can still report (e.g. ``Stopped``). A token of a launch
that is forgotten is refused (401), as a deleted endpoint is (404): either tells the supervisor to stop.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Any

from trainforge.errors import AuthError, ValidationError
from trainforge.service.agent import hash_token
from trainforge.spec.contract import FAILURE_REASON_MAX
from trainforge.spec.endpoints import EndpointStatus, InstanceStatus
from trainforge.spec.metrics import metric_value
from trainforge.store.inference import EndpointRecord, EndpointStore
from trainforge.store.inference_logs import InferenceLogStore

_STOP = {EndpointStatus.DELETING, EndpointStatus.FAILED}


@dataclass
class EndpointAgentService:
    """What serving supervisors may do, each call scoped to the endpoint and launch their token was issued for."""

    store: EndpointStore
    logs: InferenceLogStore
    wake: threading.Event = field(default_factory=threading.Event)

    def authorize(self, name: str, token: str | None) -> tuple[EndpointRecord, int]:
        """The endpoint and the launch (attempt) ``token`` belongs to; :class:`AuthError` otherwise (also for
        unknown endpoints)."""
        if not token:
            raise AuthError("missing agent token")
        endpoint = self.store.find(name)
        if endpoint is None:
            raise AuthError("agent token is not valid for this endpoint")
        digest = hash_token(token)
        if endpoint.agent_token_hash and hmac.compare_digest(endpoint.agent_token_hash, digest):
            return endpoint, endpoint.attempt
        for attempt, launch in (endpoint.handle.get("launches") or {}).items():
            known = str(launch.get("token_hash") or "")
            if known and hmac.compare_digest(known, digest):
                return endpoint, int(attempt)
        raise AuthError("agent token is not valid for this endpoint")

    @staticmethod
    def reply(endpoint: EndpointRecord, attempt: int) -> dict[str, Any]:
        """``{"EndpointStatus", "stop_requested"}`` as the instances of ``attempt`` should act on it: a launch that
        is retired (replaced, failed or deleted) reads ``Deleting`` with ``stop_requested``."""
        launch = (endpoint.handle.get("launches") or {}).get(str(attempt)) or {}
        stop = endpoint.status in _STOP or bool(launch.get("retired"))
        status = EndpointStatus.DELETING.value if stop else endpoint.status.value
        return {"EndpointStatus": status, "stop_requested": stop, "attempt": attempt}

    def report_status(
        self,
        endpoint: EndpointRecord,
        attempt: int,
        *,
        host: str,
        status: str,
        message: str | None,
        failure_reason: str | None,
        address: str | None,
    ) -> dict[str, Any]:
        """Store one instance's status (``Pending``, ``InService`` with its address, ``Failed`` with the reason,
        ``Stopped``) and wake the reconciler."""
        try:
            reported = InstanceStatus(status)
        except ValueError:
            known = ", ".join(s.value for s in InstanceStatus)
            raise ValidationError(f"status: {status!r} is not one of {known}", field="status") from None
        if reported == InstanceStatus.IN_SERVICE and not address:
            raise ValidationError(
                "address: required with InService (http://host:port of /invocations)", field="address"
            )
        if address is not None and not address.startswith(("http://", "https://")):
            raise ValidationError("address: must be http://host:port", field="address")
        reason = (failure_reason or message) if reported == InstanceStatus.FAILED else None
        self.store.record_instance(
            endpoint.id,
            attempt,
            host,
            reported,
            address=address if reported == InstanceStatus.IN_SERVICE else None,
            failure_reason=reason[:FAILURE_REASON_MAX] if reason else None,
        )
        self.wake.set()
        return self.reply(endpoint, attempt)

    def append_logs(
        self, endpoint: EndpointRecord, attempt: int, host: str, lines: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Store lines idempotently by (life, attempt, host, seq); ``{"accepted": <new lines>}``."""
        for i, line in enumerate(lines):
            for key in ("seq", "timestamp", "message"):
                if key not in line:
                    raise ValidationError(f"lines[{i}].{key}: required", field=f"lines[{i}].{key}")
            for key in ("seq", "timestamp"):
                if metric_value(line[key]) is None:
                    raise ValidationError(f"lines[{i}].{key}: must be a number", field=f"lines[{i}].{key}")
        return {"accepted": self.logs.append(endpoint.log_owner, attempt, host, lines)}

    def heartbeat(self, endpoint: EndpointRecord, attempt: int, host: str) -> dict[str, Any]:
        """Note that ``host`` of ``attempt`` is alive; the reply says whether it should stop."""
        self.store.heartbeat(endpoint.id, attempt, host)
        return self.reply(endpoint, attempt)
