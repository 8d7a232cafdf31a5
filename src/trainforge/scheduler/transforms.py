"""The transform-job reconciler: launches transform jobs, forwards stops, notices instances that vanished.

The scheduler calls :meth:`TransformReconciler.run_once` once per pass. Each pass reads the active transform jobs
from the store and acts on each through the store's compare-and-set, so a pass racing a route or a supervisor never
corrupts a record. A job is launched as one serving supervisor per instance (``algo-1..N``) through the backend
seam (kind ``transform``); its instances report their own statuses, which move the job
(:mod:`trainforge.service.transform_agent`). What the reconciler decides itself:

- a stop: the backend is told to cancel the job's supervisors (their heartbeats say so too); once none runs the job
  is ``Stopped``;
- an instance whose supervisor is gone without a final report fails the job, naming the host; the others are
  stopped;
- a job that ended (e.g. one instance failed) while others still run: those are cancelled, then released.

Every step is a stored state, so a restarted server carries on where the last one was: handles are re-read from
the store, and a launch the server died in the middle of is taken over or launched again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, TrainforgeError
from trainforge.runtime.serving.spec import ServingLaunch, ServingResources, launch_name
from trainforge.scheduler.gpus import allocate, gpus_needed, held_gpus
from trainforge.scheduler.instances import Machine, Placement, hosting_instance_type
from trainforge.scheduler.launching import launch_request, placement_of
from trainforge.service.agent import hash_token
from trainforge.settings import Settings
from trainforge.spec.images import resolve_image
from trainforge.spec.transforms import INSTANCE_TERMINAL, TransformJobStatus, transform_move
from trainforge.store.transforms import TransformJobRecord, TransformJobStore

log = logging.getLogger("trainforge.scheduler.transforms")
T = TransformJobStatus
RELEASE_ALLOWANCE_S = 60.0  # beyond the stop grace: how long an ended job's supervisors may take to exit
CAPACITY_RETRY_S = 5.0  # how long a job the backend had no room for waits before the next launch attempt


def lost_reason(handle: dict[str, Any], hosts: list[str]) -> str:
    """The FailureReason of a transform job whose instances on ``hosts`` are gone without a final report."""
    pids = {str(h.get("host")): h.get("pid") for h in handle.get("hosts", [])}
    named = ", ".join(f"{h} (pid {pids[h]})" if pids.get(h) else h for h in hosts)
    return (
        f"InternalServerError: the supervisor of transform instance {named} is gone: it ended without reporting a "
        "final status (killed, or its machine restarted)"
    )


@dataclass
class TransformReconciler:
    """Launches and watches the transform jobs of one store on one backend."""

    store: TransformJobStore
    backend: Backend
    settings: Settings
    machine: Machine
    server_url: str
    storage: dict[str, Any]
    wake: threading.Event = field(default_factory=threading.Event)
    _launched: dict[str, dict[str, Any]] = field(default_factory=dict)  # active launched jobs: their handles
    _ended: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)  # to release: handle, deadline
    _cancelled: set[str] = field(default_factory=set)
    _retry_at: dict[str, float] = field(default_factory=dict)

    @property
    def capacity_vcpus(self) -> float:
        """vCPU slots the local machine offers to concurrent jobs."""
        return self.machine.cpus * self.settings.local_cpu_oversubscription

    def run_once(self, used: float = 0.0, gpus: set[int] | None = None) -> float:
        """One pass over the active transform jobs; ``used`` is what other jobs hold of this machine's vCPU slots,
        ``gpus`` the GPU indices they hold (the GPUs transform jobs hold, or take in this pass, are added to it).

        Returns the vCPU slots the transform jobs hold (on a backend that uses this machine's capacity). Never
        raises: a job whose step failed is logged and looked at again next pass.
        """
        held = 0.0
        gpus = set() if gpus is None else gpus
        active = self.store.active()
        for job in active:
            try:
                held += self._reconcile(job, used + held, gpus)
            except Exception:
                log.exception("reconciling transform job %s failed", job.name)
        self._release_ended({job.name for job in active})
        return held

    # -- one job ----------------------------------------------------------------------------------------------

    def _reconcile(self, job: TransformJobRecord, used: float, gpus: set[int]) -> float:
        handle = job.handle
        if handle is None:
            if job.status == T.STOPPING:
                self._end(job, T.STOPPED)  # nothing was launched: nothing will report the stop's end
                return 0.0
            return self._try_launch(job, used, gpus)
        if not handle.get("hosts"):
            adopted = self._adopt(job, handle)
            if adopted is None:
                return 0.0
            handle = adopted
        self._launched[job.name] = handle
        gpus |= held_gpus(handle)  # held until the job is no longer active
        alive = self.backend.hosts_alive(handle)
        if job.status == T.STOPPING:
            self._cancel(job.name, handle)
            if not any(alive.values()):
                self._end(job, T.STOPPED)  # every instance ended (those that reported Stopped already moved it)
                return 0.0
            return self._vcpus(job)
        if all(alive.values()):
            return self._vcpus(job)
        current = self.store.get(job.name)  # read after the liveness check: a final report is stored before exit
        if current.terminal or current.attempt != job.attempt:
            return 0.0
        if current.status == T.STOPPING:
            return self._vcpus(job)  # stopped meanwhile: the next pass sees it
        instances = self.store.instances(current.id, current.attempt)
        ended = {h for h, r in instances.items() if r.status in INSTANCE_TERMINAL}
        vanished = [h for h, up in alive.items() if not up and h not in ended]
        if vanished:
            self._fail(current, lost_reason(handle, vanished))
            if any(alive.values()):
                self._cancel(job.name, handle)
            return 0.0
        if any(alive.values()):
            return self._vcpus(job)  # done instances exited after their final report; the others carry on
        move = transform_move(
            current.status, {h: (r.status, r.failure_reason) for h, r in instances.items()}, current.instance_count
        )
        if move.status is not None:
            self._end(current, move.status, move.failure_reason, conditions={"attempt": current.attempt})
        else:
            self._fail(current, "InternalServerError: every instance ended, but the job reached no final status")
        return 0.0

    def _placement(self, job: TransformJobRecord) -> Placement:
        instance = hosting_instance_type(job.instance_type, self.machine, field="TransformResources.InstanceType")
        return placement_of(self, instance)

    def _vcpus(self, job: TransformJobRecord) -> float:
        if not self.backend.uses_local_capacity:
            return 0.0
        try:
            return float(self._placement(job).effective_vcpus) * job.instance_count
        except TrainforgeError:
            return 0.0

    def _try_launch(self, job: TransformJobRecord, used: float, gpus: set[int]) -> float:
        if time.monotonic() < self._retry_at.get(job.name, 0.0):
            return 0.0
        try:
            placement = self._placement(job)
        except TrainforgeError as exc:
            self._fail(job, f"ClientError: {exc.message}")
            return 0.0
        need = float(placement.effective_vcpus) * job.instance_count if self.backend.uses_local_capacity else 0.0
        if need and used > 0 and used + need > self.capacity_vcpus:
            return 0.0  # waits for room: other jobs hold this machine's vCPU slots
        gpu_ids: tuple[int, ...] | None = None
        gpu_need = gpus_needed(placement, self._accelerator(job), self.machine) * job.instance_count
        if gpu_need and self.backend.uses_local_capacity:
            gpu_ids = allocate(self.machine, gpus, gpu_need)
            if gpu_ids is None:
                return 0.0  # waits for GPUs other jobs hold
            gpus.update(gpu_ids)
        self._launch(job, placement, gpu_ids)
        return need

    @staticmethod
    def _accelerator(job: TransformJobRecord) -> str:
        """``gpu`` or ``cpu``: the accelerator of the model's image (``cpu`` when unknown)."""
        image = (job.model_spec.get("PrimaryContainer") or {}).get("Image")
        try:
            return resolve_image(str(image)).accelerator if image else "cpu"
        except TrainforgeError:
            return "cpu"

    def _launch(self, job: TransformJobRecord, placement: Placement, gpu_ids: tuple[int, ...] | None = None) -> None:
        token = secrets.token_urlsafe(32)
        claimed = self.store.set_fields(
            job.name,
            conditions={"backend_handle": None, "status": T.IN_PROGRESS.value, "attempt": job.attempt},
            backend=self.backend.name,
            backend_handle=json.dumps({"backend": self.backend.name, "hosts": [], "gpu_ids": list(gpu_ids or [])}),
            agent_token_hash=hash_token(token),
            heartbeat_time=None,
        )
        if not claimed:
            return  # stopped or claimed meanwhile
        spec = ServingLaunch(
            Kind="transform",
            Name=job.name,
            ResourceConfig=ServingResources(InstanceType=job.instance_type, InstanceCount=job.instance_count),
            Model=job.model_spec,
            Transform=job.spec,
        ).model_dump(mode="json", exclude_none=True)
        request = launch_request(
            self,
            job_name=launch_name("transform", job.name),
            spec=spec,
            placement=placement,
            token=token,
            role_json=job.role_json,
            attempt=job.attempt,
            kind="transform",
            gpu_ids=gpu_ids,
        )
        try:
            handle = self.backend.launch(request)
        except CapacityError as exc:
            log.info("transform job %s waits for room: %s", job.name, exc.message)
            self._retry_at[job.name] = time.monotonic() + CAPACITY_RETRY_S
            self._unclaim(job, next_attempt=False)
            return
        except TrainforgeError as exc:
            self._fail(job, f"InternalServerError: {exc.message}")
            return
        self._retry_at.pop(job.name, None)
        self._launched[job.name] = handle
        self.store.set_fields(job.name, backend_handle=json.dumps(handle), heartbeat_time=time.time())
        log.info("transform job %s launched (%d instance(s))", job.name, job.instance_count)

    def _adopt(self, job: TransformJobRecord, handle: dict[str, Any]) -> dict[str, Any] | None:
        """A job whose launch the server died in the middle of: take over its supervisors when every instance's
        runs, else kill what did start and launch it again as its next attempt (a new token and job roots)."""
        found = self.backend.adopt(launch_name("transform", job.name), job.attempt, job.instance_count)
        if found is not None and len(found.get("hosts", [])) == job.instance_count:
            adopted = {**handle, **found}
            self.store.set_fields(job.name, backend_handle=json.dumps(adopted), heartbeat_time=time.time())
            log.info("transform job %s: took over the supervisors of a launch the server died in", job.name)
            return adopted
        if found is not None:
            self.backend.kill(found)
        if job.status == T.STOPPING:
            self._end(job, T.STOPPED)
        else:
            self._unclaim(job, next_attempt=True)
        return None

    def _unclaim(self, job: TransformJobRecord, *, next_attempt: bool) -> None:
        """Forget a launch (handle and token), so a later pass launches the job again."""
        values: dict[str, Any] = {"backend": None, "backend_handle": None, "agent_token_hash": None}
        if next_attempt:
            values["attempt"] = job.attempt + 1
        self.store.set_fields(job.name, conditions={"attempt": job.attempt}, **values)

    # -- stopping and ending ----------------------------------------------------------------------------------

    def _cancel(self, name: str, handle: dict[str, Any]) -> None:
        if name not in self._cancelled:
            self._cancelled.add(name)
            self.backend.cancel(handle, self.settings.stop_grace_seconds)

    def _release_ended(self, active: set[str]) -> None:
        """Stop what still runs of jobs that ended (another instance failed), and let the backend free what they
        hold once their supervisors exited, or after the stop grace period plus :data:`RELEASE_ALLOWANCE_S`."""
        now = time.monotonic()
        for name in [n for n in self._launched if n not in active]:
            handle = self._launched.pop(name)
            self._ended[name] = (handle, now + self.settings.stop_grace_seconds + RELEASE_ALLOWANCE_S)
            self._retry_at.pop(name, None)
            with contextlib.suppress(Exception):
                if any(self.backend.hosts_alive(handle).values()):
                    self._cancel(name, handle)
            self._cancelled.discard(name)
        for name, (handle, deadline) in list(self._ended.items()):
            try:
                if now < deadline and any(self.backend.hosts_alive(handle).values()):
                    continue
                del self._ended[name]
                if now >= deadline:
                    self.backend.kill(handle)
                self.backend.release(handle)
            except Exception:
                log.exception("releasing the backend resources of transform job %s failed", name)

    def _fail(self, job: TransformJobRecord, reason: str) -> None:
        self._end(job, T.FAILED, reason)

    def _end(
        self,
        job: TransformJobRecord,
        status: TransformJobStatus,
        failure_reason: str | None = None,
        *,
        conditions: dict[str, Any] | None = None,
    ) -> None:
        with contextlib.suppress(ConflictError):
            self.store.transition(job.name, status, failure_reason=failure_reason, conditions=conditions)
            self.wake.set()
        log.info("transform job %s -> %s (%s)", job.name, status.value, failure_reason or "")
