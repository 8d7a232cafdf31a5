"""What the console shows, computed from stored records: list rows, timelines, channels, artifacts, masked values.

Pure functions over :mod:`trainforge.store.records`; the only I/O is :func:`artifact_info`, which asks the
object store (local or S3) about an artifact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from trainforge.errors import NotFoundError, StorageError, ValidationError
from trainforge.service.masking import looks_secret as looks_secret
from trainforge.service.masking import mask_record, masked
from trainforge.spec.contract import MODEL_ARCHIVE, OUTPUT_ARCHIVE, SOURCE_ARCHIVE, model_artifacts_uri
from trainforge.storage import ObjectInfo, ObjectStore, check_key, parse_s3_uri
from trainforge.store.records import JobRecord, MetricRecord

ARTIFACT_FILES = {"model": MODEL_ARCHIVE, "output": OUTPUT_ARCHIVE, "source": SOURCE_ARCHIVE}
SYSTEM_PREFIX = "system/"
MAX_CHART_POINTS = 1000


def masked_environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` (or hyperparameters) with the value of every secret-looking key replaced by ``****``."""
    return masked(env)


def masked_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A DescribeTrainingJob dict that is safe to show: ``Environment`` and ``HyperParameters`` secrets masked."""
    return mask_record(record)


def fmt_duration(seconds: float | None) -> str:
    """``12s``, ``3m 05s``, ``2h 04m``, ``1d 3h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def fmt_time(epoch: float | None) -> str:
    """``YYYY-MM-DD HH:MM:SS UTC`` (the page's script shows it in the browser's time zone)."""
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def fmt_value(value: float) -> str:
    """A metric value with six significant digits."""
    return f"{value:.6g}"


def duration_s(job: JobRecord, now: float) -> float:
    """Seconds from creation to the end (or to ``now`` while the job is not finished)."""
    end = (job.training_end_time or job.last_modified_time) if job.terminal else now
    return max(0.0, end - job.creation_time)


def job_row(job: JobRecord, metrics: Sequence[tuple[str, float]], now: float) -> dict[str, Any]:
    """One row of the jobs list, JSON-ready (the page renders it and its script re-renders it live)."""
    seconds = duration_s(job, now)
    return {
        "name": job.name,
        "status": job.status.value,
        "secondary": job.secondary_status.value,
        "message": job.status_message or "",
        "instance_type": job.instance_type,
        "instance_count": job.instance_count,
        "created": job.creation_time,
        "created_text": fmt_time(job.creation_time),
        "duration": fmt_duration(seconds),
        "active": not job.terminal,
        "metrics": [[name, fmt_value(value)] for name, value in metrics],
    }


def timeline(job: JobRecord, now: float) -> list[dict[str, Any]]:
    """``SecondaryStatusTransitions`` with durations and their place on a 0-100 bar (for a Gantt-like strip)."""
    if not job.transitions:
        return []
    t0 = job.transitions[0].start_time
    t_end = max(now if not job.terminal else (job.training_end_time or job.last_modified_time), t0)
    span = max(t_end - t0, 1e-9)
    steps = []
    for i, t in enumerate(job.transitions):
        current = i == len(job.transitions) - 1 and not job.terminal
        end = t.end_time if t.end_time is not None else (now if current else t.start_time)
        seconds = max(0.0, end - t.start_time)
        offset = (t.start_time - t0) / span * 100
        steps.append(
            {
                "status": t.status,
                "start": t.start_time,
                "start_text": fmt_time(t.start_time),
                "duration": fmt_duration(seconds) + (" so far" if current else ""),
                "message": t.message or "",
                "current": current,
                "offset": round(min(offset, 100.0), 3),
                "width": round(max(min(seconds / span * 100, 100.0 - offset), 0.4), 3),
            }
        )
    return steps


