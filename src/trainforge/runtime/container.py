"""The container executor: a job host's code run by a Docker-compatible engine, as SageMaker runs an image.

Everything goes through the ``docker`` client on ``PATH``, talking to the engine of the supervisor's own environment
(``DOCKER_HOST``, or the client's default socket): the engine of the node the job runs on. Pulls go through that
engine too, so registry credentials are the engine's (``docker login`` on the node).

- :func:`probe_engine` asks the engine its version once per process (the reason when it does not answer);
- :func:`ensure_image` finds the image (``docker image inspect``) or pulls it, and :func:`image_digest` names
  exactly what ran (a registry digest ``sha256:...`` when the image has one, else its image id);
- :func:`run_argv` is the ``docker run`` command line of one job host (:class:`RunSpec`): the host's ``opt/ml``
  bound at ``/opt/ml`` (its config and channels read-only), the contract's environment from an ``--env-file``,
  ``--network none`` or the host network with ``--add-host algo-N:<address>``, ``--memory``/``--cpus`` and
  ``--gpus``, and a deterministic name (:func:`container_name`) so a later supervisor can clean up after a dead one;
- :class:`ContainerProcess` runs the attached ``docker run`` client as any child (its output forwarded line by
  line), stops the container with ``docker stop -t <grace>`` (SIGTERM, SIGKILL after the grace), tells whether
  the kernel killed it for memory, and always removes it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainforge.runtime.failure import client_error
from trainforge.runtime.process import ChildProcess, LineSink, run_logged

DOCKER = "docker"
OPT_ML = "/opt/ml"
CATALOGUE_LABEL = "ai.trainforge.catalogue-image"
LOCK_LABEL = "ai.trainforge.lock-sha256"
CATALOGUE_VENV = "/opt/trainforge/venv"
CATALOGUE_PYTHON = CATALOGUE_VENV + "/bin/python"
CATALOGUE_IMAGE_FILES = "/opt/trainforge/image_files"
JOB_LABEL = "ai.trainforge.job"
HOST_LABEL = "ai.trainforge.host"
PROBE_TIMEOUT_S = 15.0
INSPECT_TIMEOUT_S = 60.0
STOP_SLACK_S = 30.0
CLIENT_EXIT_WAIT_S = 10.0
ENV_FILE = "container.env"
ENGINE_FIX = (
    "start the Docker engine on this node (dockerd), or point DOCKER_HOST at a running one in the environment the "
    "server (or the Ray node) was started with"
)


def _docker(
    *args: str, timeout: float = INSPECT_TIMEOUT_S, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``docker`` client command and capture its output; ``OSError`` when the client cannot run,
    ``subprocess.TimeoutExpired`` after ``timeout``."""
    return subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False, input=input, env=os.environ
    )


