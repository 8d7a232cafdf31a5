"""The endpoint reconciler: launches, watches, relaunches, rolls over and stops endpoint instances, once per
scheduler pass.

Every launch of an endpoint's instances is one *attempt* (1, 2, ...): its hosts ``algo-1..N``, one serving
supervisor each, started through the backend seam with an agent token of its own. The endpoint's
``backend_handle`` keeps its launches::

    {"serving": <attempt that takes the traffic, or null>,
     "launches": {"<attempt>": {"handle": <backend handle>, "token_hash": ..., "count": N, "variant": ...,
                                "instance_type": ..., "started": t, "retired": t | null}}}

- ``Creating``: launch; every instance ``InService`` with an address -> the endpoint is ``InService`` and this
  launch serves. An instance ``Failed`` (or a supervisor gone without a report) -> ``Failed`` with its reason, and
  every launch is stopped.
- ``Updating``: the same with the new config as the next attempt; when it is ready it takes the traffic and the
  old launch is stopped.
- ``InService``: an instance of the serving launch that is lost (supervisor gone, ``Failed``/``Stopped``, or no
  heartbeat for ``heartbeat_timeout_seconds``) -> a new attempt is launched; the old one serves meanwhile and is
  stopped when the new one is ready.
- ``Deleting``: every launch is cancelled (grace = the stop grace), what is left after it is killed, then the
  record and its instances are removed (log lines and metric points stay).
- A retired launch (replaced, failed, deleted) is cancelled once, killed after the grace, released and forgotten
  when none of its supervisors runs.

Everything is in the store, so a restarted server carries on from the handles (a launch the server died in is
adopted or replaced).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, TrainforgeError
from trainforge.runtime.serving.spec import ServingLaunch, launch_name
from trainforge.scheduler.instances import Machine, hosting_instance_type
from trainforge.scheduler.launching import launch_request, placement_of
from trainforge.service.agent import hash_token
from trainforge.settings import Settings
from trainforge.spec.endpoints import EndpointStatus, InstanceStatus
from trainforge.store.inference import EndpointRecord, EndpointStore, InstanceRecord
from trainforge.store.usage import UsageStore

log = logging.getLogger("trainforge.scheduler.endpoints")
E = EndpointStatus
KILL_ALLOWANCE_S = 5.0  # beyond the stop grace: how long a cancelled launch may take before it is killed
RELAUNCH_BACKOFF_S = 30.0  # after a failed relaunch of an InService endpoint, before the next one
CAPACITY_RETRY_S = 5.0
_GONE = {InstanceStatus.FAILED.value, InstanceStatus.STOPPED.value}


def launches_of(endpoint: EndpointRecord) -> dict[str, dict[str, Any]]:
    """The endpoint's launches by attempt (as strings), from its handle."""
    launches = endpoint.handle.get("launches")
    return {str(k): dict(v) for k, v in launches.items()} if isinstance(launches, dict) else {}


def serving_attempt(endpoint: EndpointRecord) -> int | None:
    """The attempt whose instances take the endpoint's traffic, if any."""
    serving = endpoint.handle.get("serving")
    return int(serving) if serving is not None else None


def variant_of(endpoint: EndpointRecord) -> dict[str, Any]:
    """The production variant the endpoint's spec serves."""
    variant: dict[str, Any] = endpoint.spec["EndpointConfig"]["ProductionVariants"][0]
    return variant


