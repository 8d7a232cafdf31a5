"""Reading a job's metric points: the use case behind ``GET /v1/training-jobs/{name}/metrics``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainforge.errors import ValidationError
from trainforge.service.principal import Principal, may_see
from trainforge.spec.metrics import metric_value
from trainforge.store.jobs import JobStore, job_not_found

MAX_NAMES = 100


def job_metrics(
    store: JobStore,
    name: str,
    principal: Principal,
    *,
    names: Sequence[str] | None = None,
    host: str | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
) -> dict[str, Any]:
    """``{"points": [{"name", "value", "timestamp", "host"}, ...]}`` of the job called ``name``.

    Points are ordered by metric name, then time. ``names`` keeps those metrics (all, system metrics included,
    when empty), ``host`` one host's points, ``start_time``/``end_time`` (epoch seconds, inclusive) an
    interval. Raises :class:`~trainforge.errors.NotFoundError` for an unknown job or one ``principal`` may not see
    (the same error), and :class:`~trainforge.errors.ValidationError` for bad filters.
    """
    if names is not None and len(names) > MAX_NAMES:
        raise ValidationError(f"names: at most {MAX_NAMES} metric names per request", field="names")
    for key, value in (("start_time", start_time), ("end_time", end_time)):
        if value is not None and metric_value(value) is None:
            raise ValidationError(f"{key}: must be a finite number of epoch seconds", field=key)
    if start_time is not None and end_time is not None and end_time < start_time:
        raise ValidationError("end_time: must not be before start_time", field="end_time")
    job = store.get(name)
    if not may_see(principal, job):
        raise job_not_found(name)
    points = store.read_metrics(job.id, list(names or []), host=host, start_time=start_time, end_time=end_time)
    return {"points": [{"name": p.name, "value": p.value, "timestamp": p.timestamp, "host": p.host} for p in points]}
