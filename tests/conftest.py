"""Shared fixtures: a fresh TRAINFORGE_HOME, a real server process, a real PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import docker as docker_support
from tests.support.postgres import postgres_cluster
from tests.support.ray_cluster import RayCluster, ray_head
from tests.support.s3 import S3Server, moto_server
from tests.support.server import ServerProcess, kill_supervisors


@pytest.fixture
def tf_home(tmp_path: Path) -> Path:
    """An empty home directory for one test."""
    home = tmp_path / "tfhome"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image environments shared by every test server of the session: each image is built once per session."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture
def server(tf_home: Path, envs_dir: Path) -> Iterator[ServerProcess]:
    """A running server with its own home (image environments in the session's ``envs_dir``); stopped after
    the test (its jobs' supervisors are killed too)."""
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    srv = ServerProcess(tf_home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(tf_home)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for the session."""
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (moto, a subprocess on 127.0.0.1) for the session; ``.env`` holds the
    ``AWS_*`` variables (endpoint and credentials) that point trainforge at it. Skipped without moto."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[s3]')")
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[RayCluster]:
    """A real local Ray cluster for the session (one head on 127.0.0.1, 8 CPUs, no GPUs), shared by every Ray
    test and stopped by its own pid at the end; its node's ``TRAINFORGE_HOME`` is a session directory, and where the
    session's Docker engine runs, the node's ``DOCKER_HOST`` points at it (the node's own engine, as a Ray node
    has). Skipped without Ray."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    try:
        node_env = dict(request.getfixturevalue("docker_engine").env)
    except pytest.skip.Exception:
        node_env = {}  # no engine here: the Ray tests run all the same, the container one skips
    with ray_head(tmp_path_factory.mktemp("raynode"), num_cpus=8, extra_env=node_env) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker_support.DockerEngine]:
    """A real dockerd of the session's own (Debian's docker.io: its own socket, data root and exec root; no
    iptables, no bridge), stopped by its pid at the end with its containers removed. ``.env`` holds the
    ``DOCKER_HOST`` that selects it. Skipped, saying why, where no engine can run (no dockerd, not root, start
    failure)."""
    reason = docker_support.engine_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        try:
            engine = stack.enter_context(docker_support.docker_engine())
        except docker_support.EngineUnavailable as exc:
            pytest.skip(str(exc))
        yield engine


@pytest.fixture(scope="session")
def test_images(docker_engine: docker_support.DockerEngine) -> docker_support.TestImages:
    """Test images in the session's engine by role: ``busybox`` (busybox-static), ``python`` (Debian's python3.11,
    venv + pip working) and ``toolkit`` (python + the real sagemaker-training toolkit and its ``train``), each
    built from Debian packages (and PyPI wheels) on first use; packages are cached in ~/.cache/trainforge-tests."""
    return docker_support.TestImages(docker_engine)
