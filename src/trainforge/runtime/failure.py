"""FailureReason texts (reference §1.7) and the exception that carries one through the supervisor.

Prefixes follow SageMaker: ``AlgorithmError:`` for the user's code (non-zero exit, failure file, install
errors), ``ClientError:`` for a bad request found on the node (missing data, bad source archive),
``InternalServerError:`` for trainforge's own faults, ``OutOfMemoryError:`` for code killed at its memory limit.
Every reason is at most
:data:`~trainforge.spec.contract.FAILURE_REASON_MAX` characters.
"""

from __future__ import annotations

import builtins
import re
import signal
from collections import deque
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
