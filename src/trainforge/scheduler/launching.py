"""The :class:`LaunchRequest` the scheduler's passes build (training jobs, endpoints, transform jobs).

Most of a request is fixed by the server (its settings, its URL, the job store, this machine); :func:`launch_request`
fills that part once, and each kind of launch adds its own: name, spec, placement, token, role and attempt.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from trainforge.backends.base import Backend, LaunchRequest
from trainforge.scheduler.instances import InstanceType, Machine, Placement, memory_limit_gib, place
from trainforge.server.tls import supervisor_ca_pem
from trainforge.settings import Settings


class Launcher(Protocol):
    """What a scheduler pass that launches supervisors knows about the server it runs in."""

    backend: Backend
    settings: Settings
    machine: Machine
    server_url: str
    storage: dict[str, Any]


def placement_of(launcher: Launcher, instance: InstanceType) -> Placement:
    """How a host of ``instance`` runs: fitted to this machine (:func:`place`, which may raise ``CapacityError``)
    on a backend that uses its capacity, else as the type is (a cluster's nodes are sized by the backend)."""
    if launcher.backend.uses_local_capacity:
        return place(instance, launcher.machine)
    return Placement(instance, max(1, instance.vcpus), None)


def launch_request(
    launcher: Launcher,
    *,
    job_name: str,
    spec: dict[str, Any],
    placement: Placement,
    token: str,
    role_json: str | None,
    attempt: int,
    kind: str,
    system_metrics_interval_seconds: float | None = None,
    gpu_ids: tuple[int, ...] | None = None,
    remote_function_key: str | None = None,
) -> LaunchRequest:
    """The request that launches ``job_name``'s supervisors (one per host) as its ``attempt``.

    ``role_json`` is the record's stored role (None: no role); ``system_metrics_interval_seconds`` defaults to the
    settings' interval; the host's memory limit is the placed instance type's, capped to this machine's.
    """
    settings = launcher.settings
    if system_metrics_interval_seconds is None:
        system_metrics_interval_seconds = settings.system_metrics_interval_seconds
    return LaunchRequest(
        job_name=job_name,
        spec=spec,
        placement=placement,
        agent_token=token,
        server_url=launcher.server_url,
        server_file=str(settings.server_file),
        storage=launcher.storage,
        region=settings.region,
        account_id=settings.account_id,
        stop_grace_seconds=settings.stop_grace_seconds,
        system_metrics_interval_seconds=system_metrics_interval_seconds,
        envs_root=str(settings.envs_root),
        env_reuse_server=settings.env_reuse_server,
        gpu_ids=gpu_ids,
        remote_function_key=remote_function_key,
        sandbox=settings.sandbox,
        containers=settings.containers,
        catalogue_containers=settings.catalogue_containers,
        warm_fork=settings.warm_fork,
        memory_limit_gib=memory_limit_gib(placement.instance, launcher.machine),
        ca_bundle_pem=supervisor_ca_pem(settings),
        role=json.loads(role_json) if role_json else None,
        attempt=attempt,
        kind=kind,
    )
