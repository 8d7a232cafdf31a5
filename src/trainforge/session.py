"""``trainforge.Session``: the SDK's connection to a server and its object store (reference §5.8).

``Session()`` finds (or starts) the server at once; a Session given a ``client`` or a ``server_config``
connects only when it needs to. Objects are read and written directly in the object store the server
announces in ``GET /v1/config``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError, ServerUnavailableError, TrainforgeError, ValidationError
from trainforge.inputs import ShuffleConfig, TrainingInput
from trainforge.logs import print_job_logs, wait_with_dots
from trainforge.settings import Settings, load_settings
from trainforge.spec.contract import DEFAULT_ROLE_NAME
from trainforge.storage import CallbackKeyring, ObjectStore, open_store

logger = logging.getLogger("trainforge")

_TIME_KEYS = frozenset(
    {"CreationTime", "TrainingStartTime", "TrainingEndTime", "LastModifiedTime", "StartTime", "EndTime", "Timestamp"}
)
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


__all__ = [
    "SageMakerClient",
    "Session",
    "ShuffleConfig",
    "TrainingInput",
    "get_execution_role",
    "role_arn",
    "s3_input",
    "with_datetimes",
]
