"""Client calls of the inference routes (models, endpoint configs, endpoints, transform jobs), over
:class:`~trainforge.client.TrainforgeClient`.

Bodies and replies are SageMaker's wire shapes (CreateModel, DescribeEndpoint, ...) as JSON, with times as epoch
seconds. Every call raises the :mod:`trainforge.errors` class the server names: ``ValidationError`` (400, names the
field), ``NotFoundError`` (404: "Could not find endpoint ..."), ``ConflictError`` (409: a taken name, or a resource
in use), ``ModelError`` (424: the model answered an invocation with an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from trainforge.client import TrainforgeClient

MODELS = "/v1/models"
ENDPOINT_CONFIGS = "/v1/endpoint-configs"
ENDPOINTS = "/v1/endpoints"
TRANSFORM_JOBS = "/v1/transform-jobs"
INVOKE_TIMEOUT_S = 70.0  # the serving process's own limit is 60 s (reference §7.3)


def _path(collection: str, name: str, suffix: str = "") -> str:
    return f"{collection}/{quote(name, safe='')}{suffix}"


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


# -- models -------------------------------------------------------------------------------------------


def create_model(client: TrainforgeClient, request: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/models`` with a CreateModel request; ``{"ModelArn"}``."""
    return _dict(client.request("POST", MODELS, json_body=dict(request)))


def describe_model(client: TrainforgeClient, name: str) -> dict[str, Any]:
    """``GET /v1/models/{name}``: DescribeModel (``ModelName``, ``ModelArn``, ``PrimaryContainer``,
    ``ExecutionRoleArn``, ``CreationTime``, ``EnableNetworkIsolation``, and ``TrainingJobName`` when the model
    data is a training job's ``model.tar.gz``)."""
    return _dict(client.request("GET", _path(MODELS, name)))


def list_models(client: TrainforgeClient, *, name_contains: str | None = None) -> list[dict[str, Any]]:
    """``GET /v1/models``: ``{"Models": [{"ModelName", "ModelArn", "CreationTime"}, ...]}``, newest first."""
    params = {"NameContains": name_contains} if name_contains else None
    models: list[dict[str, Any]] = client.request("GET", MODELS, params=params).get("Models", [])
    return models


def delete_model(client: TrainforgeClient, name: str) -> None:
    """``DELETE /v1/models/{name}``."""
    client.request("DELETE", _path(MODELS, name))


# -- endpoint configs ---------------------------------------------------------------------------------