def _last_line(text: str, default: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


@dataclass(frozen=True)
class Engine:
    """Whether the engine answers: its server ``version`` when it does, ``reason`` says why not otherwise."""

    version: str | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.version is not None

    def describe(self) -> str:
        """``docker 20.10.24``, or ``engine not reachable (<reason>)``."""
        return f"docker {self.version}" if self.version else f"engine not reachable ({self.reason})"


def probe_engine() -> Engine:
    """Ask the engine of this process's ``DOCKER_HOST`` for its version (cached per ``DOCKER_HOST`` value)."""
    return _probe(os.environ.get("DOCKER_HOST", ""))


def fresh_engine_probe() -> Engine:
    """:func:`probe_engine` without its cache (a long-running server asks anew each time)."""
    return _probe.__wrapped__(os.environ.get("DOCKER_HOST", ""))


@functools.cache
def _probe(docker_host: str) -> Engine:
    where = f"DOCKER_HOST={docker_host}" if docker_host else "the default socket"
    try:
        done = _docker("version", "--format", "{{.Server.Version}}", timeout=PROBE_TIMEOUT_S)
    except FileNotFoundError:
        return Engine(None, f"the docker client is not installed ({DOCKER} not on PATH)")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Engine(None, f"docker version at {where}: {exc}")
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        return Engine(None, f"no engine answers at {where}: {_last_line(done.stderr, f'exit code {done.returncode}')}")
    return Engine(version)


@dataclass(frozen=True)
class ImageInfo:
    """An image present in the engine, as ``docker image inspect`` describes it."""

    ref: str
    id: str
    repo_digests: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def image_digest(image: ImageInfo) -> str:
    """The digest of what runs: the registry digest (``sha256:...`` of ``RepoDigests``, the one of the image's own
    repository first) when the image came from a registry, else the image id (``sha256:...``)."""
    repository = image.ref.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    for entry in image.repo_digests:
        name, _, digest = entry.partition("@")
        if name == repository or name.endswith("/" + repository):
            return digest
    if image.repo_digests:
        return image.repo_digests[0].partition("@")[2]
    return image.id


def inspect_image(ref: str) -> ImageInfo | None:
    """The image ``ref`` when the engine has it, None when it does not; raises ``JobFailed`` (ClientError) when the
    engine cannot be asked."""
    try:
        done = _docker("image", "inspect", "--format", "{{json .}}", ref)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise client_error(f"cannot ask the container engine for image {ref}: {exc}; {ENGINE_FIX}") from None
    if done.returncode != 0:
        if "no such image" in done.stderr.lower():
            return None
        raise client_error(
            f"cannot ask the container engine for image {ref}: {_last_line(done.stderr, 'no answer')}; {ENGINE_FIX}"
        )
    data: dict[str, Any] = json.loads(done.stdout)
    config = data.get("Config") or {}
    return ImageInfo(
        ref=ref,
        id=str(data.get("Id", "")),
        repo_digests=tuple(str(d) for d in data.get("RepoDigests") or ()),
        labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
    )


def ensure_image(ref: str, *, sink: LineSink, should_stop: Callable[[], bool]) -> ImageInfo:
    """The image ``ref``, pulled through the engine when it is not there yet (the pull's output goes to ``sink``).

    Raises ``JobFailed`` (a ClientError naming the image and the fix) when the pull fails."""
    found = inspect_image(ref)
    if found is not None:
        return found
    lines: list[str] = []

    def keep(stream: str, line: str) -> None:
        lines.append(line)
        sink(stream, line)

    sink("stdout", f"Pulling container image {ref} through the engine")
    rc, stopped = run_logged([DOCKER, "pull", ref], cwd=Path.cwd(), env=os.environ, sink=keep, should_stop=should_stop)
    found = None if stopped else inspect_image(ref)
    if found is None and not stopped:
        detail = _last_line("\n".join(lines), f"docker pull exit code {rc}")
        raise client_error(
            f"container image {ref} is not in the node's engine and cannot be pulled ({detail}); push it to a "
            f"registry the engine can reach (docker login on the node for a private one), or put it into the "
            f"engine of every node: docker pull {ref} / docker load -i <image>.tar"
        )
    if found is None:
        raise client_error(f"the pull of {ref} was stopped")
    return found


def catalogue_image(name: str) -> ImageInfo | None:
    """The container image ``trainforge images build`` made of the catalogue image ``name`` (tag ``name``, label
    ``ai.trainforge.catalogue-image=<name>``) when the engine has one; None otherwise (also when the engine does not
    answer)."""
    try:
        image = inspect_image(name)
    except Exception:
        return None
    if image is None or image.labels.get(CATALOGUE_LABEL) != name:
        return None
    return image


def container_name(job_name: str, host: str, attempt: int = 1) -> str:
    """``trainforge-<job>-<host>`` (``-<attempt>`` from the second attempt on): the same for every supervisor of
    that attempt, so one that takes over can find and remove the container."""
    base = f"trainforge-{job_name}-{host}"
    return base if attempt <= 1 else f"{base}-{attempt}"


def _mount(source: Path, target: str, *, readonly: bool) -> list[str]:
    fields = ["type=bind", f"source={source}", f"target={target}"]
    if readonly:
        fields.append("readonly")
    # --mount is a CSV record: a field holding a comma or a quote is quoted, its quotes doubled
    quoted = ['"' + f.replace('"', '""') + '"' if ("," in f or '"' in f) else f for f in fields]
    return ["--mount", ",".join(quoted)]


@dataclass
class RunSpec:
    """One job host's container.

    ``command`` follows the image: ``["train"]`` (SageMaker's argument), or with ``entrypoint`` the replacement
    entrypoint (``ContainerEntrypoint``'s first element) and ``command`` the rest and ``ContainerArguments``.
    ``channels`` maps a channel to the host directory bound read-only at ``/opt/ml/input/data/<name>``;
    ``writable`` maps container paths outside ``/opt/ml`` (a checkpoint ``LocalPath``) to host directories.
    ``hosts`` maps every host name of the job to its address (``--add-host``); ``memory_bytes`` and ``cpus`` are the
    limits (None: none); ``gpu_ids`` the GPUs passed through (None: none).
    """

    image: str
    name: str
    opt_ml: Path
    env_file: Path
    command: list[str] = field(default_factory=lambda: ["train"])
    entrypoint: str | None = None
    workdir: str | None = None
    channels: dict[str, Path] = field(default_factory=dict)
    writable: dict[str, Path] = field(default_factory=dict)
    network: bool = True
    hosts: dict[str, str] = field(default_factory=dict)
    memory_bytes: int | None = None
    cpus: float | None = None
    gpu_ids: list[int] | None = None
    labels: dict[str, str] = field(default_factory=dict)


def run_argv(spec: RunSpec) -> list[str]:
    """The ``docker run`` argv of ``spec``: attached (no tty, no stdin), not removed on exit (its state tells an
    out-of-memory kill; :class:`ContainerProcess` removes it)."""
    argv = [DOCKER, "run", "--name", spec.name, "--env-file", str(spec.env_file)]
    for key, value in sorted(spec.labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += _mount(spec.opt_ml, OPT_ML, readonly=False)
    config = spec.opt_ml / "input" / "config"
    if config.is_dir():
        argv += _mount(config, f"{OPT_ML}/input/config", readonly=True)
    for channel, source in sorted(spec.channels.items()):
        argv += _mount(source, f"{OPT_ML}/input/data/{channel}", readonly=True)
    for target, source in sorted(spec.writable.items()):
        argv += _mount(source, target, readonly=False)
    if spec.network:
        argv += ["--network", "host"]
        for host, address in sorted(spec.hosts.items()):
            argv += ["--add-host", f"{host}:{address}"]
    else:
        argv += ["--network", "none"]
    if spec.memory_bytes is not None:
        argv += ["--memory", str(spec.memory_bytes), "--memory-swap", str(spec.memory_bytes)]
    if spec.cpus is not None:
        argv += ["--cpus", f"{spec.cpus:g}"]
    if spec.gpu_ids:
        argv += ["--gpus", '"device=' + ",".join(str(i) for i in spec.gpu_ids) + '"']
    if spec.workdir:
        argv += ["--workdir", spec.workdir]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    return [*argv, spec.image, *spec.command]


def write_env_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Write ``env`` as a ``docker run --env-file`` (mode 0600): ``KEY=VALUE`` lines. A value the format cannot
    hold (a line break) is written as a bare ``KEY`` and returned, to be set in the docker client's own environment
    (from where the client takes a bare key's value)."""
    through_client: dict[str, str] = {}
    lines: list[str] = []
    for key, value in sorted(env.items()):
        if "\n" in value or "\r" in value or "\0" in value:
            through_client[key] = value.replace("\0", "")
            lines.append(key)
        else:
            lines.append(f"{key}={value}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return through_client


def remove_container(name: str) -> bool:
    """``docker rm -f <name>``: whether a container of that name was removed (False: none, or no engine)."""
    try:
        done = _docker("rm", "-f", name)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def container_state(name: str) -> dict[str, Any] | None:
    """The ``State`` of the container ``name`` (``OOMKilled``, ``ExitCode``, ...), None when there is none."""
    try:
        done = _docker("container", "inspect", "--format", "{{json .State}}", name)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    state: dict[str, Any] = json.loads(done.stdout)
    return state


class ContainerProcess:
    """The attached ``docker run`` of one job host, run as a :class:`ChildProcess` (its own process group, its
    output forwarded line by line). Stop, out-of-memory and removal act on the container itself, by name."""

    def __init__(self, spec: RunSpec, *, cwd: Path, sink: LineSink, client_env: Mapping[str, str]) -> None:
        self.spec = spec
        self.argv = run_argv(spec)
        env = {**os.environ, **client_env}
        self._child = ChildProcess(self.argv, cwd=cwd, env=env, sink=sink)

    @property
    def pid(self) -> int | None:
        """The docker client's pid (its process group id)."""
        return self._child.pid

    def start(self) -> None:
        """Remove a leftover container of the same name (an earlier supervisor's), then start; ``OSError`` when the
        client cannot run."""
        remove_container(self.spec.name)
        self._child.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """The client's exit code (the container's, or 125-127 for an engine or command error) once it exited."""
        return self._child.wait(timeout)

    def stop(self, grace_seconds: float) -> int:
        """``docker stop -t <grace>`` (SIGTERM to the container's main process, SIGKILL after the grace), then the
        client's exit code; a client that does not end after that is killed."""
        grace = max(0, math.ceil(grace_seconds))
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            _docker("stop", "-t", str(grace), self.spec.name, timeout=grace + STOP_SLACK_S)
        rc = self._child.wait(CLIENT_EXIT_WAIT_S)
        if rc is None:
            rc = self._child.stop(0)
        return rc

    def finish(self) -> None:
        """Drain the client's output (see :meth:`ChildProcess.finish`)."""
        self._child.finish()

    def oom_killed(self) -> bool:
        """Whether the kernel killed the container's processes at its memory limit."""
        state = container_state(self.spec.name)
        return bool(state and state.get("OOMKilled"))

    def remove(self) -> None:
        """Remove the container (running or not); never raises."""
        remove_container(self.spec.name)
