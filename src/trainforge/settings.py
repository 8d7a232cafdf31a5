"""Typed settings, read once from ``TRAINFORGE_*`` environment variables and passed explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    """``~/.trainforge``: where the embedded server keeps its database, objects, token and job roots."""
    return Path.home() / ".trainforge"


class Settings(BaseSettings):
    """Server and client settings. Every field can be set as ``TRAINFORGE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TRAINFORGE_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    region: str = "local"
    account_id: str = "000000000000"
    backend: Literal["local", "ray"] = "local"
    """Where jobs run: ``local`` (processes on this machine) or ``ray`` (a Ray cluster, extra ``[ray]``)."""
    ray_address: str | None = None
    """The Ray cluster's address (``head:6379``) for ``backend=ray``; unset: ``RAY_ADDRESS`` or a local cluster."""
    ray_placement: Literal["STRICT_SPREAD", "SPREAD", "PACK", "STRICT_PACK"] = "STRICT_SPREAD"
    """The placement-group strategy of a job's hosts on Ray (``PACK`` lets one node hold every host)."""
    ray_namespace: str = "trainforge"
    """The Ray namespace of the server's named actors."""
    advertise_url: str | None = None
    """The server's URL as supervisors on other nodes reach it (default: the URL it listens on)."""
    storage: Literal["local", "s3"] = "local"
    """The object store: ``local`` (a directory in the home) or ``s3`` (an S3-compatible endpoint configured the
    way AWS tools are: ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_REGION``, ``AWS_PROFILE``; extra ``[s3]``)."""
    endpoint: str | None = None
    token: str | None = None
    stop_grace_seconds: float = 120.0
    system_metrics_interval_seconds: float = Field(default=5.0, ge=0)
    """Seconds between two samples of a job's system metrics (``system/...``) on each host; 0 turns them off."""
    scheduler_interval_seconds: float = 0.5
    heartbeat_timeout_seconds: float = 60.0
    local_cpus: int | None = None
    local_cpu_oversubscription: float = 4.0
    local_gpus: int | None = None
    envs_dir: Path | None = None
    """Where image environments are built and cached (default ``<home>/envs``)."""
    env_reuse_server: Literal["auto", "never"] = "never"
    """``auto``: run an image in the server's interpreter when all its pinned packages are installed there."""
    prices_file: Path | None = None
    """A JSON or TOML file of prices per instance-hour (``{"ml.m5.large": 0.115, "currency": "USD"}``) that replace
    the defaults (public on-demand list prices, :mod:`trainforge.spec.prices`) for the types it names; a bad file
    stops the server at start, naming the file and the entry."""
    tls_cert: Path | None = None
    """The server's TLS certificate (PEM); with ``tls_key`` the server serves https."""
    tls_key: Path | None = None
    """The private key (PEM) of ``tls_cert``."""
    ca_bundle: Path | None = None
    """The CA certificate(s) (PEM) clients, the CLI and supervisors verify the server's certificate with."""
    insecure: bool = False
    """Serve plain http on a non-loopback ``host`` (``--insecure``). Off: such a server refuses to start without
    ``tls_cert``/``tls_key``, since API tokens and job data would cross the network in clear text."""
    sandbox: Literal["auto", "off"] = "auto"
    """``auto``: user code runs in a bubblewrap sandbox where ``bwrap`` works (else unsandboxed, said in the job
    log); ``off``: never sandboxed."""
    local_memory_gib: float | None = None
    """The memory (GiB) jobs on this machine may use in all; unset: the machine's physical memory."""
    containers: Literal["auto", "docker", "off"] = "auto"
    """Container images (a ``TrainingImage`` outside the catalogue, see
    :func:`trainforge.spec.images.is_container_image`): ``auto`` accepts them and runs them with the Docker-compatible
    engine of the node that runs the job (its ``DOCKER_HOST``; no engine there: the job fails in ``Downloading``
    saying so); ``docker`` also checks at submit that this server's engine answers when jobs run on this machine
    (local backend); ``off`` refuses them at submit."""
    catalogue_containers: Literal["on", "off"] = "off"
    """``on``: a catalogue image's job runs inside the container image ``trainforge images build`` made of it (tag = the
    catalogue name, label ``ai.trainforge.catalogue-image``) where the node's engine has one, else in its uv
    environment as with ``off``."""

    launcher: Literal["auto", "off"] = "auto"
    """``auto``: the local backend starts a job host's supervisor by forking it from a per-node launcher that has
    already imported the supervisor's code (:mod:`trainforge.runtime.launcher`), and spawns a fresh interpreter where
    the launcher does not answer; ``off``: always a fresh interpreter."""
    warm_fork: Literal["auto", "off"] = "auto"
    """``auto``: a warm worker (``KeepAlivePeriodInSeconds``) keeps a forkserver that has imported its image's heavy
    modules and forks the next job's entry point from it where the executor allows
    (:mod:`trainforge.runtime.forkserver`); ``off``: every job's code starts a fresh interpreter."""

    @property
    def resolved_home(self) -> Path:
        """The home directory as an absolute path."""
        return self.home.expanduser().resolve()

    @property
    def storage_root(self) -> Path:
        """Root of the local object store: ``s3://bucket/key`` lives at ``<root>/bucket/key``."""
        return self.resolved_home / "storage"

    @property
    def jobs_root(self) -> Path:
        """Where per-job roots (the ``/opt/ml`` trees) are created on this node."""
        return self.resolved_home / "jobs"

    @property
    def envs_root(self) -> Path:
        """Where image environments live: ``envs_dir``, or ``<home>/envs``."""
        return self.envs_dir.expanduser().resolve() if self.envs_dir else self.resolved_home / "envs"

    @property
    def token_path(self) -> Path:
        """The file holding the API token (mode 0600)."""
        return self.resolved_home / "token"

    @property
    def server_file(self) -> Path:
        """``server.json``: url and pid of the running embedded server."""
        return self.resolved_home / "server.json"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL of the job store (SQLite in the home directory by default)."""
        return self.database_url or f"sqlite:///{self.resolved_home / 'trainforge.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; keyword overrides win over environment variables."""
    return Settings(**overrides)  # type: ignore[arg-type]
