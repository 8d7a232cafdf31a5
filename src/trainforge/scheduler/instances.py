"""The instance-type catalogue: ``ml.*`` names -> vCPUs, memory and GPUs, and how they fit this machine.

SageMaker keeps two lists: the types ``CreateTrainingJob`` accepts (``ResourceConfig.InstanceType``) and the types
an endpoint's production variant accepts (``ProductionVariant.InstanceType``). They overlap but differ: ``ml.t2.*``,
``ml.m5d.*``, ``ml.c5d.*``, ``ml.inf1.*``, ``ml.c5.large`` and ``ml.c4.large`` host endpoints but never train, so
a training job on one of them is a ValidationError here as there (:func:`lookup`). Endpoints and transform jobs
accept both lists (:func:`hosting_instance_type`), as public notebooks deploy on either kind. Resources are AWS's
published EC2 figures for the same instance; Inferentia chips (``ml.inf1.*``) are not emulated: a model served
there runs on the CPUs.
"""

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


def _only(family: dict[str, InstanceType], *sizes: str) -> dict[str, InstanceType]:
    prefix = next(iter(family)).rsplit(".", 1)[0]
    return {f"{prefix}.{s}": family[f"{prefix}.{s}"] for s in sizes}


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
    "8xlarge": (32, 256.0),
    "12xlarge": (48, 384.0),
    "16xlarge": (64, 512.0),
    "24xlarge": (96, 768.0),
}
_GEN6 = {
    "large": (2, 1.0),
    "xlarge": (4, 2.0),
    "2xlarge": (8, 4.0),
    "4xlarge": (16, 8.0),
    "8xlarge": (32, 16.0),
    "12xlarge": (48, 24.0),
    "16xlarge": (64, 32.0),
    "24xlarge": (96, 48.0),
    "32xlarge": (128, 64.0),
}


def _scaled(sizes: dict[str, tuple[int, float]], gib_per_unit: float) -> dict[str, tuple[int, float]]:
    return {size: (vcpus, units * gib_per_unit) for size, (vcpus, units) in sizes.items()}


_T2 = _family("ml.t2", {"medium": (2, 4.0), "large": (2, 8.0), "xlarge": (4, 16.0), "2xlarge": (8, 32.0)})
_T3 = _family("ml.t3", {"medium": (2, 4.0), "large": (2, 8.0), "xlarge": (4, 16.0), "2xlarge": (8, 32.0)})
_M4 = _family(
    "ml.m4",
    {
        "xlarge": (4, 16.0),
        "2xlarge": (8, 32.0),
        "4xlarge": (16, 64.0),
        "10xlarge": (40, 160.0),
        "16xlarge": (64, 256.0),
    },
)
_M5 = _family("ml.m5", _GENERAL)
_M5D = _family("ml.m5d", _GENERAL)
_M6I = _family("ml.m6i", _scaled(_GEN6, 8.0))
_C4 = _family(
    "ml.c4",
    {"large": (2, 3.75), "xlarge": (4, 7.5), "2xlarge": (8, 15.0), "4xlarge": (16, 30.0), "8xlarge": (36, 60.0)},
)
_C5 = _family("ml.c5", _COMPUTE)
_C5D = _family("ml.c5d", _COMPUTE)
_C5N = _family(
    "ml.c5n",
    {"xlarge": (4, 10.5), "2xlarge": (8, 21.0), "4xlarge": (16, 42.0), "9xlarge": (36, 96.0), "18xlarge": (72, 192.0)},
)
_C6I = _family("ml.c6i", {k: v for k, v in _scaled(_GEN6, 4.0).items() if k != "large"})
_R5 = _family("ml.r5", _MEMORY)
_R5D = _family("ml.r5d", _MEMORY)
_P2 = _family(
    "ml.p2",
    {"xlarge": (4, 61.0), "8xlarge": (32, 488.0), "16xlarge": (64, 732.0)},
    {"xlarge": 1, "8xlarge": 8, "16xlarge": 16},
    "K80",
)
_P3 = _family(
    "ml.p3",
    {"2xlarge": (8, 61.0), "8xlarge": (32, 244.0), "16xlarge": (64, 488.0)},
    {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8},
    "V100",
)
_P3DN = _family("ml.p3dn", {"24xlarge": (96, 768.0)}, {"24xlarge": 8}, "V100")
_P4D = _family("ml.p4d", {"24xlarge": (96, 1152.0)}, {"24xlarge": 8}, "A100")
_P5 = _family("ml.p5", {"48xlarge": (192, 2048.0)}, {"48xlarge": 8}, "H100")
_G4DN = _family(
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
)
_G5 = _family(
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
    {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 4, "16xlarge": 1, "24xlarge": 4, "48xlarge": 8},
    "A10G",
)
_INF1 = _family("ml.inf1", {"xlarge": (4, 8.0), "2xlarge": (8, 16.0), "6xlarge": (24, 48.0), "24xlarge": (96, 192.0)})

