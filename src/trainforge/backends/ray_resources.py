"""How a job's hosts map to Ray resources, and whether a cluster could ever (or can now) hold them.

Pure functions over Ray's resource dicts (``{"CPU": 8.0, "GPU": 1.0, ...}``): no Ray import, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from trainforge.errors import ValidationError
from trainforge.scheduler.instances import InstanceType

_EPS = 1e-9


def bundle_for(instance: InstanceType) -> dict[str, float]:
    """The Ray resources one host of ``instance`` reserves: its vCPUs as ``CPU`` and its GPUs as ``GPU`` (memory
    is not reserved: a node's memory is shared, as on the local backend)."""
    bundle: dict[str, float] = {"CPU": float(max(1, instance.vcpus))}
    if instance.gpus:
        bundle["GPU"] = float(instance.gpus)
    return bundle


def bundles_fitting(resources: Mapping[str, float], bundle: Mapping[str, float]) -> int:
    """How many ``bundle``s a node with ``resources`` can hold at once."""
    return min(math.floor(float(resources.get(key, 0.0)) / need + _EPS) for key, need in bundle.items())


def fmt_resources(resources: Mapping[str, float]) -> str:
    """``CPU 2, GPU 1``: resources as a human reads them."""
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()))


def refuse_never_fitting(
    nodes: Sequence[Mapping[str, float]], instance: InstanceType, count: int, placement: str, *, where: str
) -> None:
    """Raise ``ValidationError`` when ``count`` hosts of ``instance`` could never be placed on ``nodes`` (each
    node's total resources) with the placement-group strategy ``placement``, however long the job waited.

    A host must fit one node; with ``STRICT_SPREAD`` each host needs a node of its own, with ``STRICT_PACK`` all
    hosts one node, with ``PACK``/``SPREAD`` hosts share nodes as their resources allow. The error names
    ``ResourceConfig.InstanceType`` (no node can hold one host, or GPUs are missing) or
    ``ResourceConfig.InstanceCount`` (too many hosts), says what the cluster has and how to fix it; ``where``
    names the cluster.
    """
    bundle = bundle_for(instance)
    if instance.gpus and not any(float(res.get("GPU", 0.0)) > 0 for res in nodes):
        raise ValidationError(
            f"ResourceConfig.InstanceType: {instance.name} needs {instance.gpus} GPU(s) but {where} has no GPUs. "
            "Use a CPU type such as ml.m5.large, or add GPU nodes to the cluster.",
            field="ResourceConfig.InstanceType",
        )
    per_node = [bundles_fitting(res, bundle) for res in nodes]
    if max(per_node, default=0) == 0:
        largest = max(nodes, key=lambda r: float(r.get("CPU", 0.0)), default={})
        shown = {k: float(largest.get(k, 0.0)) for k in bundle}
        raise ValidationError(
            f"ResourceConfig.InstanceType: a host of {instance.name} needs {fmt_resources(bundle)} but no node of "
            f"{where} has that much (largest: {fmt_resources(shown)}). Use a smaller instance type.",
            field="ResourceConfig.InstanceType",
        )
    if placement == "STRICT_SPREAD":
        capacity = sum(1 for n in per_node if n > 0)
        rule = (
            f"each host needs its own node (TRAINFORGE_RAY_PLACEMENT=STRICT_SPREAD) and {where} has {capacity} "
            f"node(s) with {fmt_resources(bundle)}; set TRAINFORGE_RAY_PLACEMENT=PACK to let a node hold several "
            "hosts"
        )
    elif placement == "STRICT_PACK":
        capacity = max(per_node)
        rule = f"all hosts must share one node (STRICT_PACK) and the largest node of {where} holds {capacity}"
    else:
        capacity = sum(per_node)
        total = {k: sum(float(r.get(k, 0.0)) for r in nodes) for k in bundle}
        rule = f"{where} has {fmt_resources(total)} in all, room for {capacity} such host(s)"
    if count > capacity:
        raise ValidationError(
            f"ResourceConfig.InstanceCount: {count} x {instance.name} ({fmt_resources(bundle)} each) can never run: "
            f"{rule}. Use InstanceCount <= {capacity} or add nodes.",
            field="ResourceConfig.InstanceCount",
        )


def shortfall(
    free: Mapping[str, float], total: Mapping[str, float], bundle: Mapping[str, float], count: int
) -> str | None:
    """Why ``count`` bundles cannot fit in the cluster's ``free`` resources now (``CPU 2 needed, 0 of 8 free``),
    or None when the totals allow it (the placement group then says whether the nodes do)."""
    short = [
        f"{key} {need * count:g} needed, {float(free.get(key, 0.0)):g} of {float(total.get(key, 0.0)):g} free"
        for key, need in bundle.items()
        if float(free.get(key, 0.0)) + _EPS < need * count
    ]
    return "; ".join(short) or None
