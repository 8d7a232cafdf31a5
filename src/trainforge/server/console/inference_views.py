"""What the console's endpoint and transform-job pages show, read through the inference services and stores.

A user sees their own endpoints and transform jobs (an admin everyone's), as on the jobs pages; another user's
answers like one that does not exist. Each row and page links the training job its model came from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from trainforge.service.endpoints import EndpointService
from trainforge.service.principal import Principal
from trainforge.service.transforms import TransformService
from trainforge.spec.endpoints import EndpointStatus
from trainforge.spec.transforms import TransformJobStatus
from trainforge.store.inference_logs import transform_log_owner
from trainforge.store.records import LogRecord
from trainforge.store.tables import inference_log_lines

ENDPOINT_STATUSES = [s.value for s in EndpointStatus]
TRANSFORM_STATUSES = [s.value for s in TransformJobStatus]
RECENT_LINES = 200
LIST_LIMIT = 100


def recent_lines(engine: Engine, owner: str, limit: int = RECENT_LINES) -> list[LogRecord]:
    """The last ``limit`` log lines of ``owner`` (an endpoint's life or a transform job), oldest first.

    The console's own query: :class:`~trainforge.store.inference_logs.InferenceLogStore` reads forward from a
    cursor only, and a page wants the tail without reading the whole log.
    """
    stmt = (
        select(inference_log_lines)
        .where(inference_log_lines.c.owner == owner)
        .order_by(inference_log_lines.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [LogRecord(r.id, r.host, r.seq, r.timestamp, r.stream, r.message, r.attempt) for r in reversed(rows)]


def _owner_filter(viewer: Principal) -> str | None:
    return None if viewer.admin else viewer.user


def endpoint_rows(svc: EndpointService, viewer: Principal, status: str = "") -> list[dict[str, Any]]:
    """The viewer's endpoints, newest first: name, status, instance type and count, model, training job, times."""
    records = svc.store.list_endpoints(status=status or None, created_by=_owner_filter(viewer))
    rows = []
    for e in records[:LIST_LIMIT]:
        variant = e.spec["EndpointConfig"]["ProductionVariants"][0]
        model = e.spec["Models"].get(variant["ModelName"], {})
        rows.append(
            {
                "name": e.name,
                "status": e.status.value,
                "instances": f"{variant.get('InitialInstanceCount', 1)} \u00d7 {variant.get('InstanceType')}",
                "model": variant["ModelName"],
                "training_job": model.get("TrainingJobName"),
                "created": e.creation_time,
                "modified": e.last_modified_time,
                "owner": e.created_by,
            }
        )
    return rows


def endpoint_page(svc: EndpointService, engine: Engine, name: str, viewer: Principal) -> dict[str, Any]:
    """Everything the endpoint page shows; :class:`~trainforge.errors.NotFoundError` if not the viewer's."""
    record = svc.owned(name, viewer)
    described = svc.describe(name, viewer)
    variant = record.spec["EndpointConfig"]["ProductionVariants"][0]
    model = record.spec["Models"].get(variant["ModelName"], {})
    totals = svc.metrics_of(name, viewer).get("totals") or {}
    return {
        "d": described,
        "variant": variant,
        "model": model,
        "container": model.get("PrimaryContainer") or {},
        "totals": totals,
        "lines": recent_lines(engine, record.log_owner),
        "owner": record.created_by,
    }


def transform_rows(svc: TransformService, viewer: Principal, status: str = "") -> list[dict[str, Any]]:
    """The viewer's transform jobs, newest first, with their model and its training job."""
    records = svc.store.list_jobs(
        status_equals=status or None, name_contains=None, created_by=_owner_filter(viewer), max_results=LIST_LIMIT
    )
    return [
        {
            "name": j.name,
            "status": j.status.value,
            "instances": f"{j.instance_count} \u00d7 {j.instance_type}",
            "model": j.spec.get("ModelName"),
            "training_job": j.model_spec.get("TrainingJobName"),
            "created": j.creation_time,
            "ended": j.transform_end_time,
            "failure": j.failure_reason,
            "owner": j.created_by,
        }
        for j in records
    ]


def transform_page(svc: TransformService, engine: Engine, name: str, viewer: Principal) -> dict[str, Any]:
    """Everything the transform-job page shows; :class:`~trainforge.errors.NotFoundError` if not the viewer's."""
    record = svc.owned(name, viewer)
    described = svc.describe(name, viewer)
    source = ((described.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    return {
        "d": described,
        "input_uri": source.get("S3Uri"),
        "container": record.model_spec.get("PrimaryContainer") or {},
        "lines": recent_lines(engine, transform_log_owner(name)),
        "owner": record.created_by,
    }
