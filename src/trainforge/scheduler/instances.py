"""The instance-type catalogue: ``ml.*`` names -> vCPUs, memory and GPUs, and how they fit this machine."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from trainforge.errors import CapacityError, ValidationError


@dataclass(frozen=True)
class InstanceType:
    """Resources of one instance type."""

    name: str
    vcpus: int
    memory_gib: float
    gpus: int = 0
    gpu_model: str | None = None


def _family(
    prefix: str,
    sizes: dict[str, tuple[int, float]],
    gpus: dict[str, int] | None = None,
    gpu_model: str | None = None,
) -> dict[str, InstanceType]:
    out = {}
    for size, (vcpus, mem) in sizes.items():
        name = f"{prefix}.{size}"
        out[name] = InstanceType(name, vcpus, mem, (gpus or {}).get(size, 0), gpu_model if gpus else None)
    return out


_GENERAL = {
    "large": (2, 8.0),
    "xlarge": (4, 16.0),
    "2xlarge": (8, 32.0),
    "4xlarge": (16, 64.0),
    "12xlarge": (48, 192.0),
    "24xlarge": (96, 384.0),
}
_COMPUTE = {
    "large": (2, 4.0),
    "xlarge": (4, 8.0),
    "2xlarge": (8, 16.0),
    "4xlarge": (16, 32.0),
    "9xlarge": (36, 72.0),
    "18xlarge": (72, 144.0),
}
_MEMORY = {
    "large": (2, 16.0),
    "xlarge": (4, 32.0),
    "2xlarge": (8, 64.0),
    "4xlarge": (16, 128.0),
    "12xlarge": (48, 384.0),
    "24xlarge": (96, 768.0),
}

CATALOGUE: dict[str, InstanceType] = {
    **_family("ml.t3", {"medium": (2, 4.0), "large": (2, 8.0), "xlarge": (4, 16.0), "2xlarge": (8, 32.0)}),
    **_family("ml.m5", _GENERAL),
    **_family(
        "ml.m4",
        {
            "xlarge": (4, 16.0),
            "2xlarge": (8, 32.0),
            "4xlarge": (16, 64.0),
            "10xlarge": (40, 160.0),
            "16xlarge": (64, 256.0),
        },
    ),
    **_family("ml.c5", _COMPUTE),
    **_family("ml.c4", {"xlarge": (4, 7.5), "2xlarge": (8, 15.0), "4xlarge": (16, 30.0), "8xlarge": (36, 60.0)}),
    **_family("ml.r5", _MEMORY),
    **_family(
        "ml.g4dn",
        {
            "xlarge": (4, 16.0),
            "2xlarge": (8, 32.0),
            "4xlarge": (16, 64.0),
            "8xlarge": (32, 128.0),
            "12xlarge": (48, 192.0),
            "16xlarge": (64, 256.0),
        },
        {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 4, "16xlarge": 1},
        "T4",
    ),
    **_family(
        "ml.g5",
        {
            "xlarge": (4, 16.0),
            "2xlarge": (8, 32.0),
            "4xlarge": (16, 64.0),
            "8xlarge": (32, 128.0),
            "12xlarge": (48, 192.0),
            "16xlarge": (64, 256.0),
            "24xlarge": (96, 384.0),
            "48xlarge": (192, 768.0),
        },
        {
            "xlarge": 1,
            "2xlarge": 1,
            "4xlarge": 1,
            "8xlarge": 1,
            "12xlarge": 4,
            "16xlarge": 1,
            "24xlarge": 4,
            "48xlarge": 8,
        },
        "A10G",
    ),
    **_family(
        "ml.p3",
        {"2xlarge": (8, 61.0), "8xlarge": (32, 244.0), "16xlarge": (64, 488.0)},
        {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8},
        "V100",
    ),
}


@dataclass(frozen=True)
class Machine:
    """What this node has."""

    cpus: int
    memory_gib: float
    gpus: int


@cache
def detect_gpus() -> int:
    """Number of NVIDIA GPUs ``nvidia-smi --list-gpus`` reports (0 without a driver)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return 0
    try:
        out = subprocess.run([exe, "--list-gpus"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def this_machine(*, cpus: int | None = None, gpus: int | None = None, memory_gib: float | None = None) -> Machine:
    """This node's resources; ``cpus``/``gpus``/``memory_gib`` override detection (settings ``local_cpus``,
    ``local_gpus``, ``local_memory_gib``)."""
    mem = memory_gib or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Machine(
        cpus=cpus or os.cpu_count() or 1,
        memory_gib=round(mem, 3),
        gpus=detect_gpus() if gpus is None else gpus,
    )


def lookup(name: str, machine: Machine, *, field: str = "ResourceConfig.InstanceType") -> InstanceType:
    """The catalogue entry for ``name`` (``local`` = this machine); unknown names list close matches."""
    if name in ("local", "local_gpu"):
        return InstanceType(name, machine.cpus, machine.memory_gib, machine.gpus if name == "local_gpu" else 0)
    found = CATALOGUE.get(name)
    if found is None:
        close = difflib.get_close_matches(name, [*CATALOGUE, "local"], n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValidationError(
            f"{field}: unknown instance type {name!r}.{hint} Known families: ml.t3, ml.m5, ml.m4, ml.c5, ml.c4, "
            "ml.r5, ml.g4dn, ml.g5, ml.p3, and 'local' (this machine).",
            field=field,
            details={"suggestions": close},
        )
    return found


@dataclass(frozen=True)
class Placement:
    """How a job's instance type maps onto this machine."""

    instance: InstanceType
    effective_vcpus: int
    notice: str | None


def place(instance: InstanceType, machine: Machine) -> Placement:
    """Fit an instance type to this machine: GPU types need GPUs; bigger CPU types run capped, with a notice.

    Raises :class:`CapacityError` when the type can never run here (more GPUs than the machine has).
    """
    if instance.gpus > machine.gpus:
        raise CapacityError(
            f"ResourceConfig.InstanceType: {instance.name} needs {instance.gpus} GPU(s) "
            f"({instance.gpu_model or 'NVIDIA'}) but this machine has {machine.gpus}. Use a CPU type such as "
            "ml.m5.large, or run the server on a machine with GPUs.",
            details={"field": "ResourceConfig.InstanceType"},
        )
    notices = []
    if instance.vcpus > machine.cpus:
        notices.append(f"{instance.vcpus} vCPUs")
    if instance.memory_gib > machine.memory_gib:
        notices.append(f"{instance.memory_gib:g} GiB of memory")
    notice = None
    if notices:
        notice = (
            f"[trainforge] {instance.name} has {' and '.join(notices)}; this machine has {machine.cpus} CPUs and "
            f"{machine.memory_gib:g} GiB: the job runs capped to this machine."
        )
    return Placement(instance, min(instance.vcpus, machine.cpus), notice)


def memory_limit_gib(instance: InstanceType, machine: Machine) -> float:
    """The memory one host of ``instance`` may use here: the type's, capped to the machine's."""
    return min(instance.memory_gib, machine.memory_gib)
