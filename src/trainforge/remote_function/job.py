"""One remote-function call as a training job: build and submit it, follow it, and bring back its outcome."""

from __future__ import annotations

import inspect
import posixpath
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from trainforge.errors import NotFoundError, ServerUnavailableError, TrainforgeError, ValidationError
from trainforge.logs import LogPrinter
from trainforge.remote_function import checkpoint_location as checkpoint_module
from trainforge.remote_function import serialization as ser
from trainforge.remote_function.checkpoint_location import CheckpointLocation
from trainforge.remote_function.errors import (
    DeserializationError,
    RemoteFunctionError,
    RuntimeEnvironmentError,
    SerializationError,
)
from trainforge.remote_function.workspace import INVOKE_SCRIPT, CustomFileFilter, IgnoreFn, build_workspace
from trainforge.session import Session, get_execution_role
from trainforge.spec import images
from trainforge.spec.names import name_from_base
from trainforge.storage import parse_s3_uri, s3_join

DEFAULT_IMAGE = "trainforge/python:current"
CODE_CHANNEL = "code"
TERMINAL = ("Completed", "Failed", "Stopped")


def job_name_prefix_for(func: Callable[..., Any], prefix: str | None) -> str:
    """SageMaker's rule: the given prefix, else the function name with leading non-alphanumerics stripped and
    other characters outside ``[a-zA-Z0-9-]`` turned into ``-``."""
    base = str(prefix or getattr(func, "__name__", None) or "remote-function")
    base = re.sub(r"^[^a-zA-Z0-9]+", "", base)
    base = re.sub(r"[^a-zA-Z0-9-]", "-", base)
    return base or "remote-function"


@dataclass
class JobSettings:
    """What a ``@remote`` decorator or ``RemoteExecutor`` was configured with (SageMaker's parameters)."""

    dependencies: str | None = None
    pre_execution_commands: Sequence[str] | None = None
    pre_execution_script: str | None = None
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    image_uri: str | None = None
    include_local_workdir: bool = False
    custom_file_filter: IgnoreFn | CustomFileFilter | None = None
    instance_count: int = 1
    instance_type: str | None = None
    job_name_prefix: str | None = None
    keep_alive_period_in_seconds: int = 0
    max_retry_attempts: int = 1
    max_runtime_in_seconds: int = 86400
    role: str | None = None
    s3_root_uri: str | None = None
    tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None
    volume_size: int = 30
    use_torchrun: bool = False
    nproc_per_node: int | None = None
    s3_kms_key: str | None = None
    """Encrypts what the job writes (``OutputDataConfig.KmsKeyId``)."""
    volume_kms_key: str | None = None
    """``ResourceConfig.VolumeKmsKeyId``."""
    encrypt_inter_container_traffic: bool = False
    """``EnableInterContainerTrafficEncryption``."""
    enable_network_isolation: bool = False
    """``EnableNetworkIsolation``: the function runs without network; its code arrives as channel ``code``."""
    sagemaker_session: Session | None = None

    def validate(self) -> None:
        """Check parameters that need no server; :class:`ValidationError` names the parameter."""
        if self.instance_count < 1:
            raise ValidationError("instance_count: must be >= 1", field="instance_count")
        if self.instance_count > 1 and not self.use_torchrun:
            raise ValidationError(
                "instance_count: more than 1 instance needs use_torchrun=True", field="instance_count"
            )
        if self.max_retry_attempts < 1 or self.max_retry_attempts > 30:
            raise ValidationError("max_retry_attempts: must be between 1 and 30", field="max_retry_attempts")
        if self.keep_alive_period_in_seconds < 0 or self.keep_alive_period_in_seconds > 3600:
            raise ValidationError(
                "keep_alive_period_in_seconds: must be between 0 and 3600", field="keep_alive_period_in_seconds"
            )

    @property
    def session(self) -> Session:
        """The session to use (a default one is created on first use)."""
        if self.sagemaker_session is None:
            self.sagemaker_session = Session()
        return self.sagemaker_session