def create_endpoint_config(client: TrainforgeClient, request: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/endpoint-configs`` with a CreateEndpointConfig request (``EndpointConfigName``,
    ``ProductionVariants``: ``[{"VariantName", "ModelName", "InitialInstanceCount", "InstanceType",
    "InitialVariantWeight"}]``); ``{"EndpointConfigArn"}``."""
    return _dict(client.request("POST", ENDPOINT_CONFIGS, json_body=dict(request)))


def describe_endpoint_config(client: TrainforgeClient, name: str) -> dict[str, Any]:
    """``GET /v1/endpoint-configs/{name}``: DescribeEndpointConfig."""
    return _dict(client.request("GET", _path(ENDPOINT_CONFIGS, name)))


def list_endpoint_configs(client: TrainforgeClient) -> list[dict[str, Any]]:
    """``GET /v1/endpoint-configs``: ``{"EndpointConfigs": [...]}``, newest first."""
    configs: list[dict[str, Any]] = client.request("GET", ENDPOINT_CONFIGS).get("EndpointConfigs", [])
    return configs


def delete_endpoint_config(client: TrainforgeClient, name: str) -> None:
    """``DELETE /v1/endpoint-configs/{name}``."""
    client.request("DELETE", _path(ENDPOINT_CONFIGS, name))


# -- endpoints ----------------------------------------------------------------------------------------


def create_endpoint(client: TrainforgeClient, request: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/endpoints`` with ``{"EndpointName", "EndpointConfigName", "Tags"?}``; ``{"EndpointArn"}``.
    The endpoint starts ``Creating``."""
    return _dict(client.request("POST", ENDPOINTS, json_body=dict(request)))


def update_endpoint(client: TrainforgeClient, name: str, endpoint_config_name: str) -> dict[str, Any]:
    """``POST /v1/endpoints/{name}/update`` with ``{"EndpointConfigName"}``: the endpoint goes ``Updating``, then
    ``InService`` on the new config (the old instances serve until the new ones are ready)."""
    body = {"EndpointConfigName": endpoint_config_name}
    return _dict(client.request("POST", _path(ENDPOINTS, name, "/update"), json_body=body))


def describe_endpoint(client: TrainforgeClient, name: str) -> dict[str, Any]:
    """``GET /v1/endpoints/{name}``: DescribeEndpoint (``EndpointName``, ``EndpointArn``, ``EndpointConfigName``,
    ``EndpointStatus`` = ``Creating|InService|Updating|Deleting|Failed``, ``FailureReason``, ``CreationTime``,
    ``LastModifiedTime``, ``ProductionVariants``: ``[{"VariantName", "CurrentInstanceCount",
    "DesiredInstanceCount", "CurrentWeight", "DesiredWeight"}]``), plus trainforge's ``ModelName``,
    ``TrainingJobName`` (where the model came from) and ``Instances`` (``[{"Host", "Status", "Address"}]``)."""
    return _dict(client.request("GET", _path(ENDPOINTS, name)))


def list_endpoints(client: TrainforgeClient, *, status: str | None = None) -> list[dict[str, Any]]:
    """``GET /v1/endpoints``: ``{"Endpoints": [{"EndpointName", "EndpointArn", "EndpointStatus", "CreationTime",
    "LastModifiedTime"}, ...]}``, newest first; ``status`` keeps one ``EndpointStatus``."""
    params = {"StatusEquals": status} if status else None
    endpoints: list[dict[str, Any]] = client.request("GET", ENDPOINTS, params=params).get("Endpoints", [])
    return endpoints


def delete_endpoint(client: TrainforgeClient, name: str) -> None:
    """``DELETE /v1/endpoints/{name}``: the endpoint goes ``Deleting``; its instances are stopped, then its record
    is removed (its logs and metrics are kept)."""
    client.request("DELETE", _path(ENDPOINTS, name))


def invoke_endpoint(
    client: TrainforgeClient,
    name: str,
    body: bytes,
    *,
    content_type: str | None = None,
    accept: str | None = None,
    custom_attributes: str | None = None,
) -> tuple[bytes, str, str]:
    """``POST /v1/endpoints/{name}/invocations`` with the raw ``body``: the model's answer as ``(body,
    content_type, invoked_variant)``.

    Raises:
        ModelError: The model answered with an error (its status code and message in the error's ``details``).
        NotFoundError: No endpoint has this name (or it was deleted).
        ValidationError: The endpoint is not InService, or the payload is over the limit (6 MB).
    """
    headers: dict[str, str] = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    if custom_attributes:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
    response = client.request_raw(
        "POST", _path(ENDPOINTS, name, "/invocations"), content=body, headers=headers, timeout=INVOKE_TIMEOUT_S
    )
    return (
        response.content,
        response.headers.get("Content-Type", ""),
        response.headers.get("X-Amzn-Invoked-Production-Variant", ""),
    )


def endpoint_logs(
    client: TrainforgeClient, name: str, *, cursor: int = 0, limit: int = 1000, host: str | None = None
) -> dict[str, Any]:
    """``GET /v1/endpoints/{name}/logs``: ``{"events": [{"cursor", "host", "seq", "timestamp", "stream",
    "message"}], "next_cursor"}``, oldest first (kept after the endpoint is deleted)."""
    params: dict[str, Any] = {"cursor": cursor, "limit": limit}
    if host:
        params["host"] = host
    return _dict(client.request("GET", _path(ENDPOINTS, name, "/logs"), params=params))


def endpoint_metrics(client: TrainforgeClient, name: str) -> dict[str, Any]:
    """``GET /v1/endpoints/{name}/metrics``: ``{"points": [{"name", "value", "timestamp"}]}`` for
    ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors``, ``ModelLatency`` (microseconds, as
    CloudWatch) and ``OverheadLatency``, one point per invocation-minute, plus ``totals``."""
    return _dict(client.request("GET", _path(ENDPOINTS, name, "/metrics")))


# -- transform jobs -----------------------------------------------------------------------------------


def create_transform_job(client: TrainforgeClient, request: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /v1/transform-jobs`` with a CreateTransformJob request; ``{"TransformJobArn"}``."""
    return _dict(client.request("POST", TRANSFORM_JOBS, json_body=dict(request)))


def describe_transform_job(client: TrainforgeClient, name: str) -> dict[str, Any]:
    """``GET /v1/transform-jobs/{name}``: DescribeTransformJob (``TransformJobStatus`` =
    ``InProgress|Completed|Failed|Stopping|Stopped``, ``FailureReason``, ``ModelName``, ``TransformInput``,
    ``TransformOutput``, ``TransformResources``, ``CreationTime``, ``TransformStartTime``, ``TransformEndTime``,
    ...), plus trainforge's ``TrainingJobName``."""
    return _dict(client.request("GET", _path(TRANSFORM_JOBS, name)))


def list_transform_jobs(client: TrainforgeClient, *, status: str | None = None) -> list[dict[str, Any]]:
    """``GET /v1/transform-jobs``: ``{"TransformJobSummaries": [{"TransformJobName", "TransformJobArn",
    "TransformJobStatus", "CreationTime", "TransformEndTime", "FailureReason"}]}``, newest first."""
    params = {"StatusEquals": status} if status else None
    jobs: list[dict[str, Any]] = client.request("GET", TRANSFORM_JOBS, params=params).get("TransformJobSummaries", [])
    return jobs


def stop_transform_job(client: TrainforgeClient, name: str) -> None:
    """``POST /v1/transform-jobs/{name}/stop``: ``Stopping``, then ``Stopped``."""
    client.request("POST", _path(TRANSFORM_JOBS, name, "/stop"))


def transform_job_logs(
    client: TrainforgeClient, name: str, *, cursor: int = 0, limit: int = 1000, host: str | None = None
) -> dict[str, Any]:
    """``GET /v1/transform-jobs/{name}/logs``: as :func:`endpoint_logs`, plus ``TransformJobStatus``."""
    params: dict[str, Any] = {"cursor": cursor, "limit": limit}
    if host:
        params["host"] = host
    return _dict(client.request("GET", _path(TRANSFORM_JOBS, name, "/logs"), params=params))