def channels(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The input channels: name, URI, content type, mode, distribution, data type, compression."""
    default_mode = spec.get("AlgorithmSpecification", {}).get("TrainingInputMode", "File")
    out = []
    for ch in spec.get("InputDataConfig") or []:
        s3 = (ch.get("DataSource") or {}).get("S3DataSource") or {}
        out.append(
            {
                "name": str(ch.get("ChannelName", "")),
                "uri": str(s3.get("S3Uri", "")),
                "content_type": str(ch.get("ContentType") or "—"),
                "mode": str(ch.get("InputMode") or f"{default_mode} (job default)"),
                "distribution": str(s3.get("S3DataDistributionType", "FullyReplicated")),
                "data_type": str(s3.get("S3DataType", "S3Prefix")),
                "compression": str(ch.get("CompressionType") or "None"),
            }
        )
    return out


def _decoded(value: str) -> str:
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def artifact_uri(job: JobRecord, kind: str) -> str | None:
    """Where artifact ``kind`` (``model``, ``output``, ``source``) of ``job`` lives, if the job has one.

    Only these three URIs are ever served: the job's model and output archives under its output path, and the
    ``sourcedir.tar.gz`` its ``sagemaker_submit_directory`` hyperparameter names.
    """
    spec = job.spec
    if kind == "model":
        return job.model_artifacts
    if kind == "output":
        return model_artifacts_uri(spec["OutputDataConfig"]["S3OutputPath"], job.name, OUTPUT_ARCHIVE)
    if kind == "source":
        raw = (spec.get("HyperParameters") or {}).get("sagemaker_submit_directory")
        uri = _decoded(raw) if raw else None
        return uri if uri and uri.endswith("/" + SOURCE_ARCHIVE) else None
    return None


def artifact_info(objects: ObjectStore, uri: str) -> ObjectInfo | None:
    """The stored object at ``uri`` (size, time), or ``None`` when ``uri`` is not an ``s3://`` URI of an object
    or nothing is stored there (a missing bucket, or a store that cannot be read now, counts as nothing)."""
    try:
        parsed = parse_s3_uri(uri)
        check_key(parsed.key)
        if not parsed.key or parsed.key.endswith("/") or parsed.bucket in (".", ".."):
            return None
        return objects.info(uri)
    except (ValidationError, NotFoundError, StorageError):
        return None


def artifacts(job: JobRecord, objects: ObjectStore) -> list[dict[str, Any]]:
    """The job's archives: file name, URI, size in bytes (``None`` when not there) for each kind it has."""
    out = []
    for kind, file in ARTIFACT_FILES.items():
        uri = artifact_uri(job, kind)
        if uri is None:
            continue
        info = artifact_info(objects, uri)
        out.append({"kind": kind, "file": file, "uri": uri, "size": info.size if info else None})
    return out


def fmt_size(size: int | None) -> str:
    """``1.2 MB``-style sizes; ``not available`` for ``None``."""
    if size is None:
        return "not available"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def metric_series(points: Sequence[MetricRecord], start: float) -> dict[str, dict[str, list[list[float]]]]:
    """Points grouped as ``{metric: {host: [[seconds since start, value], ...]}}``, time-ordered.

    A series longer than :data:`MAX_CHART_POINTS` is thinned evenly, always keeping its last point.
    """
    grouped: dict[str, dict[str, list[list[float]]]] = {}
    for p in points:
        grouped.setdefault(p.name, {}).setdefault(p.host, []).append([round(p.timestamp - start, 3), p.value])
    for hosts in grouped.values():
        for host, series in hosts.items():
            series.sort(key=lambda xy: xy[0])
            if len(series) > MAX_CHART_POINTS:
                step = len(series) / MAX_CHART_POINTS
                thinned = [series[int(i * step)] for i in range(MAX_CHART_POINTS - 1)]
                hosts[host] = [*thinned, series[-1]]
    return grouped


def split_metric_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Metric names split into (training metrics, ``system/...`` metrics), each sorted."""
    names = sorted(set(names))
    return [n for n in names if not n.startswith(SYSTEM_PREFIX)], [n for n in names if n.startswith(SYSTEM_PREFIX)]


def lineage_view(lineage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The job page's lineage section: environment (with its distributions sorted by name), container, code, each
    channel's objects with their count and bytes, the model's content hash, hosts that ran another environment.
    None when the job recorded no lineage."""
    if not lineage:
        return None
    env = lineage.get("Environment") or None
    data = lineage.get("Data") or {}
    channels = [
        {
            "name": name,
            "objects": objects,
            "count": len(objects),
            "bytes": sum(int(o.get("Size") or 0) for o in objects),
        }
        for name, objects in sorted(data.items())
    ]
    return {
        "environment": env,
        "distributions": sorted((env or {}).get("Distributions", {}).items()),
        "container": lineage.get("Container") or None,
        "code": lineage.get("Code") or None,
        "channels": channels,
        "model_sha": (lineage.get("Output") or {}).get("ModelContentSha256"),
        "hosts": lineage.get("Hosts") or [],
    }
