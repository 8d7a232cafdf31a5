"""Everything a job page and the compare page show, gathered from the store in one place."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from trainforge.errors import NotFoundError
from trainforge.server.console import views
from trainforge.service.describe import describe
from trainforge.service.principal import Principal, may_see
from trainforge.spec.contract import host_name
from trainforge.spec.lineage import job_lineage
from trainforge.storage import ObjectStore
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

MAX_COMPARE = 8


def _hosts(job: JobRecord, store: JobStore) -> list[str]:
    """The job's hosts: ``algo-1..N`` for its instance count, plus any other host that sent lines."""
    names = {host_name(i) for i in range(max(1, job.instance_count))}
    names.update(store.log_hosts(job.id))
    return sorted(names, key=lambda h: (len(h), h))


def status_json(job: JobRecord, now: float) -> dict[str, Any]:
    """The live part of a job page: status, message, failure reason and the timeline."""
    return {
        "name": job.name,
        "status": job.status.value,
        "secondary": job.secondary_status.value,
        "message": job.status_message or "",
        "failure_reason": job.failure_reason or "",
        "terminal": job.terminal,
        "duration": views.fmt_duration(views.duration_s(job, now)),
        "timeline": views.timeline(job, now),
    }


def job_page(store: JobStore, objects: ObjectStore, job: JobRecord, now: float) -> dict[str, Any]:
    """The context of ``job.html``: the DescribeTrainingJob record (secrets masked) and what is derived from it."""
    points = store.read_metrics(job.id)
    lineage = job_lineage(store.host_lineages(job.id))
    record = describe(job, points, lineage=lineage)  # secrets masked
    metric_names, system_names = views.split_metric_names([p.name for p in points])
    spec = job.spec
    env = spec.get("Environment") or {}
    hosts = _hosts(job, store)
    return {
        "job": job,
        "d": record,
        "live": status_json(job, now),
        "spec": spec,
        "image": spec.get("AlgorithmSpecification", {}).get("TrainingImage")
        or spec.get("AlgorithmSpecification", {}).get("AlgorithmName", ""),
        "channels": views.channels(spec),
        "lineage": views.lineage_view(lineage),
        "environment": [(k, v, views.looks_secret(k)) for k, v in views.masked_environment(env).items()],
        "owner": record["CreatedBy"]["UserProfileName"],
        "artifacts": views.artifacts(job, objects),
        "final_metrics": [m for m in record["FinalMetricDataList"] if not m["MetricName"].startswith("system/")],
        "metric_names": metric_names,
        "system_names": system_names,
        "hosts": hosts,
        "attempts": list(range(1, job.attempt + 1)),  # a job retried after a lost host ran more than once
        "raw": json.dumps(record, indent=2, sort_keys=True, default=str),
        "page_data": {
            "name": job.name,
            "terminal": job.terminal,
            "hosts": hosts,
            "multi_host": len(hosts) > 1,
            "attempts": job.attempt,
            "metric_names": metric_names,
            "system_names": system_names,
        },
    }


def compare_page(store: JobStore, names: Sequence[str], *, viewer: Principal) -> dict[str, Any]:
    """Hyperparameters (secrets masked) and final metrics of up to :data:`MAX_COMPARE` jobs side by side.

    Rows whose values differ between the jobs are marked ``differs``; unknown names, and jobs ``viewer`` may not
    see, are listed in ``missing``.
    """
    found: list[JobRecord] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        if len(found) >= MAX_COMPARE:
            break
        try:
            job = store.get(name)
        except NotFoundError:
            missing.append(name)
            continue
        if may_see(viewer, job):
            found.append(job)
        else:
            missing.append(name)
    hp_rows: dict[str, list[str | None]] = {}
    metric_rows: dict[str, list[str | None]] = {}
    all_names: set[str] = set()
    for i, job in enumerate(found):
        for key, value in sorted(views.masked_environment(job.spec.get("HyperParameters")).items()):
            hp_rows.setdefault(key, [None] * len(found))[i] = value
        points = store.read_metrics(job.id)
        all_names.update(p.name for p in points)
        record = describe(job, points)
        for m in record["FinalMetricDataList"]:
            metric_rows.setdefault(m["MetricName"], [None] * len(found))[i] = views.fmt_value(m["Value"])

    def rows(table: dict[str, list[str | None]]) -> list[dict[str, Any]]:
        return [
            {"key": key, "values": values, "differs": len(set(values)) > 1} for key, values in sorted(table.items())
        ]

    metric_names, system_names = views.split_metric_names(list(all_names))
    return {
        "jobs": found,
        "missing": missing,
        "hyperparameters": rows(hp_rows),
        "metrics": rows(metric_rows),
        "metric_names": metric_names + system_names,
        "page_data": {"jobs": [j.name for j in found], "metrics": metric_names + system_names},
    }
