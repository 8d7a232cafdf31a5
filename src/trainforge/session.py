"""``trainforge.Session``: the SDK's connection to a server and its object store (reference §5.8).

``Session()`` finds (or starts) the server at once; a Session given a ``client`` or a ``server_config``
connects only when it needs to. Objects are read and written directly in the object store the server
announces in ``GET /v1/config``.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trainforge import inference_client
from trainforge.client import TrainforgeClient
from trainforge.errors import (
    ConflictError,
    NotFoundError,
    ServerUnavailableError,
    TrainforgeError,
    UnexpectedStatusError,
    ValidationError,
)
from trainforge.inference_requests import (
    container_definition,
    endpoint_config_request,
    endpoint_request,
    model_request,
    production_variant,
)
from trainforge.inputs import ShuffleConfig, TrainingInput
from trainforge.logs import LogPrinter, print_job_logs, wait_with_dots
from trainforge.settings import Settings, load_settings
from trainforge.spec.contract import DEFAULT_ROLE_NAME
from trainforge.spec.names import base_name_from_image, name_from_base
from trainforge.storage import CallbackKeyring, ObjectStore, open_store

logger = logging.getLogger("trainforge")

_TIME_KEYS = frozenset(
    {
        "CreationTime",
        "TrainingStartTime",
        "TrainingEndTime",
        "LastModifiedTime",
        "StartTime",
        "EndTime",
        "Timestamp",
        "TransformStartTime",
        "TransformEndTime",
    }
)
_ENDPOINT_BUSY = frozenset({"Creating", "Updating", "SystemUpdating"})
_TRANSFORM_BUSY = frozenset({"InProgress", "Stopping"})
# Kept for code written against ``sagemaker.session.s3_input``.
s3_input = TrainingInput


def with_datetimes(value: Any) -> Any:
    """A copy of an API answer with epoch-second timestamps turned into aware local datetimes (as boto3)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _TIME_KEYS and isinstance(item, int | float) and not isinstance(item, bool):
                out[key] = datetime.fromtimestamp(item).astimezone()
            else:
                out[key] = with_datetimes(item)
        return out
    if isinstance(value, list):
        return [with_datetimes(item) for item in value]
    return value


def _check_transform_status(job_name: str, description: Mapping[str, Any]) -> None:
    """Raise :class:`UnexpectedStatusError` when a transform job ended Failed (Completed and Stopped pass)."""
    status = str(description.get("TransformJobStatus"))
    if status == "Failed":
        reason = description.get("FailureReason")
        raise UnexpectedStatusError(
            f"Error for Transform job {job_name}: {status}. Reason: {reason}",
            job_name=job_name,
            status=status,
            failure_reason=reason,
        )


def role_arn(account_id: str, name: str = DEFAULT_ROLE_NAME) -> str:
    """``arn:aws:iam::<account_id>:role/<name>``."""
    return f"arn:aws:iam::{account_id}:role/{name}"


def get_execution_role(sagemaker_session: Session | None = None, use_default: bool = False) -> str:
    """The caller's default role as an ARN: ``arn:aws:iam::<account_id>:role/<DefaultRole>``.

    The server says which role is the caller's default (``GET /v1/users/me``); the session's server is asked, or,
    without a session, the server ``TRAINFORGE_ENDPOINT`` (or the embedded one of ``TRAINFORGE_HOME``) when it is
    running (none is started for this). When no server can say (none running, an older server, or a user with
    no default role), the answer is ``TrainforgeExecutionRole`` in the server's account (without a session:
    ``TRAINFORGE_ACCOUNT_ID``, default ``000000000000``). ``use_default`` is accepted for SageMaker compatibility
    and changes nothing.
    """
    from trainforge.local_server import connect

    if sagemaker_session is not None:
        client = sagemaker_session._client  # its own module; never start a server just for this
        if client is None:
            try:
                client = sagemaker_session._client = connect(sagemaker_session.settings, start=False)
            except TrainforgeError:
                client = None
        name = _default_role_name(client) if client is not None else None
        return role_arn(sagemaker_session.account_id(), name or DEFAULT_ROLE_NAME)
    settings = load_settings()
    try:
        client = connect(settings, start=False)
    except TrainforgeError:
        return role_arn(settings.account_id)
    with client:
        name = _default_role_name(client)
        try:
            account = str(client.get_config().get("account_id") or settings.account_id)
        except TrainforgeError:
            account = settings.account_id
    return role_arn(account, name or DEFAULT_ROLE_NAME)


