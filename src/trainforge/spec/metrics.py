"""Metric names and the rules a metric point obeys, shared by the server, the supervisor and the SDK.

Two kinds of metric points exist for a job:

- **Training metrics**, extracted on the server from every log line of every host with the job's
  ``AlgorithmSpecification.MetricDefinitions`` (reference §4.3). Only these appear in ``FinalMetricDataList``.
- **System metrics**, sampled by each host's supervisor and named ``system/<what>`` (:data:`SYSTEM_PREFIX`).
"""

from __future__ import annotations

import math

SYSTEM_PREFIX = "system/"
"""Names of system metrics start with this; training metrics never should."""

CPU_PERCENT = "system/cpu_percent"
"""CPU used by the job's process group in the last interval, in percent of one core (400 = four busy cores)."""

MACHINE_CPU_PERCENT = "system/machine_cpu_percent"
"""CPU used by the whole machine in the last interval, in percent of all its cores (0-100)."""

MEMORY_USED_MB = "system/memory_used_mb"
"""Resident memory of the job's process group, in MiB."""

MEMORY_PERCENT = "system/memory_percent"
"""Memory in use on the whole machine, in percent (0-100)."""

DISK_PERCENT = "system/disk_percent"
"""Space used on the file system that holds the job's root (its ``/opt/ml``), in percent (0-100)."""

MAX_NAME_LENGTH = 255


def gpu_utilization(index: int) -> str:
    """``system/gpu<index>_utilization``: percent of time the job's GPU ``index`` was busy (NVML)."""
    return f"{SYSTEM_PREFIX}gpu{index}_utilization"


def gpu_memory_used_mb(index: int) -> str:
    """``system/gpu<index>_memory_used_mb``: memory used on the job's GPU ``index`` in MiB (NVML)."""
    return f"{SYSTEM_PREFIX}gpu{index}_memory_used_mb"


def is_system_metric(name: str) -> bool:
    """Whether ``name`` is a system metric (``system/...``)."""
    return name.startswith(SYSTEM_PREFIX)


def metric_value(text: object) -> float | None:
    """``text`` as a finite float, or None when it is not a number (``"abc"``, ``"0.5,"``, ``"nan"``, ``"inf"``).

    This is how a regex's first capture group becomes a metric value: anything else is skipped.
    """
    if isinstance(text, bool):
        return None
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None