TRAINING: dict[str, InstanceType] = {
    **_T3,
    **_M4,
    **_M5,
    **_M6I,
    **_only(_C4, "xlarge", "2xlarge", "4xlarge", "8xlarge"),
    **_only(_C5, "xlarge", "2xlarge", "4xlarge", "9xlarge", "18xlarge"),
    **_C5N,
    **_C6I,
    **_R5,
    **_R5D,
    **_P2,
    **_P3,
    **_P3DN,
    **_P4D,
    **_P5,
    **_G4DN,
    **_G5,
}
"""SageMaker's training instance types (``CreateTrainingJob``'s ``ResourceConfig.InstanceType``) kept here."""

HOSTING: dict[str, InstanceType] = {
    **_T2,
    **_M4,
    **_M5,
    **_M5D,
    **_C4,
    **_C5,
    **_C5D,
    **_R5,
    **_R5D,
    **_P2,
    **_P3,
    **_P4D,
    **_G4DN,
    **_G5,
    **_INF1,
}
"""SageMaker's hosting instance types (``ProductionVariant.InstanceType``) kept here."""

CATALOGUE: dict[str, InstanceType] = {**TRAINING, **HOSTING}
"""Every known type, training or hosting: what the scheduler and backends size a launch by."""

HOSTING_ONLY = frozenset(HOSTING) - frozenset(TRAINING)
"""Types an endpoint may use that a training job may not (as on SageMaker)."""

_TRAINING_EXAMPLES = "ml.m5.large, ml.m5.xlarge, ml.c5.xlarge, ml.g4dn.xlarge"
_HOSTING_EXAMPLES = "ml.t2.medium, ml.m5.large, ml.m4.xlarge, ml.c5.large, ml.g4dn.xlarge"


def _families(names: dict[str, InstanceType]) -> str:
    return ", ".join(dict.fromkeys(name.rsplit(".", 1)[0] for name in names))


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


def _local(name: str, machine: Machine) -> InstanceType:
    return InstanceType(name, machine.cpus, machine.memory_gib, machine.gpus if name == "local_gpu" else 0)


def _unknown(name: str, field: str, known: dict[str, InstanceType], examples: str) -> ValidationError:
    close = difflib.get_close_matches(name, [*known, "local"], n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValidationError(
        f"{field}: unknown instance type {name!r}.{hint} Use one such as {examples}, or 'local' (this machine); "
        f"known families: {_families(known)}.",
        field=field,
        details={"suggestions": close},
    )


def lookup(name: str, machine: Machine, *, field: str = "ResourceConfig.InstanceType") -> InstanceType:
    """The training catalogue entry for ``name`` (``local``/``local_gpu`` = this machine).

    Raises:
        ValidationError: naming ``field`` when ``name`` is unknown (listing close matches) or is a hosting-only
            type such as ``ml.t2.medium``, which SageMaker's ``CreateTrainingJob`` rejects too.
    """
    if name in ("local", "local_gpu"):
        return _local(name, machine)
    found = TRAINING.get(name)
    if found is not None:
        return found
    if name in HOSTING_ONLY:
        raise ValidationError(
            f"{field}: {name} is a hosting instance type (for endpoints and transform jobs); training jobs run on "
            f"training types such as {_TRAINING_EXAMPLES}, as on SageMaker.",
            field=field,
            details={"suggestions": _TRAINING_EXAMPLES.split(", ")},
        )
    raise _unknown(name, field, TRAINING, _TRAINING_EXAMPLES)


def hosting_instance_type(name: str, machine: Machine | None = None, *, field: str = "InstanceType") -> InstanceType:
    """The catalogue entry for an endpoint's or transform job's instance type ``name``.

    Accepts SageMaker's hosting types (``ml.t2.medium``, ``ml.c5.large``, ``ml.inf1.xlarge``, ...) and its training
    types, and ``local``/``local_gpu`` (``machine``, detected when not given).

    Raises:
        ValidationError: naming ``field`` (e.g. ``ProductionVariants[0].InstanceType``) and listing close matches
            and examples when ``name`` is not a known type.
    """
    if name in ("local", "local_gpu"):
        return _local(name, machine or this_machine())
    found = CATALOGUE.get(name)
    if found is None:
        raise _unknown(str(name), field, CATALOGUE, _HOSTING_EXAMPLES)
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
