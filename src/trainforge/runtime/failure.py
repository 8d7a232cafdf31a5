"""FailureReason texts (reference §1.7) and the exception that carries one through the supervisor.

Prefixes follow SageMaker: ``AlgorithmError:`` for the user's code (non-zero exit, failure file, install
errors), ``ClientError:`` for a bad request found on the node (missing data, bad source archive),
``InternalServerError:`` for trainforge's own faults, ``OutOfMemoryError:`` for code killed at its memory limit.
A full disk (``ENOSPC``) gets SageMaker's words for it, by phase (:func:`disk_full`): ``ClientError: Data download
failed:Insufficient disk space ...`` when the job's data does not fit, ``ClientError: Artifact upload
failed:Insufficient disk space ...`` when its model does not, ``InternalServerError: ...`` when trainforge's own
space (environments, the object store) is full. Every reason is at most
:data:`~trainforge.spec.contract.FAILURE_REASON_MAX` characters.
"""

from __future__ import annotations

import builtins
import errno
import re
import shutil
import signal
from collections import deque
from enum import Enum
from pathlib import Path

from trainforge.errors import TrainforgeError
from trainforge.spec.contract import FAILURE_REASON_MAX

ALGORITHM_ERROR = "AlgorithmError: "
CLIENT_ERROR = "ClientError: "
INTERNAL_ERROR = "InternalServerError: "
OUT_OF_MEMORY_ERROR = "OutOfMemoryError: "
OUT_OF_MEMORY_ADVICE = (
    "Please use an instance type with more memory, or reduce the size of job data processed on an instance"
)
ERROR_MESSAGE_LINES = 20


class JobFailed(TrainforgeError):
    """The job cannot go on; ``reason`` is its complete FailureReason (already prefixed and truncated)."""

    code = "JobFailed"
    http_status = 400

    def __init__(self, reason: str) -> None:
        reason = truncate(reason)
        super().__init__(reason)
        self.reason = reason


def truncate(reason: str, limit: int = FAILURE_REASON_MAX) -> str:
    """``reason`` cut to at most ``limit`` characters."""
    return reason if len(reason) <= limit else reason[:limit]


def client_error(message: str) -> JobFailed:
    """A ``ClientError: <message>`` failure."""
    return JobFailed(CLIENT_ERROR + message)


def internal_error(message: str) -> JobFailed:
    """An ``InternalServerError: <message>`` failure."""
    return JobFailed(INTERNAL_ERROR + message)


def algorithm_error(message: str) -> JobFailed:
    """An ``AlgorithmError: <message>`` failure."""
    return JobFailed(ALGORITHM_ERROR + message)


def out_of_memory_reason(detail: str) -> str:
    """SageMaker's ``OutOfMemoryError: Please use an instance type with more memory, ...`` followed by
    ``detail`` (what the limit was and how it is enforced here)."""
    return truncate(f"{OUT_OF_MEMORY_ERROR}{OUT_OF_MEMORY_ADVICE} ({detail})")


INSUFFICIENT_DISK = "Insufficient disk space"
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DISK_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os error 28\b|Errno 28\b", re.IGNORECASE)


class DiskPhase(Enum):
    """Where in a job a full disk was met, and so which words and prefix its FailureReason takes."""

    SETUP = "setup"
    DOWNLOAD = "download"
    ENVIRONMENT = "environment"
    UPLOAD = "upload"
    STORE = "store"

    @property
    def words(self) -> str:
        """SageMaker's words for the step that failed (``Data download failed``...)."""
        return _PHASE_WORDS[self]

    @property
    def doing(self) -> str:
        """What the job was doing in this phase, for a reason's ``while ...``."""
        return _PHASE_DOING[self]

    @property
    def prefix(self) -> str:
        """``ClientError: `` where the job's own data or model does not fit, else ``InternalServerError: ``."""
        return CLIENT_ERROR if self in (DiskPhase.DOWNLOAD, DiskPhase.UPLOAD) else INTERNAL_ERROR


_PHASE_WORDS = {
    DiskPhase.SETUP: "Job setup failed",
    DiskPhase.DOWNLOAD: "Data download failed",
    DiskPhase.ENVIRONMENT: "Environment build failed",
    DiskPhase.UPLOAD: "Artifact upload failed",
    DiskPhase.STORE: "Artifact upload failed",
}


_PHASE_DOING = {
    DiskPhase.SETUP: "preparing the job on this node",
    DiskPhase.DOWNLOAD: "downloading the job's data",
    DiskPhase.ENVIRONMENT: "building the training environment",
    DiskPhase.UPLOAD: "packaging the job's artifacts",
    DiskPhase.STORE: "storing the job's artifacts",
}


def mentions_disk_full(text: str) -> bool:
    """Whether a message (an exception's, uv's output) says a disk or quota is full."""
    return bool(_DISK_FULL_TEXT.search(text))


