"""``@remote`` and ``RemoteExecutor``: run local Python functions as training jobs (reference §6)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future as _Cf
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, overload

from trainforge.remote_function.errors import RemoteFunctionError
from trainforge.remote_function.job import JobSettings, RemoteJob, describe_or_raise
from trainforge.remote_function.workspace import CustomFileFilter, IgnoreFn
from trainforge.session import Session

F = TypeVar("F", bound=Callable[..., Any])


def _settings(**kwargs: Any) -> JobSettings:
    settings = JobSettings(**kwargs)
    settings.validate()
    return settings


def _run(settings: JobSettings, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    job = RemoteJob.start(settings, func, args, kwargs)
    return job.result(job.wait())


@overload
def remote(_func: F, /) -> F: ...
@overload
def remote(
    _func: None = None,
    /,
    *,
    dependencies: str | None = None,
    pre_execution_commands: Sequence[str] | None = None,
    pre_execution_script: str | None = None,
    environment_variables: Mapping[str, str] | None = None,
    image_uri: str | None = None,
    include_local_workdir: bool = False,
    custom_file_filter: IgnoreFn | CustomFileFilter | None = None,
    instance_count: int = 1,
    instance_type: str | None = None,
    job_name_prefix: str | None = None,
    keep_alive_period_in_seconds: int = 0,
    max_retry_attempts: int = 1,
    max_runtime_in_seconds: int = 86400,
    role: str | None = None,
    s3_root_uri: str | None = None,
    tags: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
    volume_size: int = 30,
    use_torchrun: bool = False,
    nproc_per_node: int | None = None,
    s3_kms_key: str | None = None,
    volume_kms_key: str | None = None,
    encrypt_inter_container_traffic: bool = False,
    enable_network_isolation: bool = False,
    sagemaker_session: Session | None = None,
) -> Callable[[F], F]: ...
def remote(_func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Run the decorated function as a training job on each call and return its result.

    Works bare (``@remote``) or with SageMaker's parameters (``@remote(instance_type=..., dependencies=...)``).
    Each call is recorded as an ordinary training job; its output streams to the caller; an exception raised
    remotely is re-raised here with its original type and the remote traceback as a note.

    Raises:
        SerializationError: The function or an argument cannot be pickled (nothing is created).
        RuntimeEnvironmentError: The job's Python cannot load this caller's pickles (nothing is created).
        RemoteFunctionError: The job was stopped or killed, or failed without an exception object.
    """
    settings = _settings(**{k: v for k, v in options.items() if v is not None})

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _run(settings, func, args, kwargs)

        wrapper.remote_settings = settings  # type: ignore[attr-defined]
        return wrapper

    return decorate(_func) if _func is not None else decorate


