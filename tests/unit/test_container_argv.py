"""The container executor's pure parts: which images are container images, the ``docker run`` command line of a
job host, its env file, its name, the digest that names what ran, and the settings reaching the supervisor."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trainforge.backends.base import LaunchRequest
from trainforge.errors import ValidationError
from trainforge.runtime.container import (
    ImageInfo,
    RunSpec,
    container_name,
    image_digest,
    run_argv,
    write_env_file,
)
from trainforge.scheduler.instances import CATALOGUE, Placement
from trainforge.settings import load_settings
from trainforge.spec.images import check_container_reference, is_container_image


@pytest.mark.parametrize(
    ("uri", "container"),
    [
        ("my-image:1", True),
        ("tftest/busybox:1", True),
        ("registry.example.com:5000/team/train@sha256:" + "a" * 64, True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own-repo:1", True),  # ECR, but not a catalogue framework
        ("trainforge/sklearn:1.2-1", False),
        ("trainforge/no-such:1", False),  # a catalogue name keeps its "unknown catalogue image" error
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3", False),
        (None, False),
    ],
)
def test_which_images_are_container_images(uri: str | None, container: bool) -> None:
    assert is_container_image(uri) is container


@pytest.mark.parametrize("bad", ["My Image", "UPPER:1", "name:", "a//b", "img:tag with space"])
def test_a_malformed_reference_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_container_reference(bad)
    assert refused.value.field == "AlgorithmSpecification.TrainingImage"
    assert "[registry[:port]/]name[:tag][@digest]" in refused.value.message


def test_run_argv_binds_opt_ml_read_only_config_and_channels_and_sets_limits(tmp_path: Path) -> None:
    opt_ml = tmp_path / "opt" / "ml"
    (opt_ml / "input" / "config").mkdir(parents=True)
    store_dir = tmp_path / "store, with a comma"
    spec = RunSpec(
        image="tftest/custom:1",
        name="trainforge-job-algo-1",
        opt_ml=opt_ml,
        env_file=tmp_path / "container.env",
        channels={"train": store_dir},
        writable={"/tmp/checkpoints": tmp_path / "ckpt"},
        hosts={"algo-1": "127.0.0.1", "algo-2": "10.0.0.5"},
        memory_bytes=2**31,
        cpus=2,
        gpu_ids=[1, 3],
        labels={"ai.trainforge.job": "job"},
    )
    argv = run_argv(spec)
    assert argv[:6] == ["docker", "run", "--name", "trainforge-job-algo-1", "--env-file", str(spec.env_file)]
    assert argv[-2:] == ["tftest/custom:1", "train"]  # SageMaker's `docker run <image> train`
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
    assert mounts == [
        f"type=bind,source={opt_ml},target=/opt/ml",
        f"type=bind,source={opt_ml}/input/config,target=/opt/ml/input/config,readonly",
        f'type=bind,"source={store_dir}",target=/opt/ml/input/data/train,readonly',
        f"type=bind,source={tmp_path}/ckpt,target=/tmp/checkpoints",
    ]
    joined = " ".join(argv)
    assert "--network host --add-host algo-1:127.0.0.1 --add-host algo-2:10.0.0.5" in joined
    assert f"--memory {2**31} --memory-swap {2**31}" in joined  # no swap beyond the limit
    assert "--cpus 2 " in joined
    assert '--gpus "device=1,3"' in joined
    assert "--label ai.trainforge.job=job" in joined
    assert "--entrypoint" not in argv and "--workdir" not in argv


def test_run_argv_without_network_and_with_a_replaced_entrypoint(tmp_path: Path) -> None:
    spec = RunSpec(
        image="img:1",
        name="n",
        opt_ml=tmp_path,
        env_file=tmp_path / "e",
        entrypoint="/bin/sh",
        command=["/opt/fail.sh", "--flag"],
        network=False,
        hosts={"algo-1": "127.0.0.1"},
    )
    argv = run_argv(spec)
    assert argv[argv.index("--network") + 1] == "none"
    assert "--add-host" not in argv and "--memory" not in argv and "--gpus" not in argv
    assert argv[-5:] == ["--entrypoint", "/bin/sh", "img:1", "/opt/fail.sh", "--flag"]


def test_env_file_is_private_and_multi_line_values_go_through_the_client(tmp_path: Path) -> None:
    path = tmp_path / "container.env"
    through_client = write_env_file(path, {"SM_HPS": '{"a":1}', "EMPTY": "", "PEM": "line1\nline2", "EQ": "a=b"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().splitlines() == ["EMPTY=", "EQ=a=b", "PEM", 'SM_HPS={"a":1}']
    assert through_client == {"PEM": "line1\nline2"}


def test_container_name_is_deterministic_per_attempt() -> None:
    assert container_name("my-job", "algo-2") == "trainforge-my-job-algo-2"
    assert container_name("my-job", "algo-2", attempt=3) == "trainforge-my-job-algo-2-3"


def test_image_digest_prefers_the_registry_digest_of_the_images_repository() -> None:
    local = ImageInfo(ref="tftest/custom:1", id="sha256:" + "1" * 64)
    assert image_digest(local) == "sha256:" + "1" * 64
    pulled = ImageInfo(
        ref="python:3.11",
        id="sha256:" + "1" * 64,
        repo_digests=("other@sha256:" + "2" * 64, "python@sha256:" + "3" * 64),
    )
    assert image_digest(pulled) == "sha256:" + "3" * 64
    registry = ImageInfo(
        ref="registry.example.com:5000/team/train:1",
        id="sha256:" + "1" * 64,
        repo_digests=("registry.example.com:5000/team/train@sha256:" + "4" * 64,),
    )
    assert image_digest(registry) == "sha256:" + "4" * 64


def test_settings_reach_the_supervisor_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_CONTAINERS", "off")
    monkeypatch.setenv("TRAINFORGE_CATALOGUE_CONTAINERS", "on")
    settings = load_settings()
    assert (settings.containers, settings.catalogue_containers) == ("off", "on")
    monkeypatch.setenv("TRAINFORGE_CONTAINERS", "podman")
    with pytest.raises(ValueError, match="containers"):
        load_settings()
    instance = CATALOGUE["ml.m5.large"]
    request = LaunchRequest(
        job_name="j",
        spec={},
        placement=Placement(instance, instance.vcpus, None),
        agent_token="t",
        server_url="http://127.0.0.1:1",
        server_file=None,
        storage={},
        region="local",
        account_id="000000000000",
        stop_grace_seconds=5,
        containers=settings.containers,
        catalogue_containers=settings.catalogue_containers,
    )
    cfg = request.host_config("algo-1", ["algo-1"], addresses={}, master_port=None, python="python", server_file=None)
    assert (cfg.containers, cfg.catalogue_containers) == ("off", "on")
