"""The serving launch: what the scheduler puts in a serving supervisor's ``spec`` (the contract between them).

A backend launches endpoint and transform instances exactly as it launches a training job's hosts (one supervisor
per host, ``algo-<i>``), with :attr:`SupervisorConfig.kind` ``endpoint`` or ``transform`` and this as its ``spec``.
The launch's ``job_name`` is :func:`launch_name` (never a training job's name: those have no dots); the
supervisor reports through ``/v1/agent/endpoints/<Name>/...`` or ``/v1/agent/transform-jobs/<Name>/...``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AGENT_PREFIXES = {"endpoint": "/v1/agent/endpoints", "transform": "/v1/agent/transform-jobs"}


def launch_name(kind: Literal["endpoint", "transform"], name: str) -> str:
    """The backend-level name of an endpoint's or a transform job's launch: ``endpoint.<name>`` or
    ``transform.<name>`` (its roots are ``<jobs root>/<launch name>[.attempt-<n>]/algo-<i>``)."""
    return f"{kind}.{name}"


class ServingResources(BaseModel):
    """``ResourceConfig`` as backends read it from any spec."""

    model_config = ConfigDict(extra="allow")

    InstanceType: str
    InstanceCount: int = Field(ge=1)


class ServingLaunch(BaseModel):
    """The ``spec`` of a serving supervisor.

    ``Model`` is the DescribeModel shape of the model served (``ModelName``, ``PrimaryContainer`` with ``Image``,
    ``ModelDataUrl``, ``Environment``; ``ExecutionRoleArn``; ``EnableNetworkIsolation``). ``Transform`` is the
    CreateTransformJob request as stored (transform only). ``VariantName`` is the production variant an endpoint
    instance serves (endpoint only).
    """

    model_config = ConfigDict(extra="allow")

    Kind: Literal["endpoint", "transform"]
    Name: str
    ResourceConfig: ServingResources
    Model: dict[str, Any]
    VariantName: str | None = None
    Transform: dict[str, Any] | None = None


def serving_launch(spec: dict[str, Any]) -> ServingLaunch:
    """``spec`` as a :class:`ServingLaunch` (pydantic's ``ValidationError`` if it is not one)."""
    return ServingLaunch.model_validate(spec)
