"""The serving supervisor: runs one instance of an endpoint or of a batch transform job (reference §7.3).

Started like a training host's supervisor (``python -m trainforge.runtime.supervisor <root>/supervisor.json`` with
:attr:`SupervisorConfig.kind` ``endpoint`` or ``transform``; ``spec`` is a :class:`ServingLaunch`), it reports
through ``/v1/agent/endpoints/<Name>/...`` or ``/v1/agent/transform-jobs/<Name>/...`` with the same spool-backed
:class:`Reporter` as training. In order:

1. ``Pending`` (endpoint) / ``InProgress`` (transform); the log's first line says what runs where (sandbox, limits).
2. The model: ``ModelDataUrl`` fetched through the role-scoped, decrypting job store and unpacked read-only at
   ``<root>/opt/ml/model`` (:mod:`.model`); nothing there -> ``Failed`` ``ClientError: Could not find model data at
   <uri>``.
3. The code: ``/opt/ml/model/code`` of a repacked model, else an ``s3://`` ``SAGEMAKER_SUBMIT_DIRECTORY``
   (fetched to ``/opt/ml/code``); its ``requirements.txt`` layered on the image environment as for training.
4. The image environment of ``PrimaryContainer.Image`` (built or reused, :mod:`trainforge.runtime.envcache`).
5. The model server (``python -m trainforge_serving``, :mod:`.process`) on a free port, sandboxed where training
   would be (host network), under the instance type's limits, with the contract's environment.
6. ``/ping`` answering 200 within ``SAGEMAKER_STARTUP_TIMEOUT`` (600 s) -> endpoint ``InService`` with its
   ``address``; a server that exits first -> ``Failed`` with its last lines.
7. Endpoint: heartbeats until the endpoint is ``Deleting``, the server answers 404/401, or SIGTERM: the model
   server is stopped (SIGTERM, ``stop_grace_seconds``, SIGKILL) and ``Stopped`` reported. A model server that dies
   is ``Failed`` with its last lines (the scheduler relaunches the instance).
8. Transform: the batch driver (:mod:`.transform`) sends this host's share of the input through ``/invocations``
   and writes the ``.out`` files -> ``Completed``; a record the model rejects -> ``Failed``; a stop -> ``Stopped``.

It leaves ``<root>/result.json`` like the training supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pydantic

from trainforge.errors import TrainforgeError, ValidationError
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.distributed import free_port
from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.failure import JobFailed, client_error, internal_error, truncate
from trainforge.runtime.launch import SupervisorConfig, SupervisorResult, write_result
from trainforge.runtime.layout import CONTAINER_OPT_ML, JobPaths
from trainforge.runtime.limits import Limits, select_limits
from trainforge.runtime.objects import job_object_store
from trainforge.runtime.reporter import Reporter, spool_owner
from trainforge.runtime.sandbox import Probe, SandboxSpec, describe, probe
from trainforge.runtime.serving import transform
from trainforge.runtime.serving.model import fetch_model, make_writable
from trainforge.runtime.serving.process import SERVING_MODULE, ServingProcess, sandbox_command, sandbox_spec
from trainforge.runtime.serving.spec import AGENT_PREFIXES, ServingLaunch, serving_launch
from trainforge.runtime.sourcecode import fetch_source
from trainforge.runtime.spool import SPOOL_DIR
from trainforge.runtime.stopping import StopReason, StopRequested, StopSignal
from trainforge.runtime.supervising import base_env, envs_root, prepared_limits, use_python
from trainforge.spec.images import Image, resolve_image
from trainforge.storage import ObjectStore

log = logging.getLogger("trainforge.serving")

HEARTBEAT_INTERVAL = 2.0
WATCH_INTERVAL = 0.2
DEFAULT_STARTUP_TIMEOUT_S = 600.0
MODEL_CODE = f"{CONTAINER_OPT_ML}/model/code"
FRAMEWORK_OF_IMAGE = {"sklearn": "sklearn", "xgboost": "xgboost", "pytorch": "pytorch"}
STATUSES = {
    "endpoint": {"start": "Pending", "ready": "InService", "failed": "Failed", "stopped": "Stopped"},
    "transform": {"start": "InProgress", "ready": "InProgress", "failed": "Failed", "stopped": "Stopped"},
}
TRANSFORM_ENDED = frozenset({"Completed", "Failed", "Stopped"})


class ServingAgentClient(AgentClient):
    """An :class:`AgentClient` whose status reports carry the instance's ``address`` (set once it serves)."""

    address: str | None = None

    def status_body(self, status: str, message: str, failure_reason: str | None) -> dict[str, Any]:
        """The status body of the serving agent API: ``address`` with ``InService``, else null."""
        body = super().status_body(status, message, failure_reason)
        body["address"] = self.address if status == "InService" else None
        return body