def disk_full_line(text: str) -> str:
    """The last line of ``text`` that says a disk is full (stripped, at most 300 characters), else ``""``."""
    for line in reversed(text.splitlines()):
        if mentions_disk_full(line):
            return line.strip()[-300:]
    return ""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, is a full disk (``ENOSPC``,
    ``EDQUOT``), or says so in its message (store errors carry the ``OSError``'s text)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        if mentions_disk_full(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_disk_full_reason(reason: str) -> bool:
    """Whether a FailureReason is already one :func:`disk_full` wrote."""
    return INSUFFICIENT_DISK in reason


def free_space(path: Path | None) -> str:
    """``"<n> MiB of <m> MiB free now"`` for the file system of ``path``, or ``""`` when it cannot be known."""
    probe = path
    while probe is not None and not probe.exists():
        probe = probe.parent if probe.parent != probe else None
    if probe is None:
        return ""
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return ""
    return f"{usage.free // 2**20} MiB of {usage.total // 2**20} MiB free now"


def disk_full(phase: DiskPhase, what: str, where: Path | None, *, fix: str | None = None) -> JobFailed:
    """The failure for a full disk met while doing ``what`` in ``phase``, writing under ``where``.

    Shape: ``<prefix><phase>:Insufficient disk space. No space left on device while <what> (<where>, <free>);
    <fix>``. The default fix depends on the phase: less data per host or more free space under
    ``TRAINFORGE_HOME`` for the job's volume, ``TRAINFORGE_ENVS_DIR`` for environments, the store's volume for
    the object store.
    """
    space = free_space(where)
    place = f" ({where}{', ' + space if space else ''})" if where is not None else ""
    if fix is None:
        if phase is DiskPhase.DOWNLOAD:
            fix = (
                "Please make sure the local disk has enough space for the job's data: free space under "
                "TRAINFORGE_HOME/jobs on this node, or give each host less data (ShardedByS3Key over more "
                "instances); ResourceConfig.VolumeSizeInGB is recorded but reserves no space here"
            )
        elif phase is DiskPhase.UPLOAD:
            fix = (
                "Please make sure the local disk has enough space to package the model and output data next to "
                "them (about their size again): free space under TRAINFORGE_HOME/jobs on this node, or write a "
                "smaller model"
            )
        elif phase is DiskPhase.ENVIRONMENT:
            fix = "free space where environments are built (TRAINFORGE_ENVS_DIR, default TRAINFORGE_HOME/envs)"
        elif phase is DiskPhase.STORE:
            fix = "the object store's volume is full: free space there (TRAINFORGE_HOME/storage) and run the job again"
        else:
            fix = "free space under TRAINFORGE_HOME/jobs on this node"
    return JobFailed(
        f"{phase.prefix}{phase.words}:{INSUFFICIENT_DISK}. No space left on device while {what}{place}; {fix}"
    )


def _exception_names() -> frozenset[str]:
    names = set()
    for name in dir(builtins):
        obj = getattr(builtins, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and not issubclass(obj, Warning):
            names.add(name)
    return frozenset(names)


_BUILTIN_EXCEPTIONS = _exception_names()
_CLASS_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b")
_CUSTOM_EXCEPTION = re.compile(r"\b[A-Za-z_][\w.]*(?:Error|Exception)\b")


def names_exception(line: str) -> bool:
    """Whether an output line names a Python exception class (or starts a traceback).

    True for ``Traceback (most recent call last):``, any builtin exception name (``ValueError``,
    ``KeyboardInterrupt``...) and any ``...Error``/``...Exception`` word (``torch.cuda.OutOfMemoryError``).
    Warning classes do not count.
    """
    if "Traceback (most recent call last)" in line:
        return True
    if _CUSTOM_EXCEPTION.search(line):
        return True
    return any(word in _BUILTIN_EXCEPTIONS for word in _CLASS_NAME.findall(line))


class ErrorCapture:
    """Keeps what ``ErrorMessage`` needs from a process's output, in bounded memory.

    From the first line that :func:`names_exception` onward, the last ``max_lines`` lines are kept; the
    last ``max_lines`` stderr lines are kept as a fallback for output that names no exception.
    """

    def __init__(self, max_lines: int = ERROR_MESSAGE_LINES) -> None:
        self._since_exception: deque[str] = deque(maxlen=max_lines)
        self._stderr_tail: deque[str] = deque(maxlen=max_lines)
        self._seen_exception = False

    def feed(self, stream: str, line: str) -> None:
        """Record one output line of ``stream`` (``stdout`` or ``stderr``)."""
        if not self._seen_exception and names_exception(line):
            self._seen_exception = True
        if self._seen_exception:
            self._since_exception.append(line)
        if stream == "stderr":
            self._stderr_tail.append(line)

    def message(self) -> str:
        """The captured text: lines from the first exception line (last ones), else the stderr tail."""
        lines = self._since_exception if self._seen_exception else self._stderr_tail
        return "\n".join(lines)


def container_exit_code(returncode: int) -> int:
    """A Popen return code as a container would report it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def execute_error_reason(returncode: int, error_message: str, command: str) -> str:
    """``AlgorithmError: ExecuteUserScriptError:...`` for a script that exited non-zero.

    Shape: ``ExecuteUserScriptError:\\nExitCode <rc>\\nErrorMessage "<msg>"\\nCommand "<cmd>"`` with
    ``ExtraInfo`` for SIGKILL (137). When the whole reason would pass the limit, the error message keeps
    its end (where the exception is) and the command is shortened last.
    """
    rc = container_exit_code(returncode)
    head = f"{ALGORITHM_ERROR}ExecuteUserScriptError:\nExitCode {rc}\n"
    extra = ""
    if rc == 128 + signal.SIGKILL:
        extra = '\nExtraInfo "OutOfMemory: Process killed by SIGKILL (signal 9)"'
    max_command = 300
    if len(command) > max_command:
        command = command[: max_command - 3] + "..."
    tail = f'"\nCommand "{command}"{extra}'
    budget = FAILURE_REASON_MAX - len(head) - len('ErrorMessage "') - len(tail)
    message = error_message
    if budget <= 0:
        message = ""
    elif len(message) > budget:
        message = "..." + message[len(message) - budget + 3 :]
    return truncate(f'{head}ErrorMessage "{message}{tail}')


def failure_file_reason(path: Path) -> str | None:
    """``AlgorithmError: <first 1024 characters of the failure file>`` (whole reason at most 1024), or
    None when the file does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(FAILURE_REASON_MAX)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        text = f"(could not read {path.name}: {exc})"
    return truncate(ALGORITHM_ERROR + text)