def _default_role_name(client: TrainforgeClient) -> str | None:
    """The caller's default role name as the server tells it; None when it cannot say."""
    from trainforge.roles_client import whoami

    try:
        role = whoami(client).get("DefaultRole")
    except (TrainforgeError, KeyError, AttributeError):
        return None
    return str(role) if role else None


class Session:
    """Connection to one trainforge server and its object store.

    Args:
        settings: Settings to use; default: read from ``TRAINFORGE_*`` environment variables.
        client: A ready client (e.g. one over an in-process transport); default: ``TRAINFORGE_ENDPOINT`` or
            the embedded server of ``TRAINFORGE_HOME``, found or started now (later, if ``server_config``
            is given).
        default_bucket: Bucket to use instead of the server's default bucket.
        server_config: The server's ``GET /v1/config`` answer, when already known (it is then not fetched).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        client: TrainforgeClient | None = None,
        default_bucket: str | None = None,
        server_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._client = client
        self._default_bucket = default_bucket
        self._config: dict[str, Any] | None = dict(server_config) if server_config is not None else None
        self._store: ObjectStore | None = None
        self.sagemaker_client = SageMakerClient(self)
        self.sagemaker_runtime_client = RuntimeClient(self)
        if client is None and server_config is None:
            self.client  # noqa: B018 - find or start the server now, as sagemaker.Session() connects at once

    # -- connection ---------------------------------------------------------------------------------------

    @property
    def client(self) -> TrainforgeClient:
        """The API client; the first access finds or starts the server."""
        if self._client is None:
            from trainforge.local_server import connect

            self._client = connect(self.settings, start=True)
        return self._client

    @property
    def config(self) -> dict[str, Any]:
        """The server's configuration (``GET /v1/config``), fetched once."""
        if self._config is None:
            self._config = self.client.get_config()
        return self._config

    @property
    def boto_region_name(self) -> str:
        """The server's region name (``local`` for the embedded server)."""
        return str(self.config.get("region") or self.settings.region)

    def account_id(self) -> str:
        """The server's 12-digit account id."""
        return str(self.config.get("account_id") or self.settings.account_id)

    def default_bucket(self) -> str:
        """The bucket used when none is given (``trainforge-default`` unless configured)."""
        if self._default_bucket is None:
            self._default_bucket = str(self.config["default_bucket"])
        return self._default_bucket

    def expand_role(self, role: str) -> str:
        """A role name as a full ARN in this account; an ARN (anything with ``/``) is returned unchanged."""
        return role if "/" in role else role_arn(self.account_id(), role)

    @property
    def object_store(self) -> ObjectStore:
        """The object store the server uses, opened from its configuration."""
        if self._store is None:
            from trainforge.roles_client import fetch_data_key

            # Objects a job wrote encrypted at rest (local store) are decrypted with keys the server hands out.
            keyring = CallbackKeyring(
                lambda key_id, uri, for_write: fetch_data_key(self.client, key_id, uri, for_write)
            )
            self._store = open_store(dict(self.config["storage"]), keyring=keyring)
        return self._store

    # -- objects ------------------------------------------------------------------------------------------

    def upload_data(
        self,
        path: str | os.PathLike[str],
        bucket: str | None = None,
        key_prefix: str = "data",
        callback: Any = None,
        extra_args: Mapping[str, Any] | None = None,
    ) -> str:
        """Upload a file or a directory tree, as SageMaker's ``upload_data``.

        A file goes to ``s3://<bucket>/<key_prefix>/<basename>`` and that URI is returned. A directory's
        files go under ``s3://<bucket>/<key_prefix>/`` keeping their relative paths, and
        ``s3://<bucket>/<key_prefix>`` is returned. ``callback`` and ``extra_args`` are accepted for
        compatibility and unused.

        Raises:
            ValidationError: ``path`` does not exist.
        """
        source = Path(path)
        if not source.exists():
            raise ValidationError(f"path: {str(path)!r} does not exist", field="path")
        bucket = bucket or self.default_bucket()
        prefix = key_prefix.strip("/")
        files: list[tuple[Path, str]] = []
        key_suffix = None
        if source.is_dir():
            for dirpath, dirnames, filenames in os.walk(source, followlinks=True):
                dirnames.sort()
                rel = Path(dirpath).relative_to(source).as_posix()
                for name in sorted(filenames):
                    rel_key = name if rel == "." else f"{rel}/{name}"
                    files.append((Path(dirpath) / name, f"{prefix}/{rel_key}" if prefix else rel_key))
        else:
            key_suffix = source.name
            files.append((source, f"{prefix}/{source.name}" if prefix else source.name))
        for local, key in files:
            self.object_store.put_file(f"s3://{bucket}/{key}", local)
        uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return f"{uri}/{key_suffix}" if key_suffix else uri

    def upload_string_as_file_body(self, body: str, bucket: str, key: str, kms_key: str | None = None) -> str:
        """Store ``body`` (UTF-8) at ``s3://<bucket>/<key>`` and return that URI."""
        uri = f"s3://{bucket}/{key.lstrip('/')}"
        self.object_store.put_bytes(uri, body.encode("utf-8"))
        return uri

    def read_s3_file(self, bucket: str, key_prefix: str) -> str:
        """The UTF-8 content of the object ``s3://<bucket>/<key_prefix>``.

        Raises:
            NotFoundError: There is no such object.
        """
        return self.object_store.get_bytes(f"s3://{bucket}/{key_prefix.lstrip('/')}").decode("utf-8")

    def list_s3_files(self, bucket: str, key_prefix: str) -> list[str]:
        """Keys of the objects under ``s3://<bucket>/<key_prefix>``, in key order."""
        return [info.key for info in self.object_store.list(f"s3://{bucket}/{key_prefix.lstrip('/')}")]

    def download_data(
        self, path: str | os.PathLike[str], bucket: str, key_prefix: str = "", extra_args: Any = None
    ) -> list[str]:
        """Download the objects under a prefix into directory ``path``; return the local file paths.

        As SageMaker: when ``key_prefix`` names a file (has an extension) objects land under their
        basename, otherwise under their key relative to the prefix.

        Raises:
            NotFoundError: No object is stored under the prefix.
        """
        prefix = key_prefix.lstrip("/")
        objects = list(self.object_store.list(f"s3://{bucket}/{prefix}"))
        if not objects:
            raise NotFoundError(f"no objects under s3://{bucket}/{prefix}")
        names_file = bool(os.path.splitext(prefix)[1])
        downloaded: list[str] = []
        for info in objects:
            rel = os.path.basename(info.key) if names_file else os.path.relpath(info.key, prefix or ".")
            if rel in (".", "") or rel.startswith(".."):
                rel = os.path.basename(info.key)
            dest = Path(path) / rel
            self.object_store.download_file(info.uri, dest)
            downloaded.append(str(dest))
        return downloaded

    # -- training jobs ------------------------------------------------------------------------------------

    def create_training_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a CreateTrainingJob request; return ``{"TrainingJobArn": ...}``.

        Raises:
            ValidationError: The request breaks a rule (names the field).
            ConflictError: The job name is taken.
        """
        logger.info("Creating training-job with name: %s", request.get("TrainingJobName"))
        return self.client.create_training_job(request)

    def _describe(self, job_name: str) -> dict[str, Any]:
        """Describe with raw epoch timestamps, riding out a server restart for ``reconnect_for_s``."""
        deadline = time.monotonic() + self.client.reconnect_for_s
        while True:
            try:
                return self.client.describe_training_job(job_name)
            except ServerUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def describe_training_job(self, job_name: str) -> dict[str, Any]:
        """The DescribeTrainingJob answer, timestamps as aware ``datetime`` objects as boto3 returns them.

        Raises:
            NotFoundError: No job has this name.
        """
        result: dict[str, Any] = with_datetimes(self.client.describe_training_job(job_name))
        return result

    def list_training_jobs(self, **filters: Any) -> dict[str, Any]:
        """One page of job summaries (keywords of :meth:`TrainforgeClient.list_training_jobs`)."""
        result: dict[str, Any] = with_datetimes(self.client.list_training_jobs(**filters))
        return result

    def stop_training_job(self, job_name: str) -> None:
        """Ask a job to stop; it goes ``Stopping`` then ``Stopped``.

        Raises:
            NotFoundError: No job has this name.
        """
        self.client.stop_training_job(job_name)

    def logs_for_job(
        self, job_name: str, wait: bool = False, poll: int = 10, log_type: str = "All", timeout: Any = None
    ) -> None:
        """Print a job's status transitions and log lines as SageMaker does.

        Each transition prints where it happened among the lines, for a finished job as for one followed live.
        With ``wait=False`` prints what the job has so far, then returns. With ``wait=True`` follows the job live
        until it is Completed, Failed or Stopped (``Stopping`` keeps waiting), then prints ``Training seconds``
        and ``Billable seconds``. ``log_type="Rules"`` prints status lines only. ``poll`` and ``timeout`` are
        accepted for compatibility; the stream is pushed.

        Raises:
            UnexpectedStatusError: With ``wait=True``, the job ended Failed.
        """
        print_job_logs(self.client, job_name, describe=self._describe, wait=wait, show_lines=log_type != "Rules")

    def wait_for_job(self, job: str, poll: float = 5) -> dict[str, Any]:
        """Poll a job until it is Completed, Failed or Stopped, printing transitions and progress dots.

        Unlike SageMaker, ``Stopping`` is not an end: the wait goes on until ``Stopped``.

        Returns:
            The final description (timestamps as datetimes).

        Raises:
            UnexpectedStatusError: The job ended Failed.
        """
        result: dict[str, Any] = with_datetimes(wait_with_dots(job, describe=self._describe, poll=poll))
        return result

    # -- models, endpoints, transform jobs (reference §7.3) ----------------------------------------------

    def resolve_role(self, role: str | None) -> str:
        """``role`` as an ARN: ``None`` is the caller's default role (:func:`get_execution_role`), a bare name is
        expanded in this account, an ARN is returned as it is."""
        if role is None:
            return get_execution_role(self)
        return role if "/" in role else self.expand_role(role)

    def create_model(
        self,
        name: str,
        role: str | None = None,
        container_defs: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        vpc_config: Mapping[str, Any] | None = None,
        enable_network_isolation: bool | None = None,
        primary_container: Mapping[str, Any] | None = None,
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        """CreateModel from a container definition (``container_defs`` or ``primary_container``); returns ``name``.

        A model of that name that already exists is kept, with a warning (as SageMaker).

        Raises:
            ValidationError: A bad field (the image is not in the catalogue, a role the caller may not pass, ...).
        """
        container = primary_container if primary_container is not None else container_defs
        if isinstance(container, list):
            if len(container) != 1:
                raise ValidationError(
                    f"container_defs: {len(container)} containers given; one container is served here",
                    field="container_defs",
                )
            container = container[0]
        if container is None:
            raise ValidationError(
                "container_defs: required (the image and model data to serve)", field="container_defs"
            )
        request = model_request(
            name,
            self.resolve_role(role),
            container,
            enable_network_isolation=bool(enable_network_isolation),
            vpc_config=vpc_config,
            tags=tags,
        )
        return self.create_model_from_request(request)

    def create_model_from_request(self, request: Mapping[str, Any]) -> str:
        """Send a built CreateModel request; a name already taken is kept with a warning. Returns the model name."""
        name = str(request["ModelName"])
        logger.info("Creating model with name: %s", name)
        try:
            inference_client.create_model(self.client, request)
        except ConflictError:
            logger.warning("Using already existing model: %s", name)
        return name

    def describe_model(self, name: str) -> dict[str, Any]:
        """DescribeModel (timestamps as datetimes). Raises NotFoundError for an unknown model."""
        result: dict[str, Any] = with_datetimes(inference_client.describe_model(self.client, name))
        return result

    def delete_model(self, model_name: str) -> None:
        """DeleteModel. Raises NotFoundError for an unknown model."""
        logger.info("Deleting model with name: %s", model_name)
        inference_client.delete_model(self.client, model_name)

    def create_endpoint_config(
        self,
        name: str,
        model_name: str,
        initial_instance_count: int,
        instance_type: str,
        accelerator_type: str | None = None,
        tags: list[dict[str, str]] | None = None,
        kms_key: str | None = None,
        data_capture_config_dict: Mapping[str, Any] | None = None,
        volume_size: int | None = None,
        model_data_download_timeout: int | None = None,
        container_startup_health_check_timeout: int | None = None,
    ) -> str:
        """CreateEndpointConfig with one production variant (``AllTraffic``); returns ``name``.

        Raises:
            ValidationError: An unknown model or instance type (the field named).
            ConflictError: The name is taken.
        """
        variant = production_variant(
            model_name,
            instance_type,
            initial_instance_count,
            accelerator_type=accelerator_type,
            volume_size=volume_size,
            model_data_download_timeout=model_data_download_timeout,
            container_startup_health_check_timeout=container_startup_health_check_timeout,
        )
        request = endpoint_config_request(
            name, [variant], tags=tags, kms_key=kms_key, data_capture_config=data_capture_config_dict
        )
        logger.info("Creating endpoint-config with name %s", name)
        inference_client.create_endpoint_config(self.client, request)
        return name

    def describe_endpoint_config(self, name: str) -> dict[str, Any]:
        """DescribeEndpointConfig (timestamps as datetimes)."""
        result: dict[str, Any] = with_datetimes(inference_client.describe_endpoint_config(self.client, name))
        return result

    def delete_endpoint_config(self, endpoint_config_name: str) -> None:
        """DeleteEndpointConfig (an endpoint created from it keeps serving)."""
        logger.info("Deleting endpoint configuration with name: %s", endpoint_config_name)
        inference_client.delete_endpoint_config(self.client, endpoint_config_name)

    def create_endpoint(
        self,
        endpoint_name: str,
        config_name: str,
        tags: list[dict[str, str]] | None = None,
        wait: bool = True,
        live_logging: bool = False,
    ) -> str:
        """CreateEndpoint; with ``wait`` block until it is InService. Returns ``endpoint_name``.

        Raises:
            ConflictError: The name is taken.
            UnexpectedStatusError: ``wait`` and the endpoint went Failed (the FailureReason in the message).
        """
        logger.info("Creating endpoint with name %s", endpoint_name)
        inference_client.create_endpoint(self.client, endpoint_request(endpoint_name, config_name, tags=tags))
        if wait:
            self.wait_for_endpoint(endpoint_name)
        return endpoint_name

    def endpoint_from_production_variants(
        self,
        name: str,
        production_variants: list[Mapping[str, Any]],
        tags: list[dict[str, str]] | None = None,
        kms_key: str | None = None,
        wait: bool = True,
        data_capture_config_dict: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """An endpoint config named ``name`` for the variants, then the endpoint ``name`` (as SageMaker's deploy).

        Raises:
            UnexpectedStatusError: ``wait`` and the endpoint went Failed.
        """
        config = endpoint_config_request(
            name, production_variants, tags=tags, kms_key=kms_key, data_capture_config=data_capture_config_dict
        )
        logger.info("Creating endpoint-config with name %s", name)
        inference_client.create_endpoint_config(self.client, config)
        return self.create_endpoint(name, name, tags=tags, wait=wait)

    def endpoint_from_model_data(
        self,
        model_s3_location: str,
        image_uri: str,
        initial_instance_count: int,
        instance_type: str,
        name: str | None = None,
        role: str | None = None,
        wait: bool = True,
        model_environment_vars: Mapping[str, str] | None = None,
        tags: list[dict[str, str]] | None = None,
        **kwargs: Any,
    ) -> str:
        """A model, an endpoint config and an endpoint, all named ``name``, serving ``model_s3_location``."""
        name = name or name_from_base(base_name_from_image(image_uri))
        container = container_definition(image_uri, model_s3_location, model_environment_vars)
        self.create_model(name, role, container, tags=tags)
        variant = production_variant(name, instance_type, initial_instance_count)
        return self.endpoint_from_production_variants(name, [variant], tags=tags, wait=wait)

    def update_endpoint(self, endpoint_name: str, endpoint_config_name: str, wait: bool = True) -> str:
        """UpdateEndpoint to another config; with ``wait`` block until it is InService again."""
        inference_client.update_endpoint(self.client, endpoint_name, endpoint_config_name)
        if wait:
            self.wait_for_endpoint(endpoint_name)
        return endpoint_name

    def describe_endpoint(self, endpoint_name: str) -> dict[str, Any]:
        """DescribeEndpoint (timestamps as datetimes). Raises NotFoundError for an unknown endpoint."""
        result: dict[str, Any] = with_datetimes(inference_client.describe_endpoint(self.client, endpoint_name))
        return result

    def delete_endpoint(self, endpoint_name: str) -> None:
        """DeleteEndpoint: it goes Deleting, its instances stop, then it is gone."""
        logger.info("Deleting endpoint with name: %s", endpoint_name)
        inference_client.delete_endpoint(self.client, endpoint_name)

    def wait_for_endpoint(self, endpoint: str, poll: float = 2, live_logging: bool = False) -> dict[str, Any]:
        """Poll until the endpoint is no longer Creating/Updating, printing progress dots.

        Returns:
            The final description (timestamps as datetimes).

        Raises:
            UnexpectedStatusError: It ended in a status other than InService (``Failed``: the FailureReason is in
                the message).
        """
        description = self._wait_while(
            lambda: inference_client.describe_endpoint(self.client, endpoint),
            "EndpointStatus",
            _ENDPOINT_BUSY,
            poll,
        )
        status = str(description.get("EndpointStatus"))
        if status != "InService":
            reason = description.get("FailureReason")
            raise UnexpectedStatusError(
                f"Error hosting endpoint {endpoint}: {status}. Reason: {reason}.",
                job_name=endpoint,
                status=status,
                failure_reason=reason,
            )
        result: dict[str, Any] = with_datetimes(description)
        return result

    def _wait_while(
        self, describe: Callable[[], dict[str, Any]], key: str, busy: frozenset[str], poll: float
    ) -> dict[str, Any]:
        """Describe until ``description[key]`` leaves ``busy``: first every 0.2 s, slowing to every ``poll`` s."""
        printer = LogPrinter()
        delay = 0.2
        while True:
            description = describe()
            if description.get(key) not in busy:
                printer.line("!")
                return description
            printer.dot()
            time.sleep(delay)
            delay = min(delay * 2, poll)

    def create_transform_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a built CreateTransformJob request; ``{"TransformJobArn"}``.

        Raises:
            ValidationError: A bad field (unknown model, ...), named.
            ConflictError: The job name is taken.
        """
        logger.info("Creating transform job with name: %s", request.get("TransformJobName"))
        return inference_client.create_transform_job(self.client, request)

    def transform(
        self,
        job_name: str,
        model_name: str,
        strategy: str | None,
        max_concurrent_transforms: int | None,
        max_payload: int | None,
        input_config: Mapping[str, Any],
        output_config: Mapping[str, Any],
        resource_config: Mapping[str, Any],
        experiment_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        tags: list[dict[str, str]] | None = None,
        data_processing: Mapping[str, Any] | None = None,
        model_client_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """CreateTransformJob from its parts, as SageMaker's ``Session.transform``."""
        request: dict[str, Any] = {
            "TransformJobName": job_name,
            "ModelName": model_name,
            "TransformInput": dict(input_config),
            "TransformOutput": dict(output_config),
            "TransformResources": dict(resource_config),
        }
        optional = {
            "BatchStrategy": strategy,
            "MaxConcurrentTransforms": max_concurrent_transforms,
            "MaxPayloadInMB": max_payload,
            "Environment": dict(env) if env else None,
            "Tags": tags or None,
            "DataProcessing": dict(data_processing) if data_processing else None,
            "ModelClientConfig": dict(model_client_config) if model_client_config else None,
            "ExperimentConfig": dict(experiment_config) if experiment_config else None,
        }
        request.update({key: value for key, value in optional.items() if value is not None})
        self.create_transform_job(request)

    def describe_transform_job(self, job_name: str) -> dict[str, Any]:
        """DescribeTransformJob (timestamps as datetimes). Raises NotFoundError for an unknown job."""
        result: dict[str, Any] = with_datetimes(inference_client.describe_transform_job(self.client, job_name))
        return result

    def stop_transform_job(self, name: str) -> None:
        """StopTransformJob: Stopping, then Stopped."""
        inference_client.stop_transform_job(self.client, name)

    def wait_for_transform_job(self, job: str, poll: float = 5) -> dict[str, Any]:
        """Poll until the transform job is Completed, Failed or Stopped, printing progress dots.

        Raises:
            UnexpectedStatusError: The job ended Failed (the FailureReason in the message).
        """
        description = self._wait_while(
            lambda: inference_client.describe_transform_job(self.client, job),
            "TransformJobStatus",
            _TRANSFORM_BUSY,
            poll,
        )
        _check_transform_status(job, description)
        result: dict[str, Any] = with_datetimes(description)
        return result

    def logs_for_transform_job(self, job_name: str, wait: bool = False, poll: float = 10) -> None:
        """Print a transform job's log lines (lines of hosts other than ``algo-1`` prefixed with their host).

        With ``wait=False`` prints the lines written so far; with ``wait=True`` follows the job until it ends.

        Raises:
            UnexpectedStatusError: With ``wait=True``, the job ended Failed.
        """
        printer = LogPrinter()
        cursor = 0
        delay = 0.2
        while True:
            page = inference_client.transform_job_logs(self.client, job_name, cursor=cursor)
            events = page.get("events") or []
            for event in events:
                printer.log(str(event.get("message", "")), event.get("host"))
            if events:
                cursor = int(page.get("next_cursor", events[-1].get("cursor", cursor)))
                delay = 0.2
                continue
            if not wait:
                return
            if page.get("TransformJobStatus") not in _TRANSFORM_BUSY:
                break
            time.sleep(delay)
            delay = min(delay * 2, poll)
        _check_transform_status(job_name, inference_client.describe_transform_job(self.client, job_name))


class SageMakerClient:
    """The few boto3 ``sagemaker`` client calls notebooks make through ``session.sagemaker_client``.

    Keyword arguments and answers use boto3's PascalCase names; timestamps are ``datetime`` objects.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def create_training_job(self, **request: Any) -> dict[str, Any]:
        """``CreateTrainingJob``."""
        return self._session.create_training_job(request)

    def describe_training_job(self, *, TrainingJobName: str) -> dict[str, Any]:
        """``DescribeTrainingJob``."""
        return self._session.describe_training_job(TrainingJobName)

    def stop_training_job(self, *, TrainingJobName: str) -> dict[str, Any]:
        """``StopTrainingJob``."""
        self._session.stop_training_job(TrainingJobName)
        return {}

    def list_training_jobs(self, **params: Any) -> dict[str, Any]:
        """``ListTrainingJobs`` with boto3's parameter names (``NameContains``, ``MaxResults``, ...)."""
        snake = {"".join("_" + c.lower() if c.isupper() else c for c in k).lstrip("_"): v for k, v in params.items()}
        return self._session.list_training_jobs(**snake)

    def create_model(self, **request: Any) -> dict[str, Any]:
        """``CreateModel``."""
        return inference_client.create_model(self._session.client, request)

    def describe_model(self, *, ModelName: str) -> dict[str, Any]:
        """``DescribeModel``."""
        return self._session.describe_model(ModelName)

    def delete_model(self, *, ModelName: str) -> dict[str, Any]:
        """``DeleteModel``."""
        self._session.delete_model(ModelName)
        return {}

    def create_endpoint_config(self, **request: Any) -> dict[str, Any]:
        """``CreateEndpointConfig``."""
        return inference_client.create_endpoint_config(self._session.client, request)

    def describe_endpoint_config(self, *, EndpointConfigName: str) -> dict[str, Any]:
        """``DescribeEndpointConfig``."""
        return self._session.describe_endpoint_config(EndpointConfigName)

    def delete_endpoint_config(self, *, EndpointConfigName: str) -> dict[str, Any]:
        """``DeleteEndpointConfig``."""
        self._session.delete_endpoint_config(EndpointConfigName)
        return {}

    def create_endpoint(self, **request: Any) -> dict[str, Any]:
        """``CreateEndpoint`` (returns at once; the endpoint is Creating)."""
        return inference_client.create_endpoint(self._session.client, request)

    def describe_endpoint(self, *, EndpointName: str) -> dict[str, Any]:
        """``DescribeEndpoint``."""
        return self._session.describe_endpoint(EndpointName)

    def update_endpoint(self, *, EndpointName: str, EndpointConfigName: str, **_: Any) -> dict[str, Any]:
        """``UpdateEndpoint`` (returns at once; the endpoint is Updating)."""
        return inference_client.update_endpoint(self._session.client, EndpointName, EndpointConfigName)

    def delete_endpoint(self, *, EndpointName: str) -> dict[str, Any]:
        """``DeleteEndpoint``."""
        self._session.delete_endpoint(EndpointName)
        return {}

    def list_endpoints(self, *, StatusEquals: str | None = None, **_: Any) -> dict[str, Any]:
        """``ListEndpoints`` (one page: every endpoint, newest first)."""
        found = inference_client.list_endpoints(self._session.client, status=StatusEquals)
        return {"Endpoints": with_datetimes(found)}

    def create_transform_job(self, **request: Any) -> dict[str, Any]:
        """``CreateTransformJob``."""
        return self._session.create_transform_job(request)

    def describe_transform_job(self, *, TransformJobName: str) -> dict[str, Any]:
        """``DescribeTransformJob``."""
        return self._session.describe_transform_job(TransformJobName)

    def stop_transform_job(self, *, TransformJobName: str) -> dict[str, Any]:
        """``StopTransformJob``."""
        self._session.stop_transform_job(TransformJobName)
        return {}


class RuntimeClient:
    """boto3's ``sagemaker-runtime`` client as ``session.sagemaker_runtime_client``: ``invoke_endpoint``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def invoke_endpoint(
        self,
        *,
        EndpointName: str,
        Body: bytes | str | Any,
        ContentType: str | None = None,
        Accept: str | None = None,
        CustomAttributes: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """``InvokeEndpoint``: ``{"Body": <readable stream>, "ContentType", "InvokedProductionVariant"}``.

        ``Body`` may be bytes, a string (sent UTF-8) or a readable file. ``TargetModel``, ``TargetVariant`` and
        ``InferenceId`` are accepted and not used (one model, one variant per endpoint here).

        Raises:
            ModelError: The model answered with an error (its status and message in ``details``).
            NotFoundError: No endpoint has this name.
            ValidationError: The endpoint is not InService, or the payload is over 6 MB.
        """
        if hasattr(Body, "read"):
            Body = Body.read()
        payload = Body.encode("utf-8") if isinstance(Body, str) else bytes(Body)
        body, content_type, variant = inference_client.invoke_endpoint(
            self._session.client,
            EndpointName,
            payload,
            content_type=ContentType,
            accept=Accept,
            custom_attributes=CustomAttributes,
        )
        return {"Body": io.BytesIO(body), "ContentType": content_type, "InvokedProductionVariant": variant}


__all__ = [
    "RuntimeClient",
    "SageMakerClient",
    "Session",
    "ShuffleConfig",
    "TrainingInput",
    "get_execution_role",
    "role_arn",
    "s3_input",
    "with_datetimes",
]