@dataclass(frozen=True)
class Outcome:
    """The final status to report (None: report nothing, the server has moved on)."""

    status: str | None
    message: str = ""
    failure_reason: str | None = None


@dataclass(frozen=True)
class Code:
    """Where the inference code is: on this host and as the model server sees it (None: no code)."""

    host: Path | None
    container: str | None


def framework_for(image: Image, environment: dict[str, str]) -> str:
    """The ``--framework`` of the model server: the built-in XGBoost algorithm without ``SAGEMAKER_PROGRAM`` on an
    XGBoost image, else the image's framework (``generic`` for the Python images)."""
    if not environment.get("SAGEMAKER_PROGRAM") and image.algorithm is not None:
        if image.algorithm == "xgboost":
            return "xgboost-algorithm"
        raise client_error(
            f"image {image.name}: serving the built-in {image.algorithm} algorithm is not supported; deploy it with "
            "an inference script (SAGEMAKER_PROGRAM) that defines model_fn and predict_fn"
        )
    return FRAMEWORK_OF_IMAGE.get(image.framework, "generic")


def primary_container(model: dict[str, Any]) -> dict[str, Any]:
    """The model's ``PrimaryContainer`` (or its first of ``Containers``)."""
    container = model.get("PrimaryContainer")
    if not isinstance(container, dict):
        containers = model.get("Containers") or [{}]
        container = containers[0] if isinstance(containers[0], dict) else {}
    return container


