"""The backend interface: how the scheduler starts, watches and stops a job's supervisors.

Nothing else about a job lives in a backend: the job's state is in the store, its progress is reported by
its supervisors over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from trainforge.runtime.launch import InstanceInfo, SupervisorConfig
from trainforge.scheduler.instances import InstanceType, Placement


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one supervisor per host of a job.

    ``gpu_ids`` are the machine's GPUs allocated to the job (None: a job without GPUs); a backend records them
    in the handle it returns (``"gpu_ids"``) so the scheduler knows which GPUs are held. ``attempt`` is the run of
    the job (1, then 2, ... after a lost host); each attempt's hosts get job roots of their own
    (:func:`trainforge.runtime.launch.job_dir_name`).
    """

    job_name: str
    spec: dict[str, Any]
    placement: Placement
    agent_token: str
    server_url: str
    server_file: str | None
    storage: dict[str, Any]
    region: str
    account_id: str
    stop_grace_seconds: float
    envs_root: str | None = None
    env_reuse_server: str = "never"
    gpu_ids: tuple[int, ...] | None = None
    remote_function_key: str | None = None
    system_metrics_interval_seconds: float = 5.0
    role: dict[str, Any] | None = None
    sandbox: str = "auto"
    containers: str = "auto"
    catalogue_containers: str = "off"
    warm_fork: str = "auto"
    memory_limit_gib: float | None = None
    ca_bundle_pem: str | None = None
    attempt: int = 1
    kind: str = "training"
    """``training``, ``endpoint`` or ``transform`` (see :attr:`SupervisorConfig.kind`)."""

    def host_config(
        self,
        host: str,
        hosts: list[str],
        *,
        addresses: dict[str, str],
        master_port: int | None,
        python: str,
        server_file: str | None,
        **node: Any,
    ) -> SupervisorConfig:
        """The supervisor config of one host of this job; ``node`` fills what depends on where it runs
        (``envs_root``, ``gpu_ids``, ``warm_dir``)."""
        inst = self.placement.instance
        return SupervisorConfig(
            job_name=self.job_name,
            host=host,
            hosts=hosts,
            host_addresses=addresses,
            master_port=master_port,
            spec=self.spec,
            server_url=self.server_url,
            server_file=server_file,
            agent_token=self.agent_token,
            storage=self.storage,
            region=self.region,
            account_id=self.account_id,
            stop_grace_seconds=self.stop_grace_seconds,
            system_metrics_interval_seconds=self.system_metrics_interval_seconds,
            remote_function_key=self.remote_function_key,
            role=self.role,
            sandbox="off" if self.sandbox == "off" else "auto",
            containers="off" if self.containers == "off" else "docker" if self.containers == "docker" else "auto",
            catalogue_containers="on" if self.catalogue_containers == "on" else "off",
            warm_fork="off" if self.warm_fork == "off" else "auto",
            memory_limit_gib=self.memory_limit_gib,
            ca_bundle_pem=self.ca_bundle_pem,
            attempt=self.attempt,
            kind="endpoint" if self.kind == "endpoint" else "transform" if self.kind == "transform" else "training",
            instance=InstanceInfo(
                type=inst.name,
                vcpus=inst.vcpus,
                memory_gib=inst.memory_gib,
                gpus=inst.gpus,
                effective_vcpus=self.placement.effective_vcpus,
                notice=self.placement.notice,
            ),
            python=python,
            env_reuse_server="auto" if self.env_reuse_server == "auto" else "never",
            **node,
        )


class Backend(Protocol):
    """Starts, polls and cancels jobs. Handles are JSON-serialisable dicts stored with the job.

    A handle has ``"backend"`` (the backend's name) and ``"hosts"``: one dict per host with at least ``"host"``
    (``algo-<i>``). ``uses_local_capacity`` says whether jobs run on the server's own machine, so the scheduler
    counts this machine's vCPU slots and GPUs for them (a cluster backend reports its own capacity instead).
    """

    name: str
    uses_local_capacity: bool

    def check_fits(self, instance: InstanceType, count: int) -> None:
        """Raise ``ValidationError`` (naming the field and the fix) if ``count`` hosts of ``instance`` could never
        run here, however long the job waited; return quietly if they could (now or later)."""
        ...

    def launch(self, request: LaunchRequest) -> dict[str, Any]:
        """Start the job's supervisors; return a handle. Raises ``CapacityError`` (with a human reason) when
        the job must wait for room, ``BackendError`` if nothing could start."""
        ...

    def hosts_alive(self, handle: dict[str, Any]) -> dict[str, bool]:
        """For each host of the job (``algo-<i>``), whether its supervisor is still running."""
        ...

    def release(self, handle: dict[str, Any]) -> None:
        """Free what an ended job still holds on the backend (e.g. a cluster's reservation). Idempotent; never
        raises. The scheduler calls it once it sees the job is no longer active."""
        ...

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """Ask the supervisors to stop (they SIGTERM the user code, wait ``grace_s``, then SIGKILL and upload);
        force-kill supervisors still alive well after that. Never raises for a job already gone."""
        ...

    def adopt(self, job_name: str, attempt: int, count: int) -> dict[str, Any] | None:
        """The handle of the job's supervisors for ``attempt`` that are running although no handle was stored (the
        server died while launching them), with every one of its ``count`` hosts; None when none runs. Never
        raises."""
        ...

    def kill(self, handle: dict[str, Any]) -> None:
        """SIGKILL whatever still runs of the job's hosts now (supervisors and the code they started, even code
        whose supervisor is already gone) and free what they hold, so the job can be launched again (a retry).
        Idempotent; never raises."""
        ...
