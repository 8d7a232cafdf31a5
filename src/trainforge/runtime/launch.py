"""The launch contract between a backend and the supervisor it starts on a compute node.

A backend creates a per-host job root ``<root>``, writes ``<root>/supervisor.json`` with
:func:`write_config`, and starts it with :func:`start_supervisor` (detached, own session, stdout and stderr
going to ``<root>/supervisor.log``). It may send the supervisor SIGTERM to ask for a stop. When the
supervisor is done it leaves ``<root>/result.json`` (see :class:`SupervisorResult`).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from trainforge.errors import ValidationError

CONFIG_FILE = "supervisor.json"
LOG_FILE = "supervisor.log"
RESULT_FILE = "result.json"
SUPERVISOR_MODULE = "trainforge.runtime.supervisor"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstanceInfo(_Model):
    """What the job's instance type means on this node.

    ``effective_vcpus`` is what the job may actually use here (``SM_NUM_CPUS``); ``notice`` is a line the
    supervisor prints at the top of the job's log (e.g. that a large type runs capped on this machine).
    """

    type: str
    vcpus: int = Field(ge=0)
    memory_gib: float = Field(ge=0)
    gpus: int = Field(default=0, ge=0)
    effective_vcpus: int = Field(ge=1)
    notice: str | None = None


class SupervisorConfig(_Model):
    """Everything one host's supervisor needs; the content of ``supervisor.json``.

    ``spec`` is the CreateTrainingJob request exactly as the server stored it (SageMaker wire format).
    ``server_file``, when set, is re-read whenever a request to ``server_url`` fails, so a server restarted
    on another port is found again. ``python`` is the interpreter that runs the supervisor and, for the
    ``trainforge/python:current`` image, the job itself. ``envs_root`` is the node's image-environment cache
    (None: a private one under the job root); ``env_reuse_server`` the ``TRAINFORGE_ENV_REUSE_SERVER`` mode.
    ``gpu_ids`` are the GPUs the scheduler gave the job (``CUDA_VISIBLE_DEVICES``); None for a job without GPUs,
    which leaves ``CUDA_VISIBLE_DEVICES`` unset. ``system_metrics_interval_seconds`` is the time between two
    samples of the job's system metrics (0: none are taken).
    """

    job_name: str
    host: str
    hosts: list[str] = Field(min_length=1)
    host_addresses: dict[str, str] = Field(default_factory=dict)
    """The IP address of each host of the job (``algo-1`` -> ``10.0.0.5``); a host missing here is this machine
    (``127.0.0.1``). User code resolves the job's host names to these addresses."""
    master_port: int | None = Field(default=None, ge=1, le=65535)
    """The rendezvous port of a multi-host job (``MASTER_PORT``); None: SageMaker's 7777."""
    spec: dict[str, Any]
    server_url: str
    server_file: str | None = None
    agent_token: str
    storage: dict[str, Any]
    region: str = "local"
    account_id: str = "000000000000"
    stop_grace_seconds: float = Field(default=120.0, ge=0)
    system_metrics_interval_seconds: float = Field(default=5.0, ge=0)
    instance: InstanceInfo
    python: str
    envs_root: str | None = None
    env_reuse_server: Literal["auto", "never"] = "never"
    gpu_ids: list[int] | None = None
    remote_function_key: str | None = None
    warm_dir: str | None = None
    role: dict[str, Any] | None = None
    """The job's role as resolved at submit: ``{"name": ..., "read": [s3 prefixes], "write": [s3 prefixes]}``.
    Every object the supervisor reads or writes for the job must fall under it (None: no restriction)."""
    sandbox: Literal["auto", "off"] = "auto"
    """``TRAINFORGE_SANDBOX``: whether the user code runs in a bubblewrap sandbox where one works."""
    memory_limit_gib: float | None = None
    """The memory the job's code may use on this host (the instance type's, capped to the machine)."""
    ca_bundle_pem: str | None = None
    """The CA certificate(s) (PEM) the supervisor verifies an https ``server_url`` with (None: the system's)."""
    attempt: int = Field(default=1, ge=1)
    """Which run of the job this is: 1, then 2, 3, ... as ``RetryStrategy`` re-runs a job whose host was lost. Its
    ``agent_token`` is valid for this attempt only."""
    containers: Literal["auto", "docker", "off"] = "auto"
    """``TRAINFORGE_CONTAINERS``: whether a container image may run (with the engine of this node's ``DOCKER_HOST``)."""
    catalogue_containers: Literal["on", "off"] = "off"
    """``TRAINFORGE_CATALOGUE_CONTAINERS``: whether a catalogue image runs in its built container image when the engine
    has one (:mod:`trainforge.runtime.container`)."""
    warm_fork: Literal["auto", "off"] = "auto"
    """``TRAINFORGE_WARM_FORK``: whether a warm worker forks the next job's entry point from a forkserver."""
    kind: Literal["training", "endpoint", "transform"] = "training"
    """What the supervisor runs: a training job's host, one instance of an endpoint, or one instance of a batch
    transform job. For the last two ``spec`` is a serving launch (:mod:`trainforge.runtime.serving.spec`)."""


class SupervisorResult(_Model):
    """What the supervisor leaves in ``<root>/result.json`` when it exits.

    ``status`` is the final SecondaryStatus it reported; ``delivered`` says whether the server accepted
    that report (False when the server answered 404/409 for the job or the report was dropped).
    """

    job_name: str
    host: str
    status: str
    failure_reason: str | None = None
    delivered: bool


def job_dir_name(job_name: str, attempt: int = 1) -> str:
    """The directory of one attempt of a job under a jobs root: ``<job>`` for the first, ``<job>.attempt-<n>``
    after (job names have no dots, so it never names another job; a host's root stays two levels below the jobs
    root, which the sandbox hides)."""
    return job_name if attempt <= 1 else f"{job_name}.attempt-{attempt}"


def config_path(root: Path) -> Path:
    """``<root>/supervisor.json``."""
    return Path(root) / CONFIG_FILE


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_config(root: Path, cfg: SupervisorConfig) -> Path:
    """Write ``cfg`` to ``<root>/supervisor.json`` atomically, readable by the owner only (it holds a token).

    Returns the path written.
    """
    path = config_path(root)
    _write_private(path, json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True))
    return path


def read_config(path: Path) -> SupervisorConfig:
    """Read a ``supervisor.json``; raise :class:`ValidationError` naming the field if it is malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: cannot read supervisor config: {exc}", field="supervisor.json") from None
    try:
        return SupervisorConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise ValidationError(f"{path}: {field}: {first['msg']}", field=field) from None


def supervisor_command(cfg: SupervisorConfig, root: Path) -> list[str]:
    """The argv that starts the supervisor for the config written under ``root``."""
    return [cfg.python, "-m", SUPERVISOR_MODULE, str(config_path(root))]


def start_supervisor(cfg: SupervisorConfig, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the supervisor of the config written under ``root``, detached (its own session), with stdout and
    stderr appended to ``<root>/supervisor.log``. Raises ``OSError`` if it cannot start."""
    with open(Path(root) / LOG_FILE, "ab") as log:
        return subprocess.Popen(
            supervisor_command(cfg, root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


def write_result(root: Path, result: SupervisorResult) -> Path:
    """Write ``<root>/result.json`` atomically."""
    path = Path(root) / RESULT_FILE
    _write_private(path, json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True))
    return path


def read_result(root: Path) -> SupervisorResult | None:
    """The supervisor's ``result.json`` under ``root``, or None while there is none (or it is unreadable)."""
    path = Path(root) / RESULT_FILE
    try:
        return SupervisorResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