class ServingSupervisor:
    """One endpoint or transform instance; :meth:`run` does everything and returns the exit code."""

    def __init__(self, cfg: SupervisorConfig, root: Path) -> None:
        if cfg.kind not in STATUSES:
            raise ValueError(f"not a serving launch: kind {cfg.kind!r}")
        self.cfg = cfg
        self.kind = cfg.kind
        self.paths = JobPaths.at(root)
        self.names = STATUSES[cfg.kind]
        self.stop = StopSignal()
        self.name = str(cfg.spec.get("Name") or cfg.job_name.split(".", 1)[-1])
        self.server_status: str | None = None
        self._sandbox: Probe = Probe(None, "not probed")
        self._limits: Limits | None = None
        self._process: ServingProcess | None = None
        locator = ServerLocator(cfg.server_url, cfg.server_file, ca_bundle_pem=cfg.ca_bundle_pem)
        prefix = AGENT_PREFIXES[cfg.kind]
        common: dict[str, Any] = {"locator": locator, "token": cfg.agent_token, "job_name": self.name, "host": cfg.host}
        self.client = ServingAgentClient(prefix=prefix, **common)
        self._hb_client = AgentClient(prefix=prefix, **common)
        self.reporter = Reporter(
            self.client,
            spool_dir=self.paths.root / SPOOL_DIR,
            spool_owner=spool_owner(cfg.agent_token),
            mirror=self.paths.job_log,
            on_reply=self._server_state,
            on_gone=self._gone,
        )
        self._hb_done = threading.Event()
        self._hb_thread = threading.Thread(target=self._heartbeats, name="trainforge-heartbeat", daemon=True)

    # ----------------------------------------------------------------------------------- plumbing

    def say(self, message: str, stream: str = "stdout") -> None:
        """A supervisor line in the instance's log."""
        self.reporter.line(stream, message)

    def _status(self, status: str, message: str = "", failure_reason: str | None = None) -> None:
        self.reporter.status(status, message, failure_reason)

    def _server_state(self, body: Any) -> None:
        """React to a status or heartbeat reply (see the module doc)."""
        if not isinstance(body, dict):
            return
        if self.kind == "endpoint":
            status = body.get("EndpointStatus")
            self.server_status = status if isinstance(status, str) else self.server_status
            if status == "Deleting" or body.get("stop_requested"):
                self.stop.request(StopReason.USER)
            return
        status = body.get("TransformJobStatus")
        self.server_status = status if isinstance(status, str) else self.server_status
        if body.get("stop_requested") or status == "Stopping":
            self.stop.request(StopReason.USER)
        elif status in TRANSFORM_ENDED:
            self.stop.request(StopReason.SERVER)

    def _gone(self) -> None:
        self.stop.request(StopReason.SERVER)

    def _heartbeats(self) -> None:
        while not self._hb_done.wait(HEARTBEAT_INTERVAL):
            reply = self._hb_client.heartbeat()
            if reply.ok:
                self._server_state(reply.body)
            elif reply.kind is ReplyKind.GONE or reply.status_code in (401, 409):
                self.stop.request(StopReason.USER if self.kind == "endpoint" else StopReason.SERVER)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.request(StopReason.USER)

    # ----------------------------------------------------------------------------------- entry

    def run(self) -> int:
        """Serve (or transform) until the end; report it; leave ``result.json``; return 0."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.reporter.start()
        self._hb_thread.start()
        try:
            outcome = self._execute()
        except Exception as exc:
            log.exception("serving supervisor error")
            outcome = Outcome(self.names["failed"], "", truncate(f"InternalServerError: {type(exc).__name__}: {exc}"))
        finally:
            self._stop_process()
            if self._limits is not None:
                self._limits.close()
            make_writable(self.paths.model)
        delivered = False
        try:
            if outcome.status is not None:
                ticket = self.reporter.status(outcome.status, outcome.message, outcome.failure_reason)
                ticket.wait()
                delivered = ticket.delivered
        finally:
            self.reporter.close()
            self._hb_done.set()
            self.client.close()
        status = outcome.status or self.server_status or "Unknown"
        result = SupervisorResult(
            job_name=self.cfg.job_name,
            host=self.cfg.host,
            status=status,
            failure_reason=outcome.failure_reason,
            delivered=delivered,
        )
        write_result(self.paths.root, result)
        log.info("done: %s delivered=%s", status, delivered)
        return 0

    def _execute(self) -> Outcome:
        try:
            launch = serving_launch(self.cfg.spec)
        except pydantic.ValidationError as exc:
            reason = f"InternalServerError: stored serving launch: {exc.errors()[0].get('msg')}"
            return Outcome(self.names["failed"], "", truncate(reason))
        self._sandbox = probe() if self.cfg.sandbox == "auto" else Probe(None, "TRAINFORGE_SANDBOX=off")
        self._limits = select_limits(
            memory_gib=self.cfg.memory_limit_gib,
            cpus=self.cfg.instance.effective_vcpus,
            # one cgroup per supervisor process: launches of one endpoint overlap (an update, a relaunch, a deleted
            # endpoint still stopping while one of the same name starts, same attempt), and one's cleanup must not
            # remove another's cgroup
            job_name=f"{self.cfg.job_name}.attempt-{self.cfg.attempt}.{os.getpid()}",
            host=self.cfg.host,
        )
        self.say(self._first_line(launch))
        if self.cfg.instance.notice:
            self.say(self.cfg.instance.notice)
        self._status(self.names["start"], "Preparing the instance")
        try:
            return self._serve(launch)
        except StopRequested as stop:
            if stop.reason is StopReason.SERVER:
                self.say("The server ended this instance; stopping without a final report")
                return Outcome(None)
            return Outcome(self.names["stopped"], "Stopped")
        except JobFailed as failed:
            return Outcome(self.names["failed"], "", failed.reason)

    def _first_line(self, launch: ServingLaunch) -> str:
        limits = self._limits.describe() if self._limits else "no limits"
        what = f"{self.kind} {self.name} ({self.cfg.host}"
        what += f", variant {launch.VariantName})" if launch.VariantName else ")"
        isolation = ""
        if launch.Model.get("EnableNetworkIsolation"):
            isolation = (
                "; EnableNetworkIsolation is recorded, but a model server must be reached on its port, so its "
                "network is not unshared"
            )
        if self._sandbox.available:
            shown = describe(SandboxSpec(opt_ml=self.paths.opt_ml, tmp=self.paths.sandbox_tmp, network=True))
            return f"[trainforge] serving {what}: sandbox {shown}, /opt/ml/model read-only; {limits}{isolation}"
        where = (
            "off (TRAINFORGE_SANDBOX=off)" if self.cfg.sandbox == "off" else f"not available ({self._sandbox.reason})"
        )
        return (
            f"[trainforge] serving {what}: sandbox {where}; the model server runs unsandboxed as the server's user "
            f"(model files read-only); {limits}{isolation}"
        )

    # ----------------------------------------------------------------------------------- sequence

    def _serve(self, launch: ServingLaunch) -> Outcome:
        container = primary_container(launch.Model)
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        if launch.Transform is not None:
            environment.update(transform_environment(launch.Transform))
        try:
            image = resolve_image(str(container.get("Image") or ""), field="PrimaryContainer.Image")
        except ValidationError as exc:
            raise client_error(exc.message) from None
        framework = framework_for(image, environment)
        try:
            store = job_object_store(self.cfg)
        except JobFailed:
            raise
        except TrainforgeError as exc:
            raise internal_error(f"cannot open the object store: {exc.message}") from None
        self.stop.check()
        self.say(fetch_model(store, str(container.get("ModelDataUrl") or ""), self.paths.model, self.paths.tmp))
        code = self._code(store, environment)
        self.stop.check()
        python = self._environment(image, code)
        self.stop.check()
        bind = self.cfg.host_addresses.get(self.cfg.host, "127.0.0.1")
        port = free_port(bind)
        address = f"http://{bind}:{port}"
        cmd, env = self._command(python, framework, environment, code, bind, port)
        process = self._start(cmd, env, python, code)
        timeout = _seconds(environment.get("SAGEMAKER_STARTUP_TIMEOUT"), DEFAULT_STARTUP_TIMEOUT_S)
        try:
            rc = process.wait_ready(address, timeout, self.stop.is_set)
        except TimeoutError as exc:
            raise client_error(
                f"{self._health_failure(launch)}: {exc}; its last lines:\n{process.last_lines()}"
            ) from None
        if rc is not None:
            raise client_error(
                f"{self._health_failure(launch)}: the model server exited with code {rc}; its last lines:\n"
                f"{process.last_lines()}"
            )
        self.stop.check()
        if self.kind == "transform":
            return self._transform(launch, store, address)
        self.client.address = address
        self.say(f"[trainforge] model server ready at {address} (framework {framework})")
        self._status(self.names["ready"], "The model server answers /ping")
        return self._watch(process)

    def _health_failure(self, launch: ServingLaunch) -> str:
        variant = launch.VariantName or "AllTraffic"
        if self.kind == "endpoint":
            return f"The primary container for production variant {variant} did not pass the ping health check"
        return "The model server of the transform job did not pass the ping health check"

    def _watch(self, process: ServingProcess) -> Outcome:
        """Endpoint: until a stop (-> Stopped) or the model server's death (-> Failed)."""
        while True:
            rc = process.wait(WATCH_INTERVAL)
            if rc is not None:
                self.client.address = None
                reason = f"ClientError: the model server exited with code {rc}; its last lines:\n{process.last_lines()}"
                return Outcome(self.names["failed"], "", truncate(reason))
            self.stop.check()

    def _transform(self, launch: ServingLaunch, store: ObjectStore, address: str) -> Outcome:
        if launch.Transform is None:
            raise internal_error("the transform launch has no Transform request")
        hosts = sorted(self.cfg.hosts, key=_host_number)
        driver = transform.TransformDriver(
            store=store,
            request=launch.Transform,
            address=address,
            host_index=hosts.index(self.cfg.host) if self.cfg.host in hosts else 0,
            host_count=len(hosts),
            say=self.say,
            should_stop=self.stop.is_set,
        )
        try:
            summary = driver.run()
        except transform.TransformFailed as failed:
            return Outcome(self.names["failed"], "", truncate(failed.reason))
        self.stop.check()
        self.say(summary)
        return Outcome("Completed", "Transform completed")

    # ----------------------------------------------------------------------------------- preparing

    def _code(self, store: ObjectStore, environment: dict[str, str]) -> Code:
        """Where the inference code is (see the module doc); a missing entry point is a ``ClientError``."""
        program = environment.get("SAGEMAKER_PROGRAM")
        submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY") or ""
        model_code = self.paths.model / "code"
        code = Code(None, None)
        if submit.startswith("s3://"):
            self.paths.code.mkdir(parents=True, exist_ok=True)
            self.paths.tmp.mkdir(parents=True, exist_ok=True)
            self.say(f"Source code: {fetch_source(store, submit, self.paths.code, self.paths.tmp)}")
            code = Code(self.paths.code, f"{CONTAINER_OPT_ML}/code")
        elif model_code.is_dir():
            code = Code(model_code, MODEL_CODE)
        elif submit and submit not in (MODEL_CODE, MODEL_CODE + "/"):
            self.paths.code.mkdir(parents=True, exist_ok=True)
            self.say(f"Source code: {fetch_source(store, submit, self.paths.code, self.paths.tmp)}")
            code = Code(self.paths.code, f"{CONTAINER_OPT_ML}/code")
        if program:
            name = program[:-3] if program.endswith(".py") else program
            found = code.host is not None and (
                (code.host / f"{name}.py").is_file() or (code.host / name).is_dir() or (code.host / program).is_file()
            )
            if not found:
                where = submit or "the model's code/ directory (/opt/ml/model/code)"
                raise client_error(f"SAGEMAKER_PROGRAM {program!r} was not found in {where}")
        return code

    def _environment(self, image: Image, code: Code) -> str:
        python = prepare_environment(
            image,
            envs_root=envs_root(self.cfg, self.paths.root),
            server_python=self.cfg.python,
            env=base_env(),
            sink=self.reporter.line,
            on_status=lambda message: self.say(f"[trainforge] {message}"),
            stop=self.stop,
            reuse_server=self.cfg.env_reuse_server,
            code_dir=code.host,
            job_venv=self.paths.venv,
        )
        return str(python)

    @property
    def _model_dir_seen(self) -> str:
        return f"{CONTAINER_OPT_ML}/model" if self._sandbox.available else str(self.paths.model)

    def _seen(self, code: Code) -> str | None:
        """The code directory as the model server sees it."""
        if code.host is None or code.container is None:
            return None
        return code.container if self._sandbox.available else str(code.host)

    def _command(
        self, python: str, framework: str, environment: dict[str, str], code: Code, bind: str, port: int
    ) -> tuple[list[str], dict[str, str]]:
        env = base_env()
        env.update(environment)
        code_dir = self._seen(code)
        existing = env.get("PYTHONPATH")
        env.update(
            {
                "SM_MODEL_DIR": self._model_dir_seen,
                "SAGEMAKER_REGION": self.cfg.region,
                "AWS_REGION": self.cfg.region,
                "SAGEMAKER_CONTAINER_LOG_LEVEL": environment.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "20"),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    [*([code_dir] if code_dir else []), str(IMAGE_FILES), *([existing] if existing else [])]
                ),
            }
        )
        if code_dir:
            env["SAGEMAKER_SUBMIT_DIRECTORY"] = code_dir
        else:
            env.pop("SAGEMAKER_SUBMIT_DIRECTORY", None)
        if self._sandbox.available:
            env["TMPDIR"] = "/tmp"
        use_python(env, python)
        if self.cfg.gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in self.cfg.gpu_ids)
        cmd = [python, "-m", SERVING_MODULE, "--framework", framework, "--host", bind, "--port", str(port)]
        self.say(f"Starting the model server: {' '.join(cmd)}")
        return cmd, env

    def _start(self, cmd: list[str], env: dict[str, str], python: str, code: Code) -> ServingProcess:
        launch = cmd
        cwd = code.host or self.paths.model
        if self._sandbox.available:
            assert self._sandbox.bwrap is not None
            spec = sandbox_spec(self.cfg, self.paths.root, self.paths.opt_ml, python)
            (self.paths.opt_ml / "model").mkdir(parents=True, exist_ok=True)
            launch = sandbox_command(
                self._sandbox.bwrap, spec, self.paths.model, cmd, self._seen(code) or f"{CONTAINER_OPT_ML}/model"
            )
        launch = self._limited(launch)
        process = ServingProcess(launch, cwd=cwd, env=env, sink=self.reporter.line, sandboxed=self._sandbox.available)
        try:
            process.start()
        except OSError as exc:
            raise client_error(f"cannot start the model server {cmd[0]}: {exc}") from None
        self._process = process
        return process

    def _limited(self, cmd: list[str]) -> list[str]:
        if self._limits is None:
            return cmd
        self._limits = prepared_limits(self._limits, self.say)
        return self._limits.wrap(cmd)

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.child.poll() is None:
            self.say(f"Stopping the model server: SIGTERM, then SIGKILL after {self.cfg.stop_grace_seconds:g}s")
        process.stop(self.cfg.stop_grace_seconds)


def transform_environment(request: dict[str, Any]) -> dict[str, str]:
    """What a transform job adds to its model's environment, as SageMaker's batch transform does: the job's own
    ``Environment`` (it wins over the model's), ``SAGEMAKER_BATCH``, and the payload and concurrency limits the
    model server must accept (``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``)."""
    env = {str(k): str(v) for k, v in (request.get("Environment") or {}).items()}
    env["SAGEMAKER_BATCH"] = "true"
    payload = request.get("MaxPayloadInMB")
    # 0 asks for no per-request limit (records streamed whole): the model server then takes the API's 100 MB ceiling.
    env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(6 if payload is None else payload or 100)
    if request.get("MaxConcurrentTransforms"):
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(request["MaxConcurrentTransforms"])
    return env


def _seconds(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def _host_number(host: str) -> tuple[int, str]:
    tail = host.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 0, host)


def run_serving(cfg: SupervisorConfig, root: Path) -> int:
    """Run one endpoint or transform instance (``cfg.kind``) under ``root``; return the exit code (0 once its end
    was reported or the server was gone)."""
    return ServingSupervisor(cfg, root).run()