def bind_arguments(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` now if the call does not match the function's signature (as a local call would)."""
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, TypeError):
            raise TypeError(f"{getattr(func, '__name__', 'function')}(): {exc}") from None


def serialize_call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, bytes]:
    """Pickle the function and its arguments, naming the first argument that cannot be sent."""
    cloudpickle.register_pickle_by_value(checkpoint_module)
    try:
        fn_payload = ser.dumps(func, what=f"function {getattr(func, '__qualname__', func)!r}")
        names = _argument_names(func, args, kwargs)
        for name, value in names:
            ser.dumps(value, what=f"argument {name!r}")
        args_payload = ser.dumps((args, kwargs), what="arguments")
    finally:
        cloudpickle.unregister_pickle_by_value(checkpoint_module)
    return fn_payload, args_payload


def _argument_names(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
        return list(bound.arguments.items())
    except (TypeError, ValueError):
        return [(f"#{i}", a) for i, a in enumerate(args)] + list(kwargs.items())


def _checkpoint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    found = [a for a in (*args, *kwargs.values()) if isinstance(a, CheckpointLocation)]
    if len(found) > 1:
        raise ValidationError(
            "CheckpointLocation: pass at most one CheckpointLocation argument", field="CheckpointLocation"
        )
    if not found:
        return None
    parse_s3_uri(found[0].s3_uri, field="CheckpointLocation.s3_uri")
    return found[0].s3_uri


def _image_python(session: Session, image_uri: str) -> str:
    image = images.resolve_image(image_uri, field="image_uri")
    if image.uses_server_interpreter:
        return str(session.config.get("python_version") or "")
    return image.python or ""


def check_python(session: Session, image_uri: str) -> None:
    """Fail before anything is created when the job's Python cannot load this caller's pickles."""
    caller = f"{sys.version_info.major}.{sys.version_info.minor}"
    job = _image_python(session, image_uri)
    if job and job != caller:
        raise RuntimeEnvironmentError(
            f"image_uri: {image_uri} runs Python {job} but this caller runs Python {caller}; cloudpickled "
            f"functions only load in the same Python major.minor. Call from Python {job}, or pick an image with "
            f"Python {caller}."
        )


def _tags(tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None) -> list[dict[str, str]] | None:
    if not tags:
        return None
    if isinstance(tags, Mapping):
        return [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
    return [{"Key": str(t["Key"]), "Value": str(t.get("Value", ""))} for t in tags]


@dataclass
class RemoteJob:
    """A submitted remote-function job; ``s3_base`` is ``<s3_root_uri>/<job name>``."""

    session: Session
    job_name: str
    s3_base: str

    @classmethod
    def start(
        cls, settings: JobSettings, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> RemoteJob:
        """Serialize, upload and submit one call; nothing is created when the call cannot be sent."""
        settings.validate()
        bind_arguments(func, args, kwargs)
        fn_payload, args_payload = serialize_call(func, args, kwargs)
        checkpoint = _checkpoint(args, kwargs)
        session = settings.session
        image = settings.image_uri or DEFAULT_IMAGE
        check_python(session, image)
        root = settings.s3_root_uri or f"s3://{session.default_bucket()}"
        parse_s3_uri(root, field="s3_root_uri")
        name = name_from_base(job_name_prefix_for(func, settings.job_name_prefix))
        base = s3_join(root, name)
        store = session.object_store
        key = session.client.remote_function_key(name)
        qualname = getattr(func, "__qualname__", str(func))
        ser.upload(store, s3_join(base, "function"), key, fn_payload, function=qualname, source=_source_text(func))
        ser.upload(store, s3_join(base, "arguments"), key, args_payload)
        with tempfile.TemporaryDirectory(prefix="tf-remote-") as tmp:
            tarball = build_workspace(
                Path(tmp) / "sourcedir.tar.gz",
                include_local_workdir=settings.include_local_workdir,
                custom_file_filter=settings.custom_file_filter,
                dependencies=settings.dependencies,
                pre_execution_commands=settings.pre_execution_commands,
                pre_execution_script=settings.pre_execution_script,
                extra_requirements=_serializer_requirement(image),
            )
            source_uri = s3_join(base, "sm_rf_user_ws", "sourcedir.tar.gz")
            store.put_file(source_uri, tarball)
        request = _request(settings, name=name, base=base, image=image, source_uri=source_uri, checkpoint=checkpoint)
        session.create_training_job(request)
        return cls(session, name, base)

    def wait(self, *, timeout: float | None = None, logs: bool = True) -> dict[str, Any]:
        """Follow the job until it ends (printing its output when ``logs``); ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        printer = LogPrinter() if logs else None
        client = self.session.client
        if deadline is None:
            # The server's follow stream ends the moment the job does: no describe polling in between.
            for event in client.follow_logs(self.job_name):
                kind = event.get("type")
                if printer is None:
                    if kind == "end":
                        break
                elif kind == "log":
                    printer.log(str(event.get("message", "")), event.get("host"), event.get("attempt"))
                elif kind == "status":
                    printer.status(str(event.get("SecondaryStatus", "")), event.get("StatusMessage"), event.get("Time"))
                elif kind == "end":
                    break
        unreachable_since: float | None = None
        while True:
            try:
                description = client.describe_training_job(self.job_name)
                unreachable_since = None
            except ServerUnavailableError:
                # A server restart: the job carries on without it; keep asking as follow_logs does.
                now = time.monotonic()
                unreachable_since = now if unreachable_since is None else unreachable_since
                if now - unreachable_since >= client.reconnect_for_s:
                    raise
                description = {"TrainingJobStatus": "InProgress"}
                time.sleep(0.5)
            if description["TrainingJobStatus"] in TERMINAL:
                return description
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"remote function job {self.job_name} did not finish within {timeout} s")
            time.sleep(0.05)

    def result(self, description: Mapping[str, Any]) -> Any:
        """The function's return value, or raise what it raised (original type, remote traceback as a note)."""
        status = description["TrainingJobStatus"]
        store = self.session.object_store
        key = self.session.client.remote_function_key(self.job_name)
        if status == "Completed":
            payload, _ = ser.download(store, s3_join(self.s3_base, "results"), key)
            return ser.loads(payload, what=f"the result of {self.job_name}")
        if status == "Stopped":
            raise RemoteFunctionError(
                f"remote function job {self.job_name} was stopped ({description.get('SecondaryStatus')}) before it "
                "returned a result",
                details={"job_name": self.job_name},
            )
        reason = str(description.get("FailureReason") or "(no reason recorded)")
        try:
            payload, metadata = ser.download(store, s3_join(self.s3_base, "exception"), key)
        except NotFoundError:
            if "RuntimeEnvironmentError" in reason:
                raise RuntimeEnvironmentError(f"remote function job {self.job_name} failed: {reason}") from None
            raise RemoteFunctionError(
                f"remote function job {self.job_name} failed without returning: {reason}",
                details={"job_name": self.job_name, "failure_reason": reason},
            ) from None
        remote_tb = str(metadata.get("traceback", ""))
        try:
            exc = ser.loads(payload, what="the remote exception")
        except DeserializationError:
            exc = RemoteFunctionError(
                f"remote function job {self.job_name} raised {metadata.get('exception_type')}: "
                f"{metadata.get('message')} (that type cannot be imported here)"
            )
        if isinstance(exc, BaseException):
            exc.add_note(f"Remote traceback (training job {self.job_name}):\n{remote_tb}")
            raise exc
        raise RemoteFunctionError(f"remote function job {self.job_name} failed: {reason}")


def _source_text(func: Callable[..., Any]) -> str | None:
    """The text of the file defining ``func`` (at most 1 MiB), so remote tracebacks can show source lines."""
    try:
        lines, _ = inspect.findsource(func)
    except (OSError, TypeError):
        return None
    text = "".join(lines)
    return text if len(text) <= 1 << 20 else None


def _serializer_requirement(image: str) -> list[str]:
    """Images built from pins get the caller's cloudpickle, so payloads load; the server interpreter has it."""
    if images.resolve_image(image, field="image_uri").uses_server_interpreter:
        return []
    return [f"cloudpickle=={ser.serializer_version()}"]


def _request(
    settings: JobSettings, *, name: str, base: str, image: str, source_uri: str, checkpoint: str | None
) -> dict[str, Any]:
    session = settings.session
    role = settings.role or get_execution_role(session)

    def channel(channel_name: str, uri: str) -> dict[str, Any]:
        return {"ChannelName": channel_name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}

    channels = [
        channel("function", s3_join(base, "function") + "/"),
        channel("arguments", s3_join(base, "arguments") + "/"),
    ]
    submit_directory = source_uri
    if settings.enable_network_isolation:
        # As SageMaker delivers code to an isolated container: an input channel, not a download by the code.
        channels.append(channel(CODE_CHANNEL, source_uri))
        submit_directory = f"/opt/ml/input/data/{CODE_CHANNEL}/{posixpath.basename(source_uri)}"
    hyperparameters = {
        "sagemaker_program": f'"{INVOKE_SCRIPT}"',
        "sagemaker_submit_directory": f'"{submit_directory}"',
    }
    resource: dict[str, Any] = {
        "InstanceType": settings.instance_type or "local",
        "InstanceCount": settings.instance_count,
        "VolumeSizeInGB": settings.volume_size,
    }
    if settings.keep_alive_period_in_seconds:
        resource["KeepAlivePeriodInSeconds"] = settings.keep_alive_period_in_seconds
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": session.expand_role(role),
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": base},
        "ResourceConfig": resource,
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_in_seconds},
        "RetryStrategy": {"MaximumRetryAttempts": settings.max_retry_attempts},
        "Environment": {"AWS_DEFAULT_REGION": session.boto_region_name, **dict(settings.environment_variables)},
        "Tags": _tags(settings.tags) or [],
    }
    if not request["Tags"]:
        del request["Tags"]
    if checkpoint:
        request["CheckpointConfig"] = {"S3Uri": checkpoint, "LocalPath": "/opt/ml/checkpoints/"}
    if settings.s3_kms_key:
        request["OutputDataConfig"]["KmsKeyId"] = settings.s3_kms_key
    if settings.volume_kms_key:
        resource["VolumeKmsKeyId"] = settings.volume_kms_key
    if settings.encrypt_inter_container_traffic:
        request["EnableInterContainerTrafficEncryption"] = True
    if settings.enable_network_isolation:
        request["EnableNetworkIsolation"] = True
    return request


def describe_or_raise(session: Session, job_name: str) -> dict[str, Any]:
    """Describe a job; a clear error when it does not exist."""
    try:
        return session.client.describe_training_job(job_name)
    except NotFoundError:
        raise
    except TrainforgeError as exc:
        raise RemoteFunctionError(f"cannot describe {job_name}: {exc.message}") from None


__all__ = ["JobSettings", "RemoteJob", "SerializationError", "describe_or_raise"]
