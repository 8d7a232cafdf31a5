"""The supervisor: runs one host's part of a training job under the SageMaker container contract.

Started by a backend as ``python -m trainforge.runtime.supervisor <root>/supervisor.json`` (see
:mod:`trainforge.runtime.launch`). Run sequence, with the secondary status reported at each step:

1. ``Starting`` - build the ``opt/ml`` tree and its config files; decide what to run.
2. ``Downloading`` - stage every channel, fetch the source code, build or reuse the image's environment
   with uv (its own ``Downloading`` message; :mod:`trainforge.runtime.envcache`), with the code's
   ``requirements.txt`` or ``setup.py`` layered on it.
3. ``Training`` - run the entry point (or ``ContainerEntrypoint``) with the toolkit's environment, its
   output forwarded line by line, its ``system/...`` metrics sampled (:mod:`trainforge.runtime.sysmetrics`)
   and delivered before the next status.
4. ``Uploading`` -> ``Completed`` on exit code 0; ``Failed`` with an ``AlgorithmError`` otherwise (the model
   directory is still uploaded, best effort).

The user code runs in a bubblewrap sandbox where one works and ``TRAINFORGE_SANDBOX`` is not ``off``
(:mod:`trainforge.runtime.sandbox`: it sees SageMaker's own ``/opt/ml`` paths, its channels read-only, no view
of the server's home; with ``EnableNetworkIsolation`` no network), and under the memory and CPU limits of its
instance type (:mod:`trainforge.runtime.limits`), sandboxed or not; the job log's first line says which. A job
whose code the kernel killed at its memory limit ends ``Failed`` with ``OutOfMemoryError: ...``.

A stop (``stop_requested`` from the server, SIGTERM, or ``MaxRuntimeInSeconds`` counted from the
supervisor's start) sends SIGTERM to the job's process group, waits ``stop_grace_seconds``, sends SIGKILL,
uploads the model directory (when the user code had started) and reports ``Stopped`` (or ``Stopping``
then ``MaxRuntimeExceeded``). Any unexpected error becomes ``Failed`` with ``InternalServerError: ...``.
The process exits only after the final status and every output line were delivered (or the server said
the job is gone or refused the report), leaving ``<root>/result.json``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from trainforge.errors import TrainforgeError, ValidationError
from trainforge.runtime import checkpoints, toolkit, warm
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.runtime.builtin import algorithm_command, image_pythonpath
from trainforge.runtime.channels import StagedChannel, bindable_channel, link_channel, stage_channel
from trainforge.runtime.container import CATALOGUE_IMAGE_FILES, CATALOGUE_PYTHON
from trainforge.runtime.container_executor import ContainerExecutor, choose_container
from trainforge.runtime.distributed import rendezvous_env, torchrun_enabled, torchrun_launch
from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.failure import (
    DiskPhase,
    ErrorCapture,
    JobFailed,
    client_error,
    disk_full,
    execute_error_reason,
    failure_file_reason,
    internal_error,
    is_disk_full,
    is_disk_full_reason,
    mentions_disk_full,
    out_of_memory_reason,
    truncate,
)
from trainforge.runtime.forkserver import (
    ChildLimits,
    ForkedChild,
    ForkFailed,
    ForkTarget,
    WarmForks,
    ZygotePlan,
    ZygoteShape,
    announcement,
    fork_target,
)
from trainforge.runtime.hostnames import HOSTNAMES_DIR
from trainforge.runtime.hostparts import leader, merge_parts, upload_parts
from trainforge.runtime.launch import SupervisorConfig, SupervisorResult, read_config, write_result
from trainforge.runtime.layout import (
    CONTAINER_OPT_ML,
    JobPaths,
    build_tree,
    checkpoint_container_path,
    checkpoint_local_path,
    input_data_config,
    input_mode,
    resource_config,
)
from trainforge.runtime.limits import Limits, format_gib, select_limits
from trainforge.runtime.lineage import LineageRecorder, channel_manifest, code_fingerprint, environment_lineage
from trainforge.runtime.objects import code_storage_environment, job_object_store
from trainforge.runtime.packaging import publish_artifacts
from trainforge.runtime.process import ChildProcess
from trainforge.runtime.publish import publish_tree
from trainforge.runtime.reporter import Reporter, spool_owner
from trainforge.runtime.sandbox import Probe, SandboxSpec, describe, nvidia_devices, probe, sandboxed
from trainforge.runtime.sourcecode import fetch_source
from trainforge.runtime.spool import SPOOL_DIR
from trainforge.runtime.stopping import StopReason, StopRequested, StopSignal
from trainforge.runtime.supervising import base_env, envs_root, exposed_paths, hidden_paths, prepared_limits, use_python
from trainforge.runtime.sysmetrics import SystemMetricsSampler, job_gpus
from trainforge.spec import contract
from trainforge.spec.algorithms import builtin_algorithm
from trainforge.spec.images import job_image
from trainforge.spec.job import CreateTrainingJobRequest, parse_create_request
from trainforge.spec.status import TERMINAL
from trainforge.spec.status import SecondaryStatus as S
from trainforge.storage import ObjectStore

log = logging.getLogger("trainforge.supervisor")

HEARTBEAT_INTERVAL = 2.0
POLL_INTERVAL = 0.1
PEER_POLL_INTERVAL = 0.5
PEER_WAIT_ON_STOP_S = 60.0  # beyond the stop grace period: how long the leader of a stopped job waits for peers
MSG_STARTING = "Preparing the instances for training"
MSG_DOWNLOADING = "Downloading input data"
MSG_TRAINING = "Training image download completed. Training in progress."
MSG_UPLOADING = "Uploading generated training model"
MSG_COMPLETED = "Training job completed"
MSG_FAILED = "Training job failed"
MSG_STOPPING = "Stopping the training job"
MSG_STOPPED = "Training job stopped"
MSG_MAX_RUNTIME_STOPPING = "Maximum runtime exceeded, stopping the training job"
MSG_MAX_RUNTIME = "Training job runtime exceeded MaxRuntimeInSeconds provided"
MSG_TRAFFIC_NOT_ENCRYPTED = (
    "[trainforge] EnableInterContainerTrafficEncryption is recorded, but the hosts of this job talk over the node "
    "network unencrypted (rendezvous, NCCL/gloo, XGBoost's tracker); keep multi-host jobs on a private network"
)
TERMINAL_PRIMARY = frozenset({"Completed", "Failed", "Stopped"})
TERMINAL_SECONDARY = frozenset(s.value for s in TERMINAL)
BETWEEN_ATTEMPTS = frozenset({S.INTERRUPTED.value, S.RESTARTING.value})  # the attempt this supervisor runs is over


@dataclass(frozen=True)
class Outcome:
    """The final status to report (None: report nothing, the server already ended the job)."""

    status: S | None
    message: str = ""
    failure_reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What the job runs: a toolkit entry point, a container entrypoint command, or a built-in algorithm."""

    entry_point: str | None
    container_command: list[str] | None
    algorithm: str | None = None