@dataclass
class EndpointReconciler:
    """Acts on every endpoint once per :meth:`run_once`; owns the endpoints' launches."""

    store: EndpointStore
    backend: Backend
    settings: Settings
    machine: Machine
    server_url: str
    storage: dict[str, Any]
    on_pass: Callable[[], None] | None = None
    """Called at the end of each pass (the invocation router refreshes its addresses; metrics are flushed)."""
    _cancelled: set[tuple[str, str]] = field(default_factory=set)
    _retry_at: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=time.time)

    def run_once(self) -> float:
        """One pass over every endpoint; returns the vCPUs their instances hold on this machine (0 on a backend that
        does not use local capacity). Never raises for one endpoint's trouble."""
        used = 0.0
        for endpoint in self.store.list_endpoints():
            try:
                used += self._reconcile(endpoint)
            except Exception:
                log.exception("reconciling endpoint %s failed", endpoint.name)
        if self.on_pass is not None:
            try:
                self.on_pass()
            except Exception:
                log.exception("endpoint pass hook failed")
        return used if self.backend.uses_local_capacity else 0.0

    # -- one endpoint ---------------------------------------------------------------------------------------

    def _save(self, ep: EndpointRecord, state: dict[str, Any]) -> None:
        self.store.set_handle(ep.name, state)

    def _reconcile(self, ep: EndpointRecord) -> float:
        # ``state`` is this pass's copy of the handle; every write stores all of it (only the reconciler writes it).
        state: dict[str, Any] = {"serving": ep.handle.get("serving"), "launches": launches_of(ep)}
        launches: dict[str, dict[str, Any]] = state["launches"]
        self._adopt_unrecorded(ep, state)
        if ep.status == E.DELETING:
            self._retire_all(ep, state)
            if self._sweep(ep, state):
                return self._vcpus(launches)
            if self.store.delete(ep.name):
                log.info("endpoint %s deleted", ep.name)
            return 0.0
        if ep.status == E.FAILED:
            self._retire_all(ep, state)
            self._sweep(ep, state)
            return self._vcpus(launches)
        serving = state["serving"]
        instances = self.store.instances(ep.id)
        newest = launches.get(str(ep.attempt)) if ep.attempt else None
        pending = newest if newest is not None and not newest.get("retired") and ep.attempt != serving else None
        if pending is not None:
            self._watch_pending(ep, state, ep.attempt, pending, instances)
        elif ep.status in (E.CREATING, E.UPDATING):
            self._launch(ep, state, "create" if ep.status == E.CREATING else "update")
        elif ep.status == E.IN_SERVICE and serving is not None:
            lost = self._lost(launches.get(str(serving)), [i for i in instances if i.attempt == serving])
            if lost and time.monotonic() >= self._retry_at.get(ep.name, 0.0):
                log.info("endpoint %s: instance(s) %s lost; launching replacements", ep.name, ", ".join(lost))
                self._launch(ep, state, "relaunch")
        self._sweep(ep, state)
        return self._vcpus(launches)

    def _adopt_unrecorded(self, ep: EndpointRecord, state: dict[str, Any]) -> None:
        """A launch whose handle has no hosts (the server died while launching it): take over its supervisors when
        every host's runs, else kill what started and retire it (a later pass launches again)."""
        changed = False
        for attempt, launch in state["launches"].items():
            if launch.get("retired") or launch.get("handle", {}).get("hosts"):
                continue
            count = int(launch.get("count", 1))
            found = self.backend.adopt(launch_name("endpoint", ep.name), int(attempt), count)
            if found is not None and len(found.get("hosts", [])) == count:
                launch["handle"] = {**launch.get("handle", {}), **found}
                log.info("endpoint %s: took over the supervisors of launch %s", ep.name, attempt)
            else:
                if found is not None:
                    self.backend.kill(found)
                launch["retired"] = time.time()
            changed = True
        if changed:
            self._save(ep, state)

    def _watch_pending(
        self,
        ep: EndpointRecord,
        state: dict[str, Any],
        attempt: int,
        launch: dict[str, Any],
        instances: list[InstanceRecord],
    ) -> None:
        """A launch not yet serving: fail it on a failed instance, switch traffic to it when all its instances
        serve."""
        mine = {i.host: i for i in instances if i.attempt == attempt}
        failed = [i for i in mine.values() if i.status in _GONE]
        handle = launch.get("handle", {})
        alive = self.backend.hosts_alive(handle) if handle.get("hosts") else {}
        vanished = [h for h, up in alive.items() if not up and (h not in mine or mine[h].status not in _GONE)]
        if failed or vanished:
            if failed:
                first = failed[0]
                reason = first.failure_reason or f"Instance {first.host} stopped before it was InService"
            else:
                reason = (
                    f"InternalServerError: the serving supervisor of instance {vanished[0]} ended without reporting "
                    "a status (killed, or out of memory)"
                )
            self._launch_failed(ep, state, attempt, reason)
            return
        count = int(launch.get("count", 1))
        ready = [i for i in mine.values() if i.status == InstanceStatus.IN_SERVICE.value and i.address]
        if len(ready) < count:
            return
        old = state["serving"]
        state["serving"] = attempt
        if old is not None and str(old) in state["launches"]:
            state["launches"][str(old)]["retired"] = time.time()
        if ep.status in (E.CREATING, E.UPDATING):
            try:
                self.store.transition(
                    ep.name,
                    E.IN_SERVICE,
                    expected_from={ep.status},
                    conditions={"attempt": attempt},
                    set_fields={"backend_handle": json.dumps(state), "failure_reason": None},
                )
            except ConflictError:
                return  # deleted or moved meanwhile: the next pass sees what it is now
        else:
            self._save(ep, state)
        log.info("endpoint %s: launch %d serves", ep.name, attempt)

    def _launch_failed(self, ep: EndpointRecord, state: dict[str, Any], attempt: int, reason: str) -> None:
        if ep.status in (E.CREATING, E.UPDATING):
            self._fail(ep, state, reason)
            return
        # A relaunch of an InService endpoint failed: the serving launch carries on; try again later.
        state["launches"][str(attempt)]["retired"] = time.time()
        self._retry_at[ep.name] = time.monotonic() + RELAUNCH_BACKOFF_S
        self._save(ep, state)
        log.warning(
            "endpoint %s: relaunch %d failed (%s); next try in %.0fs", ep.name, attempt, reason, RELAUNCH_BACKOFF_S
        )

    def _lost(self, launch: dict[str, Any] | None, instances: list[InstanceRecord]) -> list[str]:
        """Hosts of the serving launch that no longer serve."""
        if launch is None:
            return ["(all)"]
        alive = self.backend.hosts_alive(launch.get("handle", {}))
        by_host = {i.host: i for i in instances}
        now = time.time()
        watch_heartbeats = now - self._started > self.settings.heartbeat_timeout_seconds
        lost = []
        for host, up in alive.items():
            inst = by_host.get(host)
            stale = inst is not None and (inst.heartbeat_time or 0.0) < now - self.settings.heartbeat_timeout_seconds
            if not up or inst is None or inst.status in _GONE or (watch_heartbeats and stale):
                lost.append(host)
        return lost

    def _launch(self, ep: EndpointRecord, state: dict[str, Any], why: str) -> None:
        """Launch the endpoint's spec as its next attempt."""
        variant = variant_of(ep)
        count = int(variant.get("InitialInstanceCount", 1))
        try:
            instance = hosting_instance_type(str(variant["InstanceType"]), self.machine)
            placement = placement_of(self, instance)
        except TrainforgeError as exc:
            self._fail(ep, state, f"ClientError: {exc.message}")
            return
        token = secrets.token_urlsafe(32)
        attempt = ep.attempt + 1
        launch: dict[str, Any] = {
            "handle": {"backend": self.backend.name, "hosts": []},
            "token_hash": hash_token(token),
            "count": count,
            "variant": variant.get("VariantName", "AllTraffic"),
            "instance_type": instance.name,
            "vcpus": placement.effective_vcpus,
            "config": ep.config_name,
            "started": time.time(),
            "retired": None,
        }
        state["launches"][str(attempt)] = launch
        try:
            self.store.claim_attempt(
                ep.name, attempt=ep.attempt, token_hash=launch["token_hash"], handle=state, backend=self.backend.name
            )
        except ConflictError:
            state["launches"].pop(str(attempt))
            return
        model_name = str(variant["ModelName"])
        spec = ServingLaunch.model_validate(
            {
                "Kind": "endpoint",
                "Name": ep.name,
                "ResourceConfig": {"InstanceType": instance.name, "InstanceCount": count},
                "Model": ep.spec["Models"][model_name],
                "VariantName": launch["variant"],
            }
        ).model_dump(mode="json", exclude_none=True)
        request = launch_request(
            self,
            job_name=launch_name("endpoint", ep.name),
            spec=spec,
            placement=placement,
            token=token,
            role_json=ep.role_json,
            attempt=attempt,
            kind="endpoint",
            system_metrics_interval_seconds=0.0,
        )
        try:
            handle = self.backend.launch(request)
        except CapacityError as exc:
            launch["retired"] = time.time()
            self._retry_at[ep.name] = time.monotonic() + CAPACITY_RETRY_S
            self._save(ep, state)
            log.info("endpoint %s: no room to launch (%s)", ep.name, exc.message)
            return
        except TrainforgeError as exc:
            self._fail(ep, state, f"InternalServerError: {exc.message}")
            return
        launch["handle"] = handle
        self._save(ep, state)
        UsageStore(self.store.engine).endpoint_launch(ep, attempt, launch)  # instance time, for costs
        log.info("endpoint %s: launched attempt %d (%s, %d x %s)", ep.name, attempt, why, count, instance.name)

    def _fail(self, ep: EndpointRecord, state: dict[str, Any], reason: str) -> None:
        """``Failed`` with ``reason``; every launch is retired (stopped by the sweep)."""
        for launch in state["launches"].values():
            launch["retired"] = launch.get("retired") or time.time()
        state["serving"] = None
        try:
            self.store.transition(
                ep.name, E.FAILED, failure_reason=reason, set_fields={"backend_handle": json.dumps(state)}
            )
            log.info("endpoint %s failed: %s", ep.name, reason)
        except ConflictError:
            self._save(ep, state)

    # -- stopping -------------------------------------------------------------------------------------------

    def _retire_all(self, ep: EndpointRecord, state: dict[str, Any]) -> None:
        changed = state["serving"] is not None
        state["serving"] = None
        for launch in state["launches"].values():
            if not launch.get("retired"):
                launch["retired"] = time.time()
                changed = True
        if changed:
            self._save(ep, state)

    def _sweep(self, ep: EndpointRecord, state: dict[str, Any]) -> bool:
        """Cancel retired launches, kill them after the grace, forget those whose supervisors are all gone.
        Returns whether any launch is left."""
        launches: dict[str, dict[str, Any]] = state["launches"]
        gone = []
        for attempt, launch in launches.items():
            retired = launch.get("retired")
            if not retired:
                continue
            handle = launch.get("handle", {})
            if not handle.get("hosts"):
                gone.append(attempt)
                continue
            key = (ep.name, attempt)
            if key not in self._cancelled:
                self._cancelled.add(key)
                self.backend.cancel(handle, self.settings.stop_grace_seconds)
            alive = self.backend.hosts_alive(handle)
            deadline = float(retired) + self.settings.stop_grace_seconds + KILL_ALLOWANCE_S
            if any(alive.values()) and time.time() < deadline:
                continue
            self.backend.kill(handle)
            self.backend.release(handle)
            gone.append(attempt)
            UsageStore(self.store.engine).endpoint_launch(ep, attempt, launch, ended=time.time())
        for attempt in gone:
            launches.pop(attempt, None)
            self._cancelled.discard((ep.name, attempt))
            self.store.forget_instances(ep.id, int(attempt))
        if gone:
            self._save(ep, state)
        return bool(launches)

    def _vcpus(self, launches: dict[str, dict[str, Any]]) -> float:
        return float(sum(float(x.get("vcpus", 0)) * int(x.get("count", 1)) for x in launches.values()))
