"""The backend interface: how the scheduler starts, watches and stops a job's supervisors.

Nothing else about a job lives in a backend: the job's state is in the store, its progress is reported by
its supervisors over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from trainforge.scheduler.instances import Placement


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start one supervisor per host of a job.

    ``gpu_ids`` are the machine's GPUs allocated to the job (None: a job without GPUs); a backend records them
    in the handle it returns (``"gpu_ids"``) so the scheduler knows which GPUs are held.
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


class Backend(Protocol):
    """Starts, polls and cancels jobs. Handles are JSON-serialisable dicts stored with the job."""

    name: str

    def launch(self, request: LaunchRequest) -> dict[str, Any]:
        """Start the job's supervisors; return a handle. Raises ``BackendError`` if nothing could start."""
        ...

    def poll(self, handle: dict[str, Any]) -> bool:
        """Whether any of the job's supervisors is still running."""
        ...

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """Ask the supervisors to stop (they SIGTERM the user code, wait ``grace_s``, then SIGKILL and upload);
        force-kill supervisors still alive well after that. Never raises for a job already gone."""
        ...
