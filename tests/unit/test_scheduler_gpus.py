"""GPU allocation rules: how many GPUs a job needs, which indices it gets, what a handle holds."""

from __future__ import annotations

from trainforge.scheduler.gpus import allocate, gpus_needed, held_gpus, image_accelerator
from trainforge.scheduler.instances import Machine, lookup, place

GPU_MACHINE = Machine(cpus=16, memory_gib=64.0, gpus=4)
CPU_MACHINE = Machine(cpus=16, memory_gib=64.0, gpus=0)


def spec(image: str) -> dict[str, object]:
    return {"AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"}}


def needed(instance_type: str, image: str, machine: Machine = GPU_MACHINE) -> int:
    return gpus_needed(place(lookup(instance_type, machine), machine), image_accelerator(spec(image)), machine)


def test_gpu_instance_types_need_their_gpus() -> None:
    assert needed("ml.g5.xlarge", "trainforge/python:current") == 1
    assert needed("ml.g5.12xlarge", "trainforge/pytorch:2.13-gpu") == 4
    assert needed("local_gpu", "trainforge/python:current") == 4


def test_cpu_types_need_none_unless_the_image_is_a_gpu_image() -> None:
    assert needed("ml.m5.large", "trainforge/pytorch:2.13-cpu") == 0
    assert needed("ml.m5.large", "trainforge/sklearn:1.2-1") == 0
    assert needed("ml.m5.large", "trainforge/pytorch:2.13-gpu") == 1
    assert needed("ml.m5.large", "trainforge/pytorch:2.13-gpu", CPU_MACHINE) == 0


def test_image_accelerator_of_unknown_or_missing_images_is_cpu() -> None:
    assert image_accelerator(spec("no/such:image")) == "cpu"
    assert image_accelerator({"AlgorithmSpecification": {"AlgorithmName": "xgboost"}}) == "cpu"
    gpu_ecr = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-gpu-py310"
    assert image_accelerator(spec(gpu_ecr)) == "gpu"


def test_allocation_takes_the_lowest_free_indices() -> None:
    assert allocate(GPU_MACHINE, set(), 1) == (0,)
    assert allocate(GPU_MACHINE, {0, 2}, 2) == (1, 3)
    assert allocate(GPU_MACHINE, {0, 1, 2}, 2) is None
    assert allocate(CPU_MACHINE, set(), 1) is None


def test_held_gpus_come_from_the_handle() -> None:
    assert held_gpus({"backend": "local", "hosts": [], "gpu_ids": [1, 3]}) == {1, 3}
    assert held_gpus({"backend": "local", "hosts": []}) == set()
    assert held_gpus(None) == set()
