"""Backends that run jobs: local processes (default) or a Ray cluster (``TRAINFORGE_BACKEND=ray``)."""

from __future__ import annotations

from trainforge.backends.base import Backend, LaunchRequest
from trainforge.scheduler.instances import Machine
from trainforge.settings import Settings

__all__ = ["Backend", "LaunchRequest", "open_backend"]


def open_backend(settings: Settings, machine: Machine) -> Backend:
    """The backend ``settings.backend`` names, ready to launch jobs.

    ``local`` runs supervisors on this machine; ``ray`` connects to the cluster at ``TRAINFORGE_RAY_ADDRESS`` now
    (Ray is imported only in that case).

    Raises:
        ValidationError: The backend cannot be used with these settings (the message names the setting).
    """
    if settings.backend == "ray":
        from trainforge.backends.ray import RayBackend

        return RayBackend.from_settings(settings)
    from trainforge.backends.local import LocalBackend

    return LocalBackend(settings.jobs_root, machine=machine, launcher=settings.launcher)
