"""The instance catalogue: SageMaker's training and hosting lists, their resources, and validation of each."""

from __future__ import annotations

import pytest

from trainforge.errors import ValidationError
from trainforge.scheduler.instances import (
    CATALOGUE,
    HOSTING,
    HOSTING_ONLY,
    TRAINING,
    Machine,
    hosting_instance_type,
    lookup,
    place,
)

MACHINE = Machine(cpus=4, memory_gib=16.0, gpus=0)

# Types public notebooks deploy endpoints on; every one must be accepted for hosting.
NOTEBOOK_HOSTING = [
    "ml.t2.medium",
    "ml.t2.large",
    "ml.t2.xlarge",
    "ml.m4.xlarge",
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5d.large",
    "ml.c4.large",
    "ml.c4.xlarge",
    "ml.c5.large",
    "ml.c5.xlarge",
    "ml.c5d.xlarge",
    "ml.r5.large",
    "ml.g4dn.xlarge",
    "ml.p3.2xlarge",
    "ml.inf1.xlarge",
]


@pytest.mark.parametrize(
    ("name", "vcpus", "memory_gib", "gpus"),
    [
        ("ml.t2.medium", 2, 4.0, 0),
        ("ml.t2.2xlarge", 8, 32.0, 0),
        ("ml.m4.10xlarge", 40, 160.0, 0),
        ("ml.m5d.24xlarge", 96, 384.0, 0),
        ("ml.c4.large", 2, 3.75, 0),
        ("ml.c4.8xlarge", 36, 60.0, 0),
        ("ml.c5.large", 2, 4.0, 0),
        ("ml.c5d.9xlarge", 36, 72.0, 0),
        ("ml.c5n.9xlarge", 36, 96.0, 0),
        ("ml.r5.16xlarge", 64, 512.0, 0),
        ("ml.r5d.large", 2, 16.0, 0),
        ("ml.m6i.32xlarge", 128, 512.0, 0),
        ("ml.c6i.xlarge", 4, 8.0, 0),
        ("ml.inf1.6xlarge", 24, 48.0, 0),
        ("ml.p2.16xlarge", 64, 732.0, 16),
        ("ml.p4d.24xlarge", 96, 1152.0, 8),
        ("ml.g4dn.12xlarge", 48, 192.0, 4),
        ("ml.g5.48xlarge", 192, 768.0, 8),
    ],
)
def test_resources_follow_the_published_specs(name: str, vcpus: int, memory_gib: float, gpus: int) -> None:
    t = CATALOGUE[name]
    assert (t.vcpus, t.memory_gib, t.gpus) == (vcpus, memory_gib, gpus)


def test_catalogue_entries_are_consistent() -> None:
    for name, t in CATALOGUE.items():
        assert t.name == name and name.startswith("ml.")
        assert t.vcpus > 0 and t.memory_gib > 0
        assert (t.gpus > 0) == (t.gpu_model is not None), name
    assert set(CATALOGUE) == set(TRAINING) | set(HOSTING)


@pytest.mark.parametrize("name", NOTEBOOK_HOSTING)
def test_hosting_accepts_the_notebook_types(name: str) -> None:
    assert hosting_instance_type(name, MACHINE).name == name


def test_hosting_accepts_training_types_and_local() -> None:
    for name in ("ml.t3.medium", "ml.m5.large", "ml.c5n.xlarge", "ml.m6i.large", "ml.g5.xlarge"):
        assert hosting_instance_type(name, MACHINE) is CATALOGUE[name]
    local = hosting_instance_type("local", MACHINE)
    assert (local.vcpus, local.memory_gib, local.gpus) == (4, 16.0, 0)
    assert hosting_instance_type("local_gpu", Machine(cpus=8, memory_gib=32.0, gpus=2)).gpus == 2


def test_unknown_hosting_type_names_the_field_and_suggests() -> None:
    with pytest.raises(ValidationError) as err:
        hosting_instance_type("ml.t2.mediun", MACHINE, field="ProductionVariants[0].InstanceType")
    assert err.value.field == "ProductionVariants[0].InstanceType"
    assert err.value.message.startswith("ProductionVariants[0].InstanceType:")
    assert "ml.t2.medium" in err.value.details["suggestions"]
    with pytest.raises(ValidationError) as err:
        hosting_instance_type("gpu-box", MACHINE)
    assert err.value.field == "InstanceType" and "ml.m5.large" in err.value.message


def test_training_rejects_hosting_only_types_as_sagemaker_does() -> None:
    assert {"ml.t2.medium", "ml.c5.large", "ml.c4.large", "ml.m5d.large", "ml.inf1.xlarge"} <= HOSTING_ONLY
    for name in sorted(HOSTING_ONLY):
        with pytest.raises(ValidationError) as err:
            lookup(name, MACHINE)
        assert err.value.field == "ResourceConfig.InstanceType"
        assert "hosting instance type" in err.value.message and "ml.m5.large" in err.value.message


def test_training_accepts_its_list_and_local() -> None:
    for name in ("ml.m5.large", "ml.c5.xlarge", "ml.m4.xlarge", "ml.t3.medium", "ml.p3.2xlarge", "ml.r5.large"):
        assert lookup(name, MACHINE) is TRAINING[name]
    assert lookup("local", MACHINE).vcpus == 4
    with pytest.raises(ValidationError) as err:
        lookup("ml.m5.larg", MACHINE)
    assert "ml.m5.large" in err.value.details["suggestions"]


def test_hosting_types_place_on_this_machine_like_training_types() -> None:
    assert place(hosting_instance_type("ml.t2.medium", MACHINE), MACHINE).notice is None
    capped = place(hosting_instance_type("ml.m5d.4xlarge", MACHINE), MACHINE)
    assert capped.effective_vcpus == 4 and capped.notice and "capped" in capped.notice
