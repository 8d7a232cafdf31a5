"""The container executor against a real engine (the session's dockerd): the probe, image lookup and a failed pull,
and a :class:`ContainerProcess` killed at its memory limit, stopped with ``docker stop`` after its grace, and always
removed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.docker import DockerEngine
from trainforge.runtime import container
from trainforge.runtime.container import ContainerProcess, RunSpec
from trainforge.runtime.failure import JobFailed


@pytest.fixture
def engine(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> DockerEngine:
    """The session's engine selected by this process's ``DOCKER_HOST``, as a supervisor's is."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    container._probe.cache_clear()
    return docker_engine


def test_probe_names_the_engine_or_says_why_there_is_none(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = container.probe_engine()
    assert found.available and found.describe() == f"docker {found.version}"
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    missing = container.probe_engine()
    assert not missing.available
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock" in missing.reason


def test_a_missing_image_that_cannot_be_pulled_is_a_client_error_naming_it(
    engine: DockerEngine, test_images: dict[str, str]
) -> None:
    present = container.inspect_image(test_images["busybox"])
    assert present is not None and present.id.startswith("sha256:")
    assert container.image_digest(present) == present.id  # imported, never pulled: its id names it
    assert container.inspect_image("tftest/absent:1") is None
    lines: list[str] = []
    with pytest.raises(JobFailed) as failed:
        container.ensure_image("tftest/absent:1", sink=lambda _s, line: lines.append(line), should_stop=lambda: False)
    assert failed.value.reason.startswith("ClientError: container image tftest/absent:1 is not in the node's engine")
    assert "Pulling container image tftest/absent:1 through the engine" in lines


def run_spec(tmp_path: Path, image: str, name: str, command: list[str], **kwargs: Any) -> RunSpec:
    opt_ml = tmp_path / "opt" / "ml"
    (opt_ml / "input" / "config").mkdir(parents=True, exist_ok=True)
    env_file = tmp_path / "container.env"
    container.write_env_file(env_file, {"GREETING": "hello"})
    return RunSpec(
        image=image, name=name, opt_ml=opt_ml, env_file=env_file, entrypoint=command[0], command=command[1:], **kwargs
    )


def run_to_end(proc: ContainerProcess, timeout: float = 60) -> int:
    proc.start()
    rc = proc.wait(timeout)
    proc.finish()
    assert rc is not None
    return rc


def test_a_container_over_its_memory_limit_is_reported_oom_killed(
    engine: DockerEngine, test_images: dict[str, str], tmp_path: Path
) -> None:
    lines: list[str] = []
    script = "import os; print(os.environ['GREETING'], flush=True); x = bytearray(256 * 2**20); print('survived')"
    spec = run_spec(tmp_path, test_images["python"], "tf-unit-oom", ["python3", "-c", script], memory_bytes=64 * 2**20)
    proc = ContainerProcess(spec, cwd=tmp_path, sink=lambda _s, line: lines.append(line), client_env={})
    try:
        assert run_to_end(proc) == 137
        assert proc.oom_killed()
    finally:
        proc.remove()
    assert lines == ["hello"]
    assert container.container_state("tf-unit-oom") is None  # removed


def test_stop_is_docker_stop_sigkill_after_the_grace_and_the_container_is_removed(
    engine: DockerEngine, test_images: dict[str, str], tmp_path: Path
) -> None:
    lines: list[str] = []
    # PID 1 ignores SIGTERM (no trap in a container's init): only the SIGKILL after the grace ends it
    spec = run_spec(
        tmp_path, test_images["busybox"], "tf-unit-stop", ["sh", "-c", "echo up; while :; do sleep 1; done"]
    )
    proc = ContainerProcess(spec, cwd=tmp_path, sink=lambda _s, line: lines.append(line), client_env={})
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while "up" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines == ["up"]
        started = time.monotonic()
        rc = proc.stop(2)
        took = time.monotonic() - started
        proc.finish()
        assert rc == 137
        assert 1.5 <= took < 15, took
        assert not proc.oom_killed()
    finally:
        proc.remove()
    assert container.container_state("tf-unit-stop") is None