class Supervisor:
    """Runs one host of one job; :meth:`run` does everything and returns the process exit code."""

    def __init__(self, cfg: SupervisorConfig, root: Path, forks: WarmForks | None = None) -> None:
        self.cfg = cfg
        self._forks = forks  # a warm worker's forkserver, which this job may fork its code from
        self.zygote_plan: ZygotePlan | None = None  # how to start a forkserver like this job's code (see main)
        self.ran_code = False  # whether the job got as far as running its code (else zygote_plan says nothing)
        self.paths = JobPaths.at(root)
        self.stop = StopSignal()
        self.errors = ErrorCapture()
        self._server_status: str | None = None
        self._stopping_reported = False
        self._child_started = False
        self._model_stored = False  # whether this host published the job's model (see _model_report)
        self._sandbox: Probe = Probe(None, "not probed")
        self._container: ContainerExecutor | None = None  # the container executor, for a job that runs in one
        self._catalogue_fallback: str | None = None  # why a catalogue job does not run in its container image
        self._isolated = False
        self._limits: Limits | None = None
        self._bound: dict[str, Path] = {}  # channel -> store directory bound read-only in place of a copy
        self._checkpoint_sync: checkpoints.CheckpointSync | None = None  # uploads checkpoints while the code runs
        self._disk_phase = DiskPhase.SETUP  # what a full disk met now fails (see _disk_full_reason)
        self.lineage = LineageRecorder()  # what this host runs on, reported with Training and the final status
        locator = ServerLocator(cfg.server_url, cfg.server_file, ca_bundle_pem=cfg.ca_bundle_pem)
        self._client = AgentClient(locator=locator, token=cfg.agent_token, job_name=cfg.job_name, host=cfg.host)
        self._hb_client = AgentClient(locator=locator, token=cfg.agent_token, job_name=cfg.job_name, host=cfg.host)
        self.reporter = Reporter(
            self._client,
            spool_dir=self.paths.root / SPOOL_DIR,
            spool_owner=spool_owner(cfg.agent_token),
            mirror=self.paths.job_log,
            on_reply=self._server_state,
            on_gone=self._job_gone,
        )
        self._hb_done = threading.Event()
        self._hb_thread = threading.Thread(target=self._heartbeats, name="trainforge-heartbeat", daemon=True)
        self.sysmetrics = SystemMetricsSampler(
            client=AgentClient(locator=locator, token=cfg.agent_token, job_name=cfg.job_name, host=cfg.host),
            interval=cfg.system_metrics_interval_seconds,
            disk_path=self.paths.root,
        )

    # ----------------------------------------------------------------------------------- plumbing

    def say(self, message: str, stream: str = "stdout") -> None:
        """Emit a supervisor message as job log line(s)."""
        self.reporter.line(stream, message)

    def _status(self, status: S, message: str, failure_reason: str | None = None) -> None:
        self.reporter.status(status.value, message, failure_reason)

    def _server_state(self, body: Any) -> None:
        """React to a status or heartbeat reply: a stop request, or a job the server already ended."""
        if not isinstance(body, dict):
            return
        primary = body.get("TrainingJobStatus")
        if isinstance(primary, str):
            self._server_status = primary
        if body.get("stop_requested") or primary == "Stopping":
            reason = StopReason.USER
            if body.get("stop_reason") == S.MAX_RUNTIME_EXCEEDED.value:
                reason = StopReason.MAX_RUNTIME
            self.stop.request(reason)
        elif primary in TERMINAL_PRIMARY or body.get("SecondaryStatus") in BETWEEN_ATTEMPTS:
            self.stop.request(StopReason.SERVER)  # ended, or a host was lost and the job restarts: this attempt is over

    def _job_gone(self) -> None:
        self.stop.request(StopReason.SERVER)

    def _heartbeats(self) -> None:
        while True:
            reply = self._hb_client.heartbeat()
            if reply.ok:
                self._server_state(reply.body)
            elif reply.kind is ReplyKind.GONE or reply.status_code in (401, 409):
                # 401/409: this supervisor's token is of an earlier attempt (the job was relaunched after a lost host)
                self.stop.request(StopReason.SERVER)
            if self._hb_done.wait(HEARTBEAT_INTERVAL):
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.request(StopReason.USER)

    def _child_line(self, stream: str, line: str) -> None:
        self.errors.feed(stream, line)
        self.reporter.line(stream, line)

    # ----------------------------------------------------------------------------------- entry

    def run(self) -> int:
        """Run the job on this host and report its end; return 0 once everything was delivered."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.reporter.start()
        self._hb_thread.start()
        try:
            outcome = self._execute()
        except Exception as exc:
            log.exception("supervisor error")
            reason = truncate(f"InternalServerError: {type(exc).__name__}: {exc}")
            if is_disk_full(exc):
                reason = self._disk_full_reason(reason)
            outcome = Outcome(S.FAILED, MSG_FAILED, reason)
        self._close_checkpoint_sync()
        delivered = self._finish(outcome)
        write_result(
            self.paths.root,
            SupervisorResult(
                job_name=self.cfg.job_name,
                host=self.cfg.host,
                status=outcome.status.value if outcome.status else (self._server_status or "Unknown"),
                failure_reason=outcome.failure_reason,
                delivered=delivered,
            ),
        )
        log.info("done: %s delivered=%s", outcome.status, delivered)
        return 0

    def _finish(self, outcome: Outcome) -> bool:
        """Report the final status, follow up when the server moved on meanwhile, drain the queue."""
        delivered = False
        try:
            if outcome.status is not None:
                ticket = self.reporter.status(
                    outcome.status.value,
                    outcome.message,
                    outcome.failure_reason,
                    model_stored=self._model_report(outcome.status),
                    lineage=self._lineage_report(),
                )
                ticket.wait()
                delivered = ticket.delivered
                if ticket.outcome is ReplyKind.CONFLICT:
                    delivered = self._follow_up_stop()
        finally:
            self.sysmetrics.close()
            self.reporter.close()
            self._hb_done.set()
            self._client.close()
        return delivered

    def _follow_up_stop(self) -> bool:
        """After a refused final report: if the server is still ``Stopping`` (a stop raced with the end),
        report the stop's end so the job does not stay in ``Stopping``."""
        reply = self._hb_client.heartbeat()
        if not reply.ok or reply.field("TrainingJobStatus") != "Stopping":
            return False
        final = S.MAX_RUNTIME_EXCEEDED if self.stop.reason is StopReason.MAX_RUNTIME else S.STOPPED
        message = MSG_MAX_RUNTIME if final is S.MAX_RUNTIME_EXCEEDED else MSG_STOPPED
        ticket = self.reporter.status(
            final.value, message, model_stored=self._model_report(final), lineage=self._lineage_report()
        )
        ticket.wait()
        return ticket.delivered

    def _lineage_report(self) -> dict[str, Any] | None:
        """The lineage a final report carries: everything recorded (with the model's content hash once packaged;
        for a job that failed before Training, what was known by then), or None when nothing was."""
        return self.lineage.payload() if self.lineage.known else None

    def _model_report(self, final: S) -> bool | None:
        """What the final report says of the model: whether it was stored, for an end other than Completed
        (which always stores one), said by the host that publishes the model (the leader) only."""
        if final is S.COMPLETED or not self._is_leader:
            return None
        return self._model_stored

    # ----------------------------------------------------------------------------------- sequence

    def _execute(self) -> Outcome:
        try:
            spec = parse_create_request(self.cfg.spec)
        except ValidationError as exc:
            return Outcome(S.FAILED, MSG_FAILED, truncate(f"InternalServerError: stored job spec: {exc.message}"))
        self.stop.set_deadline(float(spec.StoppingCondition.MaxRuntimeInSeconds))
        self._isolated = bool(spec.EnableNetworkIsolation)
        choice, self._catalogue_fallback = choose_container(self.cfg, spec)
        if choice is not None:
            self._container = ContainerExecutor(
                choice,
                cfg=self.cfg,
                paths=self.paths,
                isolated=self._isolated,
                say=self.say,
                sink=self.reporter.line,
                output=self._child_line,
                stop=self.stop,
                lineage=self.lineage,
                sysmetrics=self.sysmetrics,
            )
            self._sandbox = Probe(None, "the code runs in a container")
        elif self.cfg.sandbox == "auto":
            self._sandbox = probe()
        else:
            self._sandbox = Probe(None, "TRAINFORGE_SANDBOX=off")
        self._limits = select_limits(
            memory_gib=self.cfg.memory_limit_gib,
            cpus=self.cfg.instance.effective_vcpus,
            job_name=self.cfg.job_name,
            host=self.cfg.host,
        )
        self.say(self._sandbox_line())
        if self._catalogue_fallback:
            self.say(self._catalogue_fallback)
        if self.cfg.instance.notice:
            self.say(self.cfg.instance.notice)
        if self.cfg.attempt > 1:
            self.say(f"[trainforge] attempt {self.cfg.attempt}: the job runs again after a host was lost")
        if spec.EnableInterContainerTrafficEncryption and len(self.cfg.hosts) > 1:
            self.say(MSG_TRAFFIC_NOT_ENCRYPTED)
        self._status(S.STARTING, MSG_STARTING)
        store: ObjectStore | None = None
        try:
            self.stop.check()
            if self.cfg.host not in self.cfg.hosts:
                raise internal_error(f"host {self.cfg.host} is not one of the job's hosts {self.cfg.hosts}")
            if self._isolated and not self._sandbox.available and self._container is None:
                raise client_error(
                    f"EnableNetworkIsolation needs the bubblewrap sandbox, which is not available here "
                    f"({self._sandbox.reason}); install bubblewrap on the server (Debian: apt-get install bubblewrap) "
                    "and leave TRAINFORGE_SANDBOX at auto, or run the job without network isolation"
                )
            build_tree(self.paths, spec, self.cfg.host, self.cfg.hosts, sandboxed=self.sees_opt_ml)
            plan = self._plan(spec)
            try:
                store = job_object_store(self.cfg)
            except JobFailed:
                raise  # the job's role cannot write its output path or checkpoints: a ClientError, before Training
            except TrainforgeError as exc:
                raise internal_error(f"cannot open the object store: {exc.message}") from None
            self._status(S.DOWNLOADING, MSG_DOWNLOADING)
            self._disk_phase = DiskPhase.DOWNLOAD
            self._stage_channels(store, spec)
            self._restore_checkpoints(store, spec)
            python = self._prepare_code(store, spec, plan)
            self.stop.check()
            cmd, env = self._command(spec, plan, python)
            self.reporter.status(S.TRAINING.value, MSG_TRAINING, lineage=self.lineage.payload())
            self._disk_phase = DiskPhase.SETUP
            self._start_checkpoint_sync(store, spec)
            rc, stopped, oom = self._run_child(spec, cmd, env, python)
            if stopped or self.stop.is_set():
                raise StopRequested(self.stop.reason or StopReason.USER)
            if rc == 0:
                return self._complete(store, spec)
            self._upload_best_effort(store, spec, together=False, empty_model=False)
            if oom:
                return Outcome(S.FAILED, MSG_FAILED, self._oom_reason())
            engine_reason = self._container.engine_error_reason(rc, self.errors) if self._container else None
            reason = failure_file_reason(self.paths.failure_file) or engine_reason
            reason = reason or execute_error_reason(rc, self.errors.message(), toolkit.format_command(cmd))
            return Outcome(S.FAILED, MSG_FAILED, reason)
        except StopRequested as stop:
            return self._stopped(stop.reason, store, spec)
        except JobFailed as failed:
            return Outcome(S.FAILED, MSG_FAILED, self._disk_full_reason(failed.reason))

    # ----------------------------------------------------------------------------------- sandbox

    @property
    def sandboxed(self) -> bool:
        """Whether the user code runs in the bubblewrap sandbox (decided at the start of the job)."""
        return self._sandbox.available

    def _sandbox_line(self) -> str:
        """The job log's first line: the executor (a container, the sandbox, or why there is none) and the limits."""
        limits = self._limits.describe() if self._limits else "no limits"
        if self._container is not None:
            return self._container.describe()
        if self.sandboxed:
            spec = SandboxSpec(opt_ml=self.paths.opt_ml, tmp=self.paths.sandbox_tmp, network=not self._isolated)
            return f"[trainforge] sandbox: {describe(spec)}; {limits}"
        if self.cfg.sandbox == "off":
            what = "off (TRAINFORGE_SANDBOX=off)"
        else:
            what = f"not available ({self._sandbox.reason})"
        return (
            f"[trainforge] sandbox: {what}; the code runs unsandboxed as the server's user, with its view of the "
            f"file system and network (install bubblewrap to isolate it); {limits}"
        )

    @property
    def sees_opt_ml(self) -> bool:
        """Whether the user code sees SageMaker's own ``/opt/ml`` (in the sandbox or a container)."""
        return self.sandboxed or self._container is not None

    @property
    def code_opt_ml(self) -> Path:
        """The ``opt/ml`` directory as the user code sees it: ``/opt/ml`` in the sandbox or a container, else the
        host's."""
        return Path(CONTAINER_OPT_ML) if self.sees_opt_ml else self.paths.opt_ml

    def _channel_dirs(self, spec: CreateTrainingJobRequest) -> dict[str, Path]:
        """Each channel's host directory, bound at its path in the sandbox or container: the store's own directory
        when bound read-only in place of a copy, else the staged copy."""
        return {
            ch.ChannelName: self._bound.get(ch.ChannelName, self.paths.channel(ch.ChannelName))
            for ch in spec.InputDataConfig or []
        }

    def _child_has_started(self) -> None:
        self._child_started = True

    def _sandbox_spec(self, spec: CreateTrainingJobRequest, python: str) -> SandboxSpec:
        channels = self._channel_dirs(spec)
        writable: dict[str, Path] = {}
        container_checkpoints = checkpoint_container_path(spec)
        if spec.CheckpointConfig is not None and container_checkpoints.startswith("/tmp/"):
            writable[container_checkpoints] = checkpoint_local_path(spec, self.paths)
        return SandboxSpec(
            opt_ml=self.paths.opt_ml,
            tmp=self.paths.sandbox_tmp,
            channels=channels,
            hidden=hidden_paths(self.cfg, self.paths.root),
            expose=exposed_paths(self.cfg, self.paths.root, python),
            writable=writable,
            network=not self._isolated,
            devices=nvidia_devices(),
        )

    def _host_path(self, value: str) -> str:
        """A ``/opt/ml/...`` path the job names (e.g. the ``code`` channel's ``sourcedir.tar.gz``) as the
        supervisor finds it on this host: under a bound channel's store directory, else under the job root."""
        for name, directory in self._bound.items():
            prefix = f"{CONTAINER_OPT_ML}/input/data/{name}"
            if value == prefix or value.startswith(prefix + "/"):
                return str(directory) + value[len(prefix) :]
        return self.paths.map_container_path(value)

    def _oom_reason(self) -> str:
        limits = self._limits
        if self._container is not None and self.cfg.memory_limit_gib is not None:
            return out_of_memory_reason(
                f"the code used more than the {format_gib(int(self.cfg.memory_limit_gib * 2**30))} of "
                f"{self.cfg.instance.type} on this host; enforced by the container engine"
            )
        if limits is None or limits.memory_bytes is None:
            return out_of_memory_reason("the code ran out of memory")
        return out_of_memory_reason(
            f"the code used more than the {format_gib(limits.memory_bytes)} of {self.cfg.instance.type} on this "
            f"host; enforced by {limits.kind}"
        )

    def _plan(self, spec: CreateTrainingJobRequest) -> Plan:
        algo = spec.AlgorithmSpecification
        if self._container is not None and not self._container.catalogue:
            # the image decides what runs: `docker run <image> train`, or ContainerEntrypoint + ContainerArguments
            return Plan(None, [*(algo.ContainerEntrypoint or []), *(algo.ContainerArguments or [])] or ["train"])
        if algo.ContainerEntrypoint:
            command = [*algo.ContainerEntrypoint, *(algo.ContainerArguments or [])]
            if self.sees_opt_ml:
                return Plan(None, command)
            return Plan(None, [self.paths.map_container_path(part) for part in command])
        program = toolkit.decode_hyperparameters(spec.HyperParameters).get(toolkit.PROGRAM_HP)
        if isinstance(program, str) and program:
            return Plan(program, None)
        algorithm = builtin_algorithm(spec)
        if algorithm is not None:
            return Plan(None, None, algorithm)
        image = algo.TrainingImage or algo.AlgorithmName or "?"
        raise client_error(
            f"no entry point to run: image '{image}' has no built-in algorithm; "
            "pass entry_point (hyperparameter sagemaker_program) or "
            "AlgorithmSpecification.ContainerEntrypoint"
        )

    def _stage_channels(self, store: ObjectStore, spec: CreateTrainingJobRequest) -> None:
        hosts = sorted(self.cfg.hosts)
        for channel in spec.InputDataConfig or []:
            self.stop.check()
            mode = input_mode(spec, channel.InputMode)
            bound = None
            if self.sees_opt_ml:  # a sandbox or a container: the store's directory bound
                bound = bindable_channel(store, self.cfg.storage, channel, host_count=len(hosts), input_mode=mode)
            if bound is not None and bound.bound is not None and self._forks is not None and self._forks.sandboxed:
                link_channel(bound, self.paths.channel(bound.name))  # a forked job's channels cannot be binds
                self.say(f"Channel '{bound.name}': {bound.files} file(s), {bound.bytes} bytes, linked read-only")
                self._record_channel(store, bound)
                continue
            if bound is not None and bound.bound is not None:
                self._bound[bound.name] = bound.bound
                self.say(
                    f"Channel '{bound.name}': {bound.files} file(s), {bound.bytes} bytes, bound read-only (no copy)"
                )
                self._record_channel(store, bound)
                continue
            staged = stage_channel(
                store,
                channel,
                self.paths.channel(channel.ChannelName),
                host_index=hosts.index(self.cfg.host),
                host_count=len(hosts),
                input_mode=mode,
                should_stop=self.stop.is_set,
            )
            suffix = ", read-only" if self.sees_opt_ml else ""
            self.say(f"Channel '{staged.name}': {staged.files} file(s), {staged.bytes} bytes{suffix}")
            self._record_channel(store, staged)
        self.stop.check()

    def _record_channel(self, store: ObjectStore, staged: StagedChannel) -> None:
        """Record the channel's data manifest in the lineage; one that cannot be read is left out, with a line
        saying why (the job itself got its data)."""
        try:
            self.lineage.add_channel(staged.name, channel_manifest(store, staged.listed))
        except (TrainforgeError, OSError) as exc:
            why = exc.message if isinstance(exc, TrainforgeError) else str(exc)
            self.say(f"[trainforge] lineage: channel '{staged.name}' has no data manifest ({why})", "stderr")

    def _prepare_code(self, store: ObjectStore, spec: CreateTrainingJobRequest, plan: Plan) -> str:
        """Fetch the source, build or reuse the image's environment (with the code's requirements.txt or
        setup.py layered on it); return the job's python."""
        submit = toolkit.decode_hyperparameters(spec.HyperParameters).get(toolkit.SUBMIT_DIR_HP)
        code = self.paths.code
        if isinstance(submit, str) and submit:
            fetched = fetch_source(
                store,
                self._host_path(submit),
                code,
                self.paths.tmp,
                on_archive=lambda _where, archive: self.lineage.set_code(code_fingerprint(submit, archive)),
            )
            self.say(f"Source code: {fetched}")
        self.stop.check()
        if self._container is not None:
            self._container.pull()
            if not self._container.catalogue:
                return ""  # the image has its own interpreter; nothing is built on the host
        if plan.entry_point is None:
            return CATALOGUE_PYTHON if self._container is not None else self.environment_python(spec)
        kind = toolkit.entry_point_type(code, plan.entry_point)
        if kind is not toolkit.EntryPointType.PYTHON_PACKAGE:
            target = code / plan.entry_point
            if not target.is_file():
                raise client_error(f"entry point '{plan.entry_point}' was not found in the source code")
            if kind is toolkit.EntryPointType.COMMAND:
                target.chmod(target.stat().st_mode | 0o755)
        if self._container is not None:
            return CATALOGUE_PYTHON  # the build's venv; requirements.txt is installed inside (_catalogue_install)
        return self.environment_python(spec, code_dir=code, package=kind is toolkit.EntryPointType.PYTHON_PACKAGE)

    def environment_python(
        self, spec: CreateTrainingJobRequest, *, code_dir: Path | None = None, package: bool = False
    ) -> str:
        """The interpreter of the job's image environment, built or reused (``Downloading`` status); with
        ``code_dir``, its ``requirements.txt`` (or, with ``package``, the directory itself) layered on top."""
        algo = spec.AlgorithmSpecification
        try:
            image = job_image(algo.TrainingImage, algo.AlgorithmName)
        except ValidationError as exc:
            raise client_error(exc.message) from None
        self._disk_phase = DiskPhase.ENVIRONMENT
        python = prepare_environment(
            image,
            envs_root=envs_root(self.cfg, self.paths.root),
            server_python=self.cfg.python,
            env=base_env(),
            sink=self.reporter.line,
            on_status=lambda message: self._status(S.DOWNLOADING, message),
            stop=self.stop,
            reuse_server=self.cfg.env_reuse_server,
            code_dir=code_dir,
            job_venv=self.paths.venv,
            package=package,
            resolutions=self._client.environment_locks(),
        )
        self.lineage.set_environment(environment_lineage(str(python), image=image.name))
        return str(python)

    def _command(self, spec: CreateTrainingJobRequest, plan: Plan, python: str) -> tuple[list[str], dict[str, str]]:
        """The command to run and its complete environment; logs both like the toolkit."""
        data_config = input_data_config(spec)
        resources = resource_config(spec, self.cfg.host, self.cfg.hosts)
        train_env = toolkit.training_env(
            job_name=self.cfg.job_name,
            base_dir=self.code_opt_ml,
            hyperparameters=spec.HyperParameters,
            input_data_config=data_config,
            resource_config=resources,
            num_cpus=self.cfg.instance.effective_vcpus,
            num_gpus=len(self.cfg.gpu_ids) if self.cfg.gpu_ids is not None else self.cfg.instance.gpus,
            framework_module=(spec.Environment or {}).get("SAGEMAKER_TRAINING_MODULE"),
        )
        container = self._container
        env = base_env() if container is None else {}
        env.update(toolkit.env_vars(train_env))
        env.update(
            {
                "TRAINING_JOB_NAME": self.cfg.job_name,
                "TRAINING_JOB_ARN": contract.job_arn(self.cfg.region, self.cfg.account_id, self.cfg.job_name),
                "AWS_REGION": self.cfg.region,
                "SAGEMAKER_REGION": self.cfg.region,
                "CURRENT_HOST": self.cfg.host,
                "SAGEMAKER_JOB_NAME": self.cfg.job_name,
                "PYTHONUNBUFFERED": "1",
            }
        )
        # On S3 storage the code's AWS tools reach the job's object store, as a SageMaker job's reach S3.
        code_storage = code_storage_environment(self.cfg)
        env.update(code_storage.env)
        if code_storage.notice:
            self.say(code_storage.notice)
        if self.cfg.gpu_ids is not None and container is None:  # a container sees its GPUs as 0..n-1 (--gpus)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in self.cfg.gpu_ids)
        rendezvous = rendezvous_env(
            list(train_env["hosts"]), self.cfg.host, self.cfg.host_addresses, self.cfg.master_port
        )
        env.update(rendezvous)
        existing = env.get("PYTHONPATH")
        image_paths = image_pythonpath(spec, plan.algorithm)
        if container is not None:  # the image's copy of trainforge's helper modules; --add-host names the hosts
            image_paths = [CATALOGUE_IMAGE_FILES for _ in image_paths[:1]]
        elif rendezvous:
            image_paths.insert(0, str(HOSTNAMES_DIR))
        code_dir = self.code_opt_ml / "code"
        if container is None or container.catalogue:
            env["PYTHONPATH"] = os.pathsep.join([str(code_dir), *image_paths, *([existing] if existing else [])])
        if self.sandboxed:
            env["TMPDIR"] = "/tmp"
        if container is None:
            use_python(env, python)
        if self.cfg.remote_function_key:
            env["TRAINFORGE_REMOTE_FUNCTION_KEY"] = self.cfg.remote_function_key
        env.update(spec.Environment or {})
        if plan.container_command is not None:
            cmd = plan.container_command
        elif plan.algorithm is not None:
            cmd = algorithm_command(python, plan.algorithm)
        else:
            assert plan.entry_point is not None
            kind = toolkit.entry_point_type(self.paths.code, plan.entry_point)
            args = toolkit.to_cmd_args(train_env["hyperparameters"])
            if torchrun_enabled(train_env["additional_framework_parameters"]):
                launch = torchrun_launch(
                    train_env, master_port=self.cfg.master_port, master_addr=rendezvous.get("MASTER_ADDR")
                )
                env.update(launch.env())
                cmd = launch.command(python, kind, plan.entry_point, args)
            else:
                cmd = toolkit.entry_point_command(kind, plan.entry_point, args, python)
        if container is not None and container.catalogue:
            cmd = container.catalogue_install(plan.entry_point, cmd)
        self.say("Training Env:\n\n" + json.dumps(train_env, indent=4, sort_keys=True) + "\n")
        self.say("Invoking script with the following command:\n\n" + toolkit.format_command(cmd) + "\n")
        return cmd, env

    def _limited(self, cmd: list[str]) -> list[str]:
        """``cmd`` behind the limits' wrapper; a cgroup the kernel refuses falls back to rlimits, said in the log."""
        if self._limits is None:
            return cmd
        self._limits = prepared_limits(self._limits, self.say)
        return self._limits.wrap(cmd)

    def _run_child(
        self, spec: CreateTrainingJobRequest, cmd: list[str], env: dict[str, str], python: str
    ) -> tuple[int, bool, bool]:
        """Run the user's command (sandboxed when it can be, always under the limits) to its end or a stop;
        return ``(exit code, stopped, killed for memory)``."""
        if self._container is not None:
            return self._container.run(
                spec,
                cmd,
                env,
                channels=self._channel_dirs(spec),
                on_start=self._child_has_started,
                on_stopping=self._report_stopping,
            )
        shape = self._fork_shape(spec, python)
        self.ran_code = True
        if shape is not None and self.cfg.warm_fork == "auto":
            self.zygote_plan = self._zygote_plan(shape)
        child: ChildProcess | ForkedChild | None = self._forked_child(spec, cmd, env, shape)
        try:
            if child is None:
                launch = cmd
                if self.sandboxed:
                    assert self._sandbox.bwrap is not None
                    launch = sandboxed(self._sandbox.bwrap, self._sandbox_spec(spec, python), cmd)
                launch = self._limited(launch)
                child = ChildProcess(
                    launch, cwd=self.paths.code, env=env, sink=self._child_line, spare_leader=self.sandboxed
                )
                child.start()
            self._child_started = True
        except OSError as exc:
            self.say(f"cannot start {cmd[0]}: {exc}", "stderr")
            if self._limits is not None:
                self._limits.close()
            raise JobFailed(
                execute_error_reason(127, f"{type(exc).__name__}: {exc}", toolkit.format_command(cmd))
            ) from None
        self.sysmetrics.start(child.pid or 0, job_gpus(env.get("CUDA_VISIBLE_DEVICES"), self.cfg.instance.gpus))
        stopped = False
        while True:
            rc = child.wait(POLL_INTERVAL)
            if rc is not None:
                break
            if self.stop.is_set():
                self._report_stopping(self.stop.reason or StopReason.USER)
                self.say(f"Stopping the job: SIGTERM, then SIGKILL after {self.cfg.stop_grace_seconds:g}s")
                rc = child.stop(self.cfg.stop_grace_seconds)
                stopped = True
                break
        child.finish()
        self.sysmetrics.close()  # every sample is delivered before the job's next status
        oom = False
        if self._limits is not None:
            oom = self._limits.oom_killed() or (
                self._limits.kind == "rlimits"
                and self._limits.memory_bytes is not None
                and rc != 0
                and "MemoryError" in self.errors.message()
            )
            self._limits.close()
        return rc, stopped, oom and not stopped

    # ----------------------------------------------------------------------------------- warm forks

    def _fork_shape(self, spec: CreateTrainingJobRequest, python: str) -> ZygoteShape | None:
        """The forkserver this job's code could fork from: its environment's python (not a per-job venv), the
        executor, the image's preload list; None for a container or a GPU job."""
        if self._container is not None or not python or Path(python).is_relative_to(self.paths.root):
            return None
        if self.cfg.gpu_ids or self.cfg.instance.gpus:
            return None
        algo = spec.AlgorithmSpecification
        try:
            preload = job_image(algo.TrainingImage, algo.AlgorithmName).preload
        except ValidationError:
            preload = ()
        return ZygoteShape(python, self.sandboxed, not self._isolated, preload)

    def _zygote_plan(self, shape: ZygoteShape) -> ZygotePlan:
        env = {k: v for k, v in base_env().items() if k != "PYTHONPATH"}
        use_python(env, shape.python)
        if not self.sandboxed:
            return ZygotePlan(shape, env)
        env["TMPDIR"] = "/tmp"
        root = self.paths.root
        template = SandboxSpec(
            opt_ml=self.paths.opt_ml,
            tmp=self.paths.sandbox_tmp,
            hidden=hidden_paths(self.cfg, root),
            expose=[p for p in exposed_paths(self.cfg, root, shape.python) if not p.is_relative_to(root)],
            network=shape.network,
        )
        return ZygotePlan(shape, env, self._sandbox.bwrap, template)

    def _forked_child(
        self, spec: CreateTrainingJobRequest, cmd: list[str], env: dict[str, str], shape: ZygoteShape | None
    ) -> ForkedChild | None:
        """On a warm worker: the job's code started as a fork of the worker's forkserver, or None (said in the
        job log, with why) when it starts a fresh interpreter."""
        forks = self._forks
        if forks is None:
            return None
        writable = bool(shape and self.sandboxed and self._sandbox_spec(spec, shape.python).writable)
        why = forks.refusal(shape, hosts=len(self.cfg.hosts), writable_binds=writable)
        if why is None and self.sandboxed and spec.CheckpointConfig is not None:
            # the checkpoint sync watches the job root's opt/ml, which lies in the forkserver's slot meanwhile
            why = "the job's checkpoints are synced from the job root while its code runs (CheckpointConfig)"
        target = fork_target(cmd, shape.python) if shape is not None else None
        why = why or (target if isinstance(target, str) else None)
        if why is not None or forks.zygote is None or not isinstance(target, ForkTarget):
            self.say(f"[trainforge] warm start: fresh interpreter: {why}")
            return None
        zygote = forks.zygote
        child = ForkedChild(
            zygote,
            target,
            env=env,
            cwd=f"{CONTAINER_OPT_ML}/code" if self.sandboxed else str(self.paths.code),
            sink=self._child_line,
            limits=self._child_limits(),
            job_opt_ml=self.paths.opt_ml if self.sandboxed else None,
        )
        try:
            child.start(announce=lambda: self.say(announcement(zygote)))
        except ForkFailed as exc:
            self.say(f"[trainforge] warm start: fresh interpreter: {exc.message}")
            return None
        return child

    def _child_limits(self) -> ChildLimits:
        """The limits a forked child takes: the job's cgroup(s) it is moved into, or the rlimit fallback."""
        if self._limits is None:
            return ChildLimits()
        self._limits = prepared_limits(self._limits, self.say)
        if self._limits.kind in ("cgroup v1", "cgroup v2"):
            return ChildLimits(cgroup_procs=[d / "cgroup.procs" for d in self._limits.dirs])
        if self._limits.kind == "rlimits":
            return ChildLimits(rlimit_as=self._limits.memory_bytes, cpus=list(self._limits.cpu_list))
        return ChildLimits()

    # ----------------------------------------------------------------------------------- endings

    def _report_stopping(self, reason: StopReason) -> None:
        if self._stopping_reported or reason is StopReason.SERVER:
            return
        self._stopping_reported = True
        if reason is StopReason.MAX_RUNTIME:
            self._status(S.STOPPING, MSG_MAX_RUNTIME_STOPPING)
        elif self._server_status != "Stopping":
            self._status(S.STOPPING, MSG_STOPPING)

    def _stopped(self, reason: StopReason, store: ObjectStore | None, spec: CreateTrainingJobRequest) -> Outcome:
        if reason is StopReason.SERVER:
            self.say("The server ended this job; stopping without a final report")
            return Outcome(None)
        self._report_stopping(reason)
        if store is not None and self._child_started:
            self._upload_best_effort(store, spec, empty_model=False)
        if reason is StopReason.MAX_RUNTIME:
            return Outcome(S.MAX_RUNTIME_EXCEEDED, MSG_MAX_RUNTIME)
        return Outcome(S.STOPPED, MSG_STOPPED)

    def _complete(self, store: ObjectStore, spec: CreateTrainingJobRequest) -> Outcome:
        self.paths.success_file.touch()
        self._status(S.UPLOADING, MSG_UPLOADING)
        self._upload(store, spec)
        return Outcome(S.COMPLETED, MSG_COMPLETED)

    def _restore_checkpoints(self, store: ObjectStore, spec: CreateTrainingJobRequest) -> None:
        if spec.CheckpointConfig is None:
            return
        uri = spec.CheckpointConfig.S3Uri
        local = checkpoint_local_path(spec, self.paths)
        try:
            count = checkpoints.restore(store, uri, local)
        except TrainforgeError as exc:
            if is_disk_full(exc):
                raise disk_full(DiskPhase.DOWNLOAD, f"restoring checkpoints from {uri}", local) from None
            raise client_error(f"CheckpointConfig.S3Uri {uri}: {exc.message}") from None
        self.say(f"Checkpoints: restored {count} file(s) from {uri}")

    def _start_checkpoint_sync(self, store: ObjectStore, spec: CreateTrainingJobRequest) -> None:
        """Upload new and changed checkpoints, and delete removed ones, while the code runs (reference §7.2)."""
        if spec.CheckpointConfig is None:
            return
        sync = checkpoints.CheckpointSync(
            store, checkpoint_local_path(spec, self.paths), spec.CheckpointConfig.S3Uri, say=self.say
        )
        self._checkpoint_sync = sync
        sync.start()

    def _save_checkpoints(self, store: ObjectStore, spec: CreateTrainingJobRequest) -> None:
        """The final checkpoint sync: every file that differs from the store uploaded, removed ones deleted."""
        if spec.CheckpointConfig is None:
            return
        uri = spec.CheckpointConfig.S3Uri
        sync = self._checkpoint_sync
        if sync is None or sync.finished:
            sync = checkpoints.CheckpointSync(store, checkpoint_local_path(spec, self.paths), uri, say=self.say)
        try:
            counts = sync.finish()
        except TrainforgeError as exc:
            raise internal_error(f"cannot save checkpoints to {uri}: {exc.message}") from None
        self.say(f"Checkpoints: synced to {uri} ({counts.uploaded} upload(s), {counts.deleted} deletion(s) in all)")

    def _close_checkpoint_sync(self) -> None:
        """At the very end: a final checkpoint sync, best effort, when no upload step did one (the server ended
        the job, or the supervisor met an unexpected error)."""
        sync = self._checkpoint_sync
        if sync is None or sync.finished:
            return
        try:
            counts = sync.finish()
            totals = f"{counts.uploaded} upload(s), {counts.deleted} deletion(s) in all"
            self.say(f"Checkpoints: synced to {sync.s3_uri} ({totals})")
        except Exception as exc:  # best effort: the job's end is reported regardless
            self.say(f"Checkpoints: the final sync to {sync.s3_uri} failed: {exc}", "stderr")

    def _disk_full_reason(self, reason: str) -> str:
        """``reason``, or when it says a disk is full, the clear full-disk reason of the phase the job was in."""
        if is_disk_full_reason(reason) or not mentions_disk_full(reason):
            return reason
        detail = reason.split(": ", 1)[-1][:300]
        return disk_full(self._disk_phase, f"{self._disk_phase.doing} ({detail})", self.paths.root).reason

    @property
    def _is_leader(self) -> bool:
        return self.cfg.host == leader(self.cfg.hosts)

    def _upload(
        self, store: ObjectStore, spec: CreateTrainingJobRequest, *, together: bool = True, empty_model: bool = True
    ) -> None:
        """Save checkpoints and publish the artifacts. In a multi-host job the hosts publish ``together`` (the
        leader merges the others' parts); a host whose code failed does not wait for the others: the leader then
        publishes its own directories, another host nothing. ``empty_model=False`` (a Failed or Stopped job)
        publishes no model when the model directory is empty."""
        self._disk_phase = DiskPhase.UPLOAD
        self._save_checkpoints(store, spec)
        output = spec.OutputDataConfig
        if len(self.cfg.hosts) > 1:
            if not self._is_leader:
                if together:
                    self._upload_parts(store, output.S3OutputPath)
                return
            if together:
                self._merge_peers(store, output.S3OutputPath)
        try:
            artifacts = publish_artifacts(
                store,
                output_path=output.S3OutputPath,
                job_name=self.cfg.job_name,
                model_dir=self.paths.model,
                output_data_dir=self.paths.output_data,
                tmp_dir=self.paths.tmp,
                compressed=output.CompressionType != "NONE",
                empty_model=empty_model,
            )
        except JobFailed:
            raise  # a full disk, with its own reason
        except ValidationError as exc:
            raise client_error(f"cannot upload artifacts to {output.S3OutputPath}: {exc.message}") from None
        except TrainforgeError as exc:
            raise internal_error(f"cannot upload artifacts to {output.S3OutputPath}: {exc.message}") from None
        except OSError as exc:
            raise internal_error(f"cannot package artifacts: {exc}") from None
        self._model_stored = any(artifact.kind == "model" for artifact in artifacts)
        for artifact in artifacts:
            if artifact.kind == "model" and artifact.content_sha256 is not None:
                self.lineage.set_model_content(artifact.content_sha256)
        if not self._model_stored:
            self.say("The model directory is empty: no model is stored for this job")
        for artifact in artifacts:
            self.say(f"Uploaded {artifact.uri} ({artifact.entries} entries)")
        try:
            remote = publish_tree(store, self.paths.root / contract.REMOTE_FUNCTION_OUTPUT_DIR, output.S3OutputPath)
        except TrainforgeError as exc:
            raise internal_error(f"cannot publish remote-function output: {exc.message}") from None
        for uri in remote:
            self.say(f"Uploaded {uri}")

    def _upload_parts(self, store: ObjectStore, output_path: str) -> None:
        """A host other than the leader hands its model and output data to the leader through the store."""
        try:
            uris = upload_parts(
                store,
                output_path=output_path,
                job_name=self.cfg.job_name,
                host=self.cfg.host,
                model_dir=self.paths.model,
                output_data_dir=self.paths.output_data,
                tmp_dir=self.paths.tmp,
            )
        except JobFailed:
            raise  # a full disk, with its own reason
        except TrainforgeError as exc:
            raise internal_error(f"cannot upload this host's artifacts to {output_path}: {exc.message}") from None
        except OSError as exc:
            raise internal_error(f"cannot package this host's artifacts: {exc}") from None
        self.say(f"Handed this host's model and output data to {leader(self.cfg.hosts)} ({len(uris)} parts)")

    def _merge_peers(self, store: ObjectStore, output_path: str) -> None:
        """The leader waits until every other host has ended, then merges their parts into its directories."""
        peers = [h for h in self.cfg.hosts if h != self.cfg.host]
        self.say(f"Waiting for {', '.join(peers)} to finish before packaging the job's artifacts")
        self._wait_for_peers(peers)
        if self.stop.reason is StopReason.SERVER or self._server_status in TERMINAL_PRIMARY:
            raise StopRequested(StopReason.SERVER)  # the job ended without us (e.g. a peer failed or vanished)
        try:
            merged = merge_parts(
                store,
                output_path=output_path,
                job_name=self.cfg.job_name,
                peers=peers,
                model_dir=self.paths.model,
                output_data_dir=self.paths.output_data,
                tmp_dir=self.paths.tmp,
            )
        except JobFailed:
            raise  # an unsafe part or a full disk, with its own reason
        except TrainforgeError as exc:
            raise internal_error(f"cannot merge the hosts' artifacts: {exc.message}") from None
        self.say(f"Merged the model and output data of {', '.join([self.cfg.host, *merged])} (later hosts' files win)")

    def _wait_for_peers(self, peers: list[str]) -> None:
        """Until every peer reported a final status of its own, the server ended the job (a peer failed or
        vanished), or (on a stop) a deadline."""
        deadline = None
        while True:
            if self.stop.is_set() and deadline is None:
                deadline = time.monotonic() + self.cfg.stop_grace_seconds + PEER_WAIT_ON_STOP_S
            if self.stop.reason is StopReason.SERVER or (deadline is not None and time.monotonic() > deadline):
                return
            if self._server_status in TERMINAL_PRIMARY:
                return
            reply = self._hb_client.heartbeat()
            if reply.ok:
                self._server_state(reply.body)
                states = reply.field("hosts") or {}
                if all(states.get(p) in TERMINAL_SECONDARY for p in peers):
                    return
            elif reply.kind is ReplyKind.GONE:
                self.stop.request(StopReason.SERVER)
            time.sleep(PEER_POLL_INTERVAL)

    def _upload_best_effort(
        self, store: ObjectStore, spec: CreateTrainingJobRequest, *, together: bool = True, empty_model: bool = True
    ) -> None:
        try:
            self._upload(store, spec, together=together, empty_model=empty_model)
        except JobFailed as exc:
            self.say(f"Could not upload the model directory: {exc.reason}", "stderr")
        except StopRequested:
            self.say("The job ended on another host meanwhile; this host's artifacts are not published", "stderr")


