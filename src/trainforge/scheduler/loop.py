"""The scheduler: claims startable jobs, checks capacity, launches, forwards stops, reconciles.

It runs as one thread inside the server. Each pass reads the active jobs from the store and acts on each
through the store's compare-and-set transition, so a pass racing a route or a supervisor never corrupts a
record: the loser's transition fails and the next pass sees the new state.

A job whose host is lost (its supervisor vanished without a final report) goes ``Interrupted``. With retries
left (``RetryStrategy.MaximumRetryAttempts``, the number of re-runs) the attempt's other hosts are told to stop
(their heartbeat says ``Interrupted``), whatever is left of them is killed, and the job goes ``Restarting`` as
its next attempt (new agent token, no handle) and is launched again like a new job; without, it goes ``Failed``
naming the host. Every step is a stored state, so a restarted server carries on where the last one was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainforge.backends.base import Backend
from trainforge.errors import CapacityError, ConflictError, TrainforgeError
from trainforge.scheduler.endpoints import EndpointReconciler
from trainforge.scheduler.gpus import allocate, gpus_needed, held_gpus, image_accelerator
from trainforge.scheduler.instances import Machine, Placement, lookup, place
from trainforge.scheduler.launching import launch_request, placement_of
from trainforge.scheduler.salvage import salvage_spools
from trainforge.scheduler.transforms import TransformReconciler
from trainforge.service.agent import hash_token
from trainforge.service.remote_keys import job_key
from trainforge.settings import Settings
from trainforge.spec.status import TERMINAL, SecondaryStatus
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

log = logging.getLogger("trainforge.scheduler")
S = SecondaryStatus
_LAUNCHABLE = {S.STARTING, S.PENDING, S.RESTARTING}  # no handle: waiting for a (first or next) launch
_HOST_LOSS_FROM = {S.STARTING, S.DOWNLOADING, S.TRAINING, S.UPLOADING}  # launched, running statuses
RELEASE_ALLOWANCE_S = 60.0  # beyond the stop grace: how long an ended job's supervisors may take to exit
CAPACITY_RETRY_S = 5.0  # how long a job the cluster had no room for waits before the next launch attempt


@dataclass
class Scheduler:
    """One scheduling loop over the store and one backend."""

    store: JobStore
    backend: Backend
    settings: Settings
    machine: Machine
    server_url: str
    storage: dict[str, Any]
    wake: threading.Event = field(default_factory=threading.Event)
    remote_secret: bytes = b""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cancelled: set[str] = field(default_factory=set)
    _retry_at: dict[str, float] = field(default_factory=dict)  # jobs a cluster had no room for: next try
    _launched: dict[str, dict[str, Any]] = field(default_factory=dict)  # active launched jobs: their handles
    _ended: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)  # to release: handle, deadline
    transforms: TransformReconciler | None = None  # batch transform jobs, reconciled in each pass
    endpoints: EndpointReconciler | None = None  # endpoints, reconciled in each pass (their vCPUs count here)
    on_change: Callable[[str], None] | None = None
    """Called with a job's name after each status change this loop made (the server wakes the job's followers)."""

    def _transition(self, name: str, *args: Any, **kwargs: Any) -> JobRecord:
        """The store's compare-and-set transition of job ``name``; then :attr:`on_change`."""
        job = self.store.transition(name, *args, **kwargs)
        if self.on_change is not None:
            self.on_change(name)
        return job

    @property
    def capacity_vcpus(self) -> float:
        """vCPU slots the local machine offers to concurrent jobs."""
        return self.machine.cpus * self.settings.local_cpu_oversubscription

    def start(self) -> None:
        """Run passes in a daemon thread until :meth:`shutdown`; the first pass reconciles."""
        self._thread = threading.Thread(target=self._run, name="trainforge-scheduler", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop the loop (running jobs carry on: their supervisors are detached)."""
        self._stop.set()
        self.wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("scheduler pass failed")
            self.wake.wait(self.settings.scheduler_interval_seconds)
            self.wake.clear()

    def run_once(self) -> None:
        """One pass: reconcile launched jobs, forward stops, then start what fits."""
        active = self.store.active()
        used = 0.0
        gpus: set[int] = set()  # GPU indices held by launched jobs (grows as this pass launches)
        waiting: list[JobRecord] = []
        for job in active:
            handle = job.handle
            if handle is None:
                if job.secondary_status in _LAUNCHABLE:
                    waiting.append(job)
                elif job.secondary_status == S.STOPPING:
                    # Stopped between two attempts (nothing runs): nothing will report the stop's end.
                    self._end(job, S.STOPPED, "Training job stopped before it restarted")
                continue
            if handle.get("hosts"):
                self._launched[job.name] = handle
            if self._reconcile(job, handle):
                used += self._vcpus(job)
                gpus |= held_gpus(handle)
        if self.endpoints is not None:
            used += self.endpoints.run_once()
        if self.transforms is not None:
            used += self.transforms.run_once(used, gpus)
        for job in waiting:
            used += self._try_start(job, used, gpus)
        self._release_ended({job.name for job in active})

    def _release_ended(self, active: set[str]) -> None:
        """Let the backend free what ended jobs still hold, once their supervisors exited (they deliver their last
        lines after the final status, and hosts still stopping get their grace period) or after that grace."""
        now = time.monotonic()
        for name in [n for n in self._launched if n not in active]:
            self._ended[name] = (self._launched.pop(name), now + self.settings.stop_grace_seconds + RELEASE_ALLOWANCE_S)
            self._cancelled.discard(name)
            self._retry_at.pop(name, None)
        for name, (handle, deadline) in list(self._ended.items()):
            try:
                if now < deadline and any(self.backend.hosts_alive(handle).values()):
                    continue
                del self._ended[name]
                self.backend.release(handle)
            except Exception:
                log.exception("releasing the backend resources of %s failed", name)

    def _vcpus(self, job: JobRecord) -> float:
        try:
            return float(place(lookup(job.instance_type, self.machine), self.machine).effective_vcpus) * max(
                1, job.instance_count
            )
        except TrainforgeError:
            return 0.0

    def _reconcile(self, job: JobRecord, handle: dict[str, Any]) -> bool:
        """Act on one launched job; return whether it still holds resources."""
        if not handle.get("hosts"):
            adopted = self._adopt(job, handle)
            if adopted is None:
                return False
            handle = adopted
        if job.secondary_status == S.INTERRUPTED:
            return self._restart_when_clear(job, handle)
        alive = self.backend.hosts_alive(handle)
        if all(alive.values()):
            self._forward_stop(job, handle)
            return True
        current = self.store.get(job.name)
        if current.terminal:
            return False
        running = any(alive.values())
        if current.secondary_status == S.STOPPING:
            if running:
                return True  # the other hosts are still finishing their stop
            self._end(current, S.STOPPED, "Training job stopped; its supervisor ended before reporting")
            return False
        ended = {h for h, r in self.store.host_states(current.id).items() if r.status in TERMINAL}
        vanished = [h for h, up in alive.items() if not up and h not in ended]
        if vanished:
            salvage_spools(self.store, current, handle, vanished)  # lines only their spools hold, before any end
            return self._host_lost(current, handle, vanished, running)
        if running:
            # Hosts that are done exited after their final report; the others carry on (e.g. algo-1 merging).
            self._forward_stop(current, handle)
            return True
        self._fail(current, "InternalServerError: every host of the job ended, but the job reached no final status")
        return False

    def _host_lost(self, job: JobRecord, handle: dict[str, Any], vanished: list[str], running: bool) -> bool:
        """``Interrupted``, then (retries left) wait for the attempt's hosts to clear, or ``Failed`` naming the
        host. Returns whether the job still holds its resources."""
        reason = vanished_reason(handle, vanished, job.instance_count)
        left = job.max_retries - (job.attempt - 1)
        lost = f"Host {', '.join(vanished)} was lost: its supervisor ended without a final report"
        if left > 0:
            note = f"{lost}; restarting the job (retry {job.attempt} of {job.max_retries})"
        elif job.max_retries:
            note = f"{lost}; no retry attempts left ({job.max_retries} used)"
        else:
            note = f"{lost}; the job has no RetryStrategy"
        try:
            job = self._transition(
                job.name, S.INTERRUPTED, note, expected_from=_HOST_LOSS_FROM, conditions={"attempt": job.attempt}
            )
        except ConflictError:
            return running  # the job moved meanwhile (ended, stopped): the next pass decides on what it is now
        log.info("job %s attempt %d interrupted: %s", job.name, job.attempt, reason)
        if left > 0:
            return True  # its other hosts see Interrupted in their heartbeats and stop; then it restarts
        self._fail(job, reason)
        if running:
            self._cancel(job, handle)
        return False

    def _adopt(self, job: JobRecord, handle: dict[str, Any]) -> dict[str, Any] | None:
        """A job whose launch the server died in the middle of (``Starting`` with no hosts recorded): take over
        its supervisors when every host's runs, else stop what did start and put the job back to ``Pending``
        to be launched again (its old token is replaced, so a straggler's reports are refused)."""
        found = self.backend.adopt(job.name, job.attempt, job.instance_count)
        if found is not None and len(found.get("hosts", [])) == job.instance_count:
            adopted = {**handle, **found}
            self.store.set_fields(job.name, backend_handle=json.dumps(adopted), heartbeat_time=time.time())
            self._launched[job.name] = adopted
            log.info("job %s: took over the supervisors of a launch the server died in", job.name)
            return adopted
        if found is not None:
            self.backend.kill(found)
        self._unclaim(job, "The server stopped while launching this job; launching it again")
        return None

    def _restart_when_clear(self, job: JobRecord, handle: dict[str, Any]) -> bool:
        """Once every host of an interrupted attempt has exited (or after the stop grace period plus
        :data:`RELEASE_ALLOWANCE_S`), kill what is left of it and move the job to ``Restarting`` as its next
        attempt, to be launched again by a later pass. Returns whether the job still holds its resources."""
        alive = self.backend.hosts_alive(handle)
        current = self.store.get(job.name)
        if current.secondary_status != S.INTERRUPTED:
            return not current.terminal
        since = current.transitions[-1].start_time if current.transitions else current.last_modified_time
        deadline = since + self.settings.stop_grace_seconds + RELEASE_ALLOWANCE_S
        if any(alive.values()) and time.time() < deadline:
            return True
        try:
            self.backend.kill(handle)
        except Exception:
            log.exception("killing what is left of %s attempt %d failed", job.name, current.attempt)
        if current.max_retries - (current.attempt - 1) <= 0:
            self._fail(current, vanished_reason(handle, [h for h, up in alive.items() if not up], job.instance_count))
            return False
        attempt = current.attempt + 1
        try:
            self._transition(
                job.name,
                S.RESTARTING,
                f"Restarting the training job (attempt {attempt} of {current.max_retries + 1})",
                expected_from={S.INTERRUPTED},
                conditions={"attempt": current.attempt},
                set_fields={
                    "attempt": attempt,
                    "backend_handle": None,
                    "agent_token_hash": None,
                    "heartbeat_time": None,
                },
                clear_hosts=True,
            )
        except ConflictError:
            return False  # stopped meanwhile: the next pass sees it
        self._launched.pop(job.name, None)
        self._cancelled.discard(job.name)
        self.wake.set()
        log.info("job %s restarting as attempt %d", job.name, attempt)
        return False

    def _forward_stop(self, job: JobRecord, handle: dict[str, Any]) -> None:
        if job.stop_requested:
            self._cancel(job, handle)

    def _cancel(self, job: JobRecord, handle: dict[str, Any]) -> None:
        if job.name not in self._cancelled:
            self._cancelled.add(job.name)
            self.backend.cancel(handle, self.settings.stop_grace_seconds)

    def _try_start(self, job: JobRecord, used: float, gpus: set[int]) -> float:
        try:
            instance = lookup(job.instance_type, self.machine)
            # On this machine a type is fitted to it; a cluster's nodes are sized by the backend (check_fits).
            placement = placement_of(self, instance)
        except TrainforgeError as exc:
            self._fail(job, f"ClientError: {exc.message}")
            return 0.0
        need = float(placement.effective_vcpus) * max(1, job.instance_count)
        if not self.backend.uses_local_capacity:
            if time.monotonic() >= self._retry_at.get(job.name, 0.0):
                self._launch(job, placement, None)
            return 0.0
        if used > 0 and used + need > self.capacity_vcpus:
            self._pending(
                job,
                f"Waiting for capacity: {used:g} of {self.capacity_vcpus:g} vCPU slots on this machine are in use "
                f"and {job.instance_type} needs {need:g}",
            )
            return 0.0
        gpu_ids: tuple[int, ...] | None = None
        gpu_need = gpus_needed(placement, image_accelerator(job.spec), self.machine) * max(1, job.instance_count)
        if gpu_need > 0:
            gpu_ids = allocate(self.machine, gpus, gpu_need)
            if gpu_ids is None:
                self._pending(
                    job,
                    f"Waiting for GPUs: {len(gpus)} of {self.machine.gpus} GPUs on this machine are in use and "
                    f"{job.instance_type} needs {gpu_need}",
                )
                return 0.0
            gpus.update(gpu_ids)
        self._launch(job, placement, gpu_ids)
        return need

    def _pending(self, job: JobRecord, reason: str) -> None:
        if job.secondary_status != S.PENDING or job.status_message != reason:
            with contextlib.suppress(ConflictError):
                self._transition(
                    job.name,
                    S.PENDING,
                    reason,
                    expected_from=_LAUNCHABLE,
                    conditions={"backend_handle": None},
                )

    def _launch(self, job: JobRecord, placement: Placement, gpu_ids: tuple[int, ...] | None = None) -> None:
        token = secrets.token_urlsafe(32)
        try:
            self._transition(
                job.name,
                S.STARTING,
                "Launching requested ML instances",
                expected_from=_LAUNCHABLE,
                conditions={"backend_handle": None},
                set_fields={
                    "backend": self.backend.name,
                    "backend_handle": json.dumps(
                        {"backend": self.backend.name, "hosts": [], "gpu_ids": list(gpu_ids or [])}
                    ),
                    "agent_token_hash": hash_token(token),
                },
            )
        except ConflictError:
            return  # stopped or claimed meanwhile
        request = launch_request(
            self,
            job_name=job.name,
            spec=job.spec,
            placement=placement,
            token=token,
            role_json=job.role_json,
            attempt=job.attempt,
            kind="training",
            gpu_ids=gpu_ids,
            remote_function_key=job_key(self.remote_secret, job.name) if self.remote_secret else None,
        )
        try:
            handle = self.backend.launch(request)
        except CapacityError as exc:
            self._retry_at[job.name] = time.monotonic() + CAPACITY_RETRY_S
            self._unclaim(job, exc.message)
            return
        except TrainforgeError as exc:
            self._fail(job, f"InternalServerError: {exc.message}")
            return
        self._retry_at.pop(job.name, None)
        self._launched[job.name] = handle
        self.store.set_fields(job.name, backend_handle=json.dumps(handle), heartbeat_time=time.time())

    def _unclaim(self, job: JobRecord, reason: str) -> None:
        """Put a job whose launch found no room back to ``Pending`` (with the reason) for a later pass."""
        with contextlib.suppress(ConflictError):
            self._transition(
                job.name,
                S.PENDING,
                reason,
                expected_from={S.STARTING},
                set_fields={"backend": None, "backend_handle": None, "agent_token_hash": None},
            )

    def _fail(self, job: JobRecord, reason: str) -> None:
        self._end(job, S.FAILED, "Training job failed", failure_reason=reason)

    def _end(self, job: JobRecord, status: SecondaryStatus, message: str, failure_reason: str | None = None) -> None:
        with contextlib.suppress(ConflictError):
            self._transition(job.name, status, message, failure_reason=failure_reason)
        log.info("job %s -> %s (%s)", job.name, status.value, failure_reason or message)


def vanished_reason(handle: dict[str, Any], hosts: list[str], count: int) -> str:
    """The FailureReason of a job whose supervisors on ``hosts`` are gone without a final report."""
    pids = {str(h.get("host")): h.get("pid") for h in handle.get("hosts", [])}
    if count <= 1:
        return (
            f"InternalServerError: host {', '.join(hosts) or 'algo-1'}: the job's supervisor process "
            f"(pid {', '.join(str(p) for p in pids.values())}) is gone: it ended without reporting a final status "
            "(killed, or the machine restarted)"
        )
    named = ", ".join(f"{h} (pid {pids.get(h, '?')})" for h in hosts)
    return (
        f"InternalServerError: the supervisor of host {named} is gone: it ended without reporting a final status "
        "(killed, or its machine restarted); the job's other hosts were stopped"
    )
