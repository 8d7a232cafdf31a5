"""The supervisor's container executor: a job host whose code runs in a container (:mod:`trainforge.runtime.container`).

:func:`choose_container` decides at the start of a job whether its host runs in a container: a container image
always, a catalogue image when ``catalogue_containers`` is on and the engine has its build (``trainforge images
build``). The supervisor then holds a :class:`ContainerExecutor`, which says the job log's first line, finds or
pulls the image in ``Downloading`` (its digest in the lineage), installs the code's requirements in a catalogue
container, runs the container to its end or a stop, and names the engine's refusal as the failure reason.
:func:`remove_leftover_container` removes what a dead supervisor of the same launch left running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import ValidationError
from trainforge.runtime import toolkit
from trainforge.runtime.container import (
    CATALOGUE_PYTHON,
    ENGINE_FIX,
    ENV_FILE,
    HOST_LABEL,
    JOB_LABEL,
    LOCK_LABEL,
    ContainerProcess,
    Engine,
    RunSpec,
    catalogue_image,
    container_name,
    ensure_image,
    image_digest,
    probe_engine,
    remove_container,
    write_env_file,
)
from trainforge.runtime.failure import ErrorCapture, JobFailed, client_error, execute_error_reason, truncate
from trainforge.runtime.launch import SupervisorConfig
from trainforge.runtime.layout import CONTAINER_OPT_ML, JobPaths, checkpoint_container_path, checkpoint_local_path
from trainforge.runtime.limits import format_gib
from trainforge.runtime.lineage import LineageRecorder
from trainforge.runtime.process import LineSink
from trainforge.runtime.stopping import StopReason, StopSignal
from trainforge.runtime.sysmetrics import SystemMetricsSampler, job_gpus
from trainforge.spec.images import is_container_image, job_image
from trainforge.spec.job import CreateTrainingJobRequest

log = logging.getLogger("trainforge.supervisor")  # the supervisor's own logger: its log lines stay the same

POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class ContainerChoice:
    """A job host that runs in a container: its image, the engine, and whether the image is a catalogue image's
    build (``trainforge images build``: trainforge's command run with the image's venv) or the user's own (run as
    SageMaker runs an image: ``train`` or ``ContainerEntrypoint``)."""

    image: str
    engine: Engine
    catalogue: bool = False


def choose_container(
    cfg: SupervisorConfig, spec: CreateTrainingJobRequest
) -> tuple[ContainerChoice | None, str | None]:
    """Whether the job runs in a container: a container image always (the engine is asked here; one that does
    not answer fails the job in ``Downloading``), a catalogue image when ``catalogue_containers`` is on and the
    engine has its build (else its uv environment: the second item is the job log's line saying why)."""
    image = spec.AlgorithmSpecification.TrainingImage
    if is_container_image(image):
        assert image is not None
        engine = probe_engine() if cfg.containers != "off" else Engine(None, "TRAINFORGE_CONTAINERS=off")
        return ContainerChoice(image, engine), None
    if cfg.catalogue_containers != "on" or cfg.containers == "off":
        return None, None
    try:
        name = job_image(image, spec.AlgorithmSpecification.AlgorithmName).name
    except ValidationError:
        return None, None
    if name == "trainforge/python:current":
        return None, None  # the server's own interpreter: never a container
    engine = probe_engine()
    if engine.available and catalogue_image(name) is not None:
        return ContainerChoice(name, engine, catalogue=True), None
    why = "the engine has no build of it" if engine.available else engine.describe()
    fallback = (
        f"[trainforge] catalogue container image {name}: not used ({why}; build it with `trainforge images build "
        f"{name}`); the job runs in the image's uv environment"
    )
    return None, fallback


class ContainerExecutor:
    """Runs one job host's code in the container of ``choice``.

    ``say`` emits a supervisor message as job log line(s), ``sink`` forwards a stream's line (the pull's output),
    ``output`` forwards the container's own lines (and feeds the failure reason), ``stop`` is the job's stop signal,
    ``lineage`` records the image that ran, ``sysmetrics`` samples the container's ``docker run`` client."""

    def __init__(
        self,
        choice: ContainerChoice,
        *,
        cfg: SupervisorConfig,
        paths: JobPaths,
        isolated: bool,
        say: Callable[..., None],
        sink: LineSink,
        output: LineSink,
        stop: StopSignal,
        lineage: LineageRecorder,
        sysmetrics: SystemMetricsSampler,
    ) -> None:
        self.choice = choice
        self.cfg = cfg
        self.paths = paths
        self.isolated = isolated
        self._say = say
        self._sink = sink
        self._output = output
        self._stop = stop
        self._lineage = lineage
        self._sysmetrics = sysmetrics

    @property
    def image(self) -> str:
        return self.choice.image

    @property
    def catalogue(self) -> bool:
        """Whether the image is a catalogue image's build (trainforge's command runs with its venv)."""
        return self.choice.catalogue

    def describe(self) -> str:
        """The job log's first line for a container job: image, engine, network, limits."""
        choice = self.choice
        network = "none" if self.isolated else "host"
        limits: list[str] = []
        if self.cfg.memory_limit_gib is not None:
            limits.append(f"memory limit {format_gib(int(self.cfg.memory_limit_gib * 2**30))}")
        limits.append(f"{self.cfg.instance.effective_vcpus} CPUs")
        if self.cfg.gpu_ids:
            limits.append(f"GPUs {','.join(str(i) for i in self.cfg.gpu_ids)}")
        return (
            f"[trainforge] executor: container {choice.image} ({choice.engine.describe()}, network: {network}); "
            f"{', '.join(limits)} (enforced by the engine)"
        )

    def pull(self) -> None:
        """``Downloading``: the job's image found in the engine or pulled through it; its digest recorded and
        logged. Raises ``JobFailed`` (a ClientError naming the image and the fix) without an engine or image."""
        choice = self.choice
        if self.cfg.containers == "off":
            raise client_error(
                f"AlgorithmSpecification.TrainingImage {choice.image} is a container image, and containers are off "
                "on this node (TRAINFORGE_CONTAINERS=off); set TRAINFORGE_CONTAINERS=auto, or use a catalogue image"
            )
        if not choice.engine.available:
            raise client_error(
                f"container image {choice.image} needs a container engine, and none answers here "
                f"({choice.engine.reason}); {ENGINE_FIX}"
            )
        image = ensure_image(choice.image, sink=self._sink, should_stop=self._stop.is_set)
        self._stop.check()
        digest = image_digest(image)
        self._say(f"Container image {choice.image} ({digest})")
        self._lineage.set_container(choice.image, digest, lock_sha256=image.labels.get(LOCK_LABEL) or None)

    def engine_error_reason(self, rc: int, errors: ErrorCapture) -> str | None:
        """For a container that never ran (``docker run`` exit code 125: the engine refused it), a ClientError with
        the engine's words; None otherwise."""
        if rc != 125:
            return None
        said = errors.message().strip().splitlines()
        detail = said[-1] if said else "no reason given"
        return truncate(f"ClientError: the container engine could not run {self.choice.image}: {detail}")

    def catalogue_install(self, entry_point: str | None, cmd: list[str]) -> list[str]:
        """In a catalogue container, the code's ``requirements.txt`` (or its package) installed with pip before the
        entry point, as SageMaker's toolkit does; ``cmd`` as it is when there is nothing to install."""
        if entry_point is None:
            return cmd
        kind = toolkit.entry_point_type(self.paths.code, entry_point)
        has_requirements = (self.paths.code / "requirements.txt").is_file()
        pip = [CATALOGUE_PYTHON, "-m", "pip", "install", "--disable-pip-version-check"]
        if kind is toolkit.EntryPointType.PYTHON_PACKAGE:
            pip += [".", *(["-r", "requirements.txt"] if has_requirements else [])]
        elif has_requirements:
            pip += ["-r", "requirements.txt"]
        else:
            return cmd
        script = toolkit.format_command(pip) + ' && exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *cmd]

    def run(
        self,
        spec: CreateTrainingJobRequest,
        cmd: list[str],
        env: dict[str, str],
        *,
        channels: dict[str, Path],
        on_start: Callable[[], None],
        on_stopping: Callable[[StopReason], None],
    ) -> tuple[int, bool, bool]:
        """Run the job's container to its end or a stop; ``(exit code, stopped, killed for memory)``. The container
        is always removed. ``channels`` are the host directories bound at each channel's path, ``on_start`` is
        called once the container started, ``on_stopping`` with the stop's reason before it is stopped."""
        choice = self.choice
        env_file = self.paths.root / ENV_FILE
        through_client = write_env_file(env_file, env)
        checkpoints_at = checkpoint_container_path(spec)
        writable: dict[str, Path] = {}
        if spec.CheckpointConfig is not None and not checkpoints_at.startswith(CONTAINER_OPT_ML + "/"):
            writable[checkpoints_at] = checkpoint_local_path(spec, self.paths)
        memory = self.cfg.memory_limit_gib
        if choice.catalogue or spec.AlgorithmSpecification.ContainerEntrypoint:
            entrypoint, command = cmd[0], cmd[1:]
        else:
            entrypoint, command = None, cmd
        run = RunSpec(
            image=choice.image,
            name=container_name(self.cfg.job_name, self.cfg.host, self.cfg.attempt),
            opt_ml=self.paths.opt_ml,
            env_file=env_file,
            command=command,
            entrypoint=entrypoint,
            workdir=f"{CONTAINER_OPT_ML}/code" if choice.catalogue else None,
            channels=channels,
            writable=writable,
            network=not self.isolated,
            hosts={h: self.cfg.host_addresses.get(h, "127.0.0.1") for h in self.cfg.hosts},
            memory_bytes=int(memory * 2**30) if memory is not None else None,
            cpus=float(self.cfg.instance.effective_vcpus),
            gpu_ids=self.cfg.gpu_ids,
            labels={JOB_LABEL: self.cfg.job_name, HOST_LABEL: self.cfg.host},
        )
        proc = ContainerProcess(run, cwd=self.paths.root, sink=self._output, client_env=through_client)
        try:
            try:
                proc.start()
                on_start()
            except OSError as exc:
                raise JobFailed(
                    execute_error_reason(127, f"{type(exc).__name__}: {exc}", toolkit.format_command(proc.argv))
                ) from None
            self._sysmetrics.start(proc.pid or 0, job_gpus(None, self.cfg.instance.gpus))
            stopped = False
            while True:
                rc = proc.wait(POLL_INTERVAL)
                if rc is not None:
                    break
                if self._stop.is_set():
                    on_stopping(self._stop.reason or StopReason.USER)
                    self._say(
                        f"Stopping the job: docker stop (SIGTERM, then SIGKILL after {self.cfg.stop_grace_seconds:g}s)"
                    )
                    rc = proc.stop(self.cfg.stop_grace_seconds)
                    stopped = True
                    break
            proc.finish()
            self._sysmetrics.close()
            oom = not stopped and rc != 0 and proc.oom_killed()
            return rc, stopped, oom
        finally:
            proc.remove()


def remove_leftover_container(cfg: SupervisorConfig) -> None:
    """The container a dead supervisor of this launch may have left running (it outlives its ``docker run``
    client), removed by its deterministic name; nothing for a job that runs no container."""
    image = (cfg.spec.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if cfg.containers == "off" or not (is_container_image(image) or cfg.catalogue_containers == "on"):
        return
    name = container_name(cfg.job_name, cfg.host, cfg.attempt)
    if remove_container(name):
        log.info("removed the container %s its dead supervisor left", name)