class Future:
    """The result of a function submitted to a :class:`RemoteExecutor` (or reattached from a job name)."""

    def __init__(
        self,
        *,
        session: Session,
        job_name: str | None = None,
        s3_base: str | None = None,
        inner: _Cf[Any] | None = None,
    ) -> None:
        self._session = session
        self._job: RemoteJob | None = None
        if job_name is not None and s3_base is not None:
            self._job = RemoteJob(session, job_name, s3_base)
        self._inner = inner
        self._cancelled = False
        self._started = threading.Event()
        self._lock = threading.Lock()

    @classmethod
    def from_describe(cls, job_name: str, sagemaker_session: Session | None = None) -> Future:
        """Reattach to a remote-function job by name (e.g. after a kernel restart)."""
        session = sagemaker_session or Session()
        description = describe_or_raise(session, job_name)
        base = str(description["OutputDataConfig"]["S3OutputPath"]).rstrip("/")
        return cls(session=session, job_name=job_name, s3_base=base)

    # -- used by the executor ---------------------------------------------------------------------------
    def _attach(self, job: RemoteJob) -> None:
        with self._lock:
            self._job = job
            self._started.set()

    # -- the concurrent.futures-like API -------------------------------------------------------------
    @property
    def job_name(self) -> str | None:
        """The training job's name once the call has been submitted."""
        return self._job.job_name if self._job else None

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; re-raises its exception; ``TimeoutError`` after ``timeout`` seconds."""
        if self._inner is not None:
            try:
                return self._inner.result(timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"remote function {self.job_name or '(not started)'} is not done after {timeout} s"
                ) from None
        assert self._job is not None
        return self._job.result(self._job.wait(timeout=timeout, logs=False))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the call raised, or None if it returned."""
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as exc:
            return exc
        return None

    def done(self) -> bool:
        """Whether the call has finished (returned, raised, or was cancelled)."""
        if self._inner is not None:
            return self._inner.done()
        assert self._job is not None
        return describe_or_raise(self._session, self._job.job_name)["TrainingJobStatus"] in (
            "Completed",
            "Failed",
            "Stopped",
        )

    def running(self) -> bool:
        """Whether its job has been submitted and has not finished."""
        if self._inner is not None:
            return self._started.is_set() and not self._inner.done()
        return not self.done()

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` succeeded."""
        return self._cancelled

    def cancel(self) -> bool:
        """Cancel a call not yet submitted, or stop its job; False when it already finished."""
        with self._lock:
            if self._inner is not None and self._inner.cancel():
                self._cancelled = True
                return True
            if self._job is None or self.done():
                return False
            self._session.stop_training_job(self._job.job_name)
            self._cancelled = True
            return True

    def __repr__(self) -> str:
        return f"<Future job={self.job_name!r} done={self.done()}>"


class RemoteExecutor:
    """Run many calls as training jobs, at most ``max_parallel_jobs`` at once (``concurrent.futures`` style)."""

    def __init__(self, *, max_parallel_jobs: int = 1, **options: Any) -> None:
        if max_parallel_jobs < 1:
            from trainforge.errors import ValidationError

            raise ValidationError("max_parallel_jobs: must be >= 1", field="max_parallel_jobs")
        self._settings = _settings(**{k: v for k, v in options.items() if v is not None})
        self._pool = ThreadPoolExecutor(max_workers=max_parallel_jobs, thread_name_prefix="trainforge-remote")
        self._futures: list[Future] = []
        self._shutdown = False

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``func(*args, **kwargs)``; arguments are checked for picklability now."""
        if self._shutdown:
            raise RemoteFunctionError("submit: this RemoteExecutor was shut down")
        from trainforge.remote_function.job import bind_arguments, serialize_call

        bind_arguments(func, args, kwargs)
        serialize_call(func, args, kwargs)  # fail here, in the caller, for an unpicklable argument
        session = self._settings.session
        future = Future(session=session)

        def run() -> Any:
            job = RemoteJob.start(self._settings, func, args, kwargs)
            future._attach(job)
            return job.result(job.wait(logs=False))

        future._inner = self._pool.submit(run)
        self._futures.append(future)
        return future

    def map(self, func: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        """Submit ``func`` for each set of arguments; yield results in order (re-raising the first error)."""
        futures = [self.submit(func, *call) for call in zip(*iterables, strict=False)]
        return (f.result() for f in futures)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait`` block until every submitted call has finished."""
        self._shutdown = True
        if cancel_futures:
            for f in self._futures:
                f.cancel()
        self._pool.shutdown(wait=wait)

    def __enter__(self) -> RemoteExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


def list_futures(job_name_prefix: str, sagemaker_session: Session | None = None) -> Iterator[Future]:
    """Futures of every remote-function job whose name starts with ``job_name_prefix``, oldest first."""
    session = sagemaker_session or Session()
    for summary in session.client.iter_training_jobs(
        name_contains=job_name_prefix, sort_by="CreationTime", sort_order="Ascending"
    ):
        name = str(summary["TrainingJobName"])
        if name.startswith(job_name_prefix):
            yield Future.from_describe(name, sagemaker_session=session)


def get_future(job_name: str, sagemaker_session: Session | None = None) -> Future:
    """The future of one remote-function job."""
    return Future.from_describe(job_name, sagemaker_session=sagemaker_session)


__all__ = ["Future", "RemoteExecutor", "get_future", "list_futures", "remote"]
