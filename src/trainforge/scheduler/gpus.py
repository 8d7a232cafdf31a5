"""Which of this machine's GPUs a job gets.

A job needs, on each of its hosts, the GPUs of its instance type (``ml.g5.xlarge``: 1; ``local_gpu``: all of
the machine's; a multi-host job on the local backend needs that many for each host, each host its own). A GPU
image (``trainforge/pytorch:<v>-gpu``) on an instance type without GPUs gets one GPU when the machine has any.
Everything else needs none and gets no ``CUDA_VISIBLE_DEVICES`` at all (it is left unset, as on a CPU
instance). The scheduler hands each launched job specific GPU indices, lowest free first; the backend records
them in the job's handle, and a job holds them until it is no longer active.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trainforge.errors import ValidationError
from trainforge.scheduler.instances import Machine, Placement
from trainforge.spec.images import resolve_image


def image_accelerator(spec: Mapping[str, Any]) -> str:
    """``"gpu"`` or ``"cpu"``: the accelerator of the job's ``TrainingImage`` (``"cpu"`` when unknown)."""
    uri = (spec.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if not isinstance(uri, str) or not uri:
        return "cpu"
    try:
        return resolve_image(uri).accelerator
    except ValidationError:
        return "cpu"


def gpus_needed(placement: Placement, accelerator: str, machine: Machine) -> int:
    """How many GPUs one host of a job needs on ``machine`` (0: none, ``CUDA_VISIBLE_DEVICES`` stays unset)."""
    if placement.instance.gpus == 0 and accelerator == "gpu" and machine.gpus > 0:
        return 1
    return placement.instance.gpus


def held_gpus(handle: Mapping[str, Any] | None) -> set[int]:
    """The GPU indices a launched job's backend handle records."""
    ids = (handle or {}).get("gpu_ids") or []
    return {int(i) for i in ids}


def allocate(machine: Machine, held: Iterable[int], need: int) -> tuple[int, ...] | None:
    """The ``need`` lowest free GPU indices of ``machine``, or None when fewer are free."""
    free = sorted(set(range(machine.gpus)) - set(held))
    if len(free) < need:
        return None
    return tuple(free[:need])