def main(argv: list[str] | None = None) -> int:
    """``python -m trainforge.runtime.supervisor [--resume] <root>/supervisor.json``.

    With ``--resume`` it takes over from a dead supervisor of the same launch (:func:`resume`)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise here
    resuming = bool(args) and args[0] == "--resume"
    if resuming:
        args = args[1:]
    if len(args) != 1:
        print("usage: python -m trainforge.runtime.supervisor [--resume] <root>/supervisor.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        cfg = read_config(path)
    except ValidationError as exc:
        log.error("%s", exc.message)
        return 2
    if cfg.kind != "training":
        from trainforge.runtime.serving.supervisor import run_serving

        return run_serving(cfg, path.resolve().parent)
    if resuming:
        from trainforge.runtime.resume import resume

        return resume(cfg, path.resolve().parent)
    supervisor = Supervisor(cfg, path.resolve().parent)
    rc = supervisor.run()
    if cfg.warm_dir and warm.keep_alive_seconds(cfg.spec) > 0:
        forks = WarmForks(Path(cfg.warm_dir), enabled=cfg.warm_fork == "auto")
        forks.after_job(supervisor.zygote_plan)
        try:
            warm.serve(Path(cfg.warm_dir), cfg.spec, lambda config: _run_handed_over(config, forks))
        finally:
            forks.close()
    return rc


def _run_handed_over(config_path: Path, forks: WarmForks) -> dict[str, Any] | None:
    """Run one job handed to this warm worker (forking its code from the worker's forkserver where it can); its
    spec, so the worker knows how long to stay warm next."""
    try:
        cfg = read_config(config_path)
    except ValidationError as exc:
        log.error("%s", exc.message)
        return None
    supervisor = Supervisor(cfg, config_path.resolve().parent, forks=forks)
    supervisor.say(f"[trainforge] running on a warm worker (pid {os.getpid()}) kept alive by an earlier job")
    supervisor.run()
    if supervisor.ran_code:  # a job that failed before its code ran says nothing about the forkserver: kept
        forks.after_job(supervisor.zygote_plan)
    return cfg.spec


if __name__ == "__main__":
    sys.exit(main())
