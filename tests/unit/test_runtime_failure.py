"""FailureReason formatting: prefixes, ExecuteUserScriptError shape, failure file, 1024-character limit."""

from __future__ import annotations

from pathlib import Path

from trainforge.runtime.failure import (
    ErrorCapture,
    JobFailed,
    client_error,
    container_exit_code,
    execute_error_reason,
    failure_file_reason,
    names_exception,
)
from trainforge.spec.contract import FAILURE_REASON_MAX

TRACEBACK = [
    "epoch 1 loss 0.5",
    "Traceback (most recent call last):",
    '  File "train.py", line 3, in <module>',
    "    raise ValueError('boom')",
    "ValueError: boom",
]


def test_execute_error_shape() -> None:
    capture = ErrorCapture()
    for line in TRACEBACK:
        capture.feed("stderr", line)
    reason = execute_error_reason(1, capture.message(), "/usr/bin/python3 train.py --epochs 10")
    assert reason == (
        'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "'
        + "\n".join(TRACEBACK[1:])
        + '"\nCommand "/usr/bin/python3 train.py --epochs 10"'
    )


def test_capture_keeps_last_lines_from_first_exception() -> None:
    capture = ErrorCapture(max_lines=3)
    capture.feed("stdout", "all good")
    capture.feed("stderr", "KeyError: 'x'")
    for i in range(10):
        capture.feed("stdout", f"line {i}")
    assert capture.message() == "line 7\nline 8\nline 9"


def test_capture_falls_back_to_stderr_tail() -> None:
    capture = ErrorCapture()
    capture.feed("stdout", "hello")
    capture.feed("stderr", "something went wrong")
    assert capture.message() == "something went wrong"


def test_names_exception() -> None:
    assert names_exception("Traceback (most recent call last):")
    assert names_exception("ValueError: x")
    assert names_exception("torch.cuda.OutOfMemoryError: CUDA out of memory")
    assert names_exception("KeyboardInterrupt")
    assert not names_exception("UserWarning: deprecated")
    assert not names_exception("epoch 3 train_error=0.1")


def test_sigkill_exit_code_and_extra_info() -> None:
    assert container_exit_code(-9) == 137
    reason = execute_error_reason(-9, "", "python t.py")
    assert "ExitCode 137" in reason
    assert reason.endswith('ExtraInfo "OutOfMemory: Process killed by SIGKILL (signal 9)"')


def test_long_output_is_cut_but_keeps_exception_and_command() -> None:
    message = "\n".join(f"noise line {i} " + "x" * 100 for i in range(50)) + "\nRuntimeError: the real cause"
    reason = execute_error_reason(2, message, "python train.py")
    assert len(reason) <= FAILURE_REASON_MAX
    assert "RuntimeError: the real cause" in reason
    assert reason.endswith('Command "python train.py"')
    assert reason.startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 2\nErrorMessage "...')


def test_failure_file_reason(tmp_path: Path) -> None:
    path = tmp_path / "failure"
    assert failure_file_reason(path) is None
    path.write_text("bad hyperparameter: lr must be > 0")
    assert failure_file_reason(path) == "AlgorithmError: bad hyperparameter: lr must be > 0"
    path.write_text("y" * 5000)
    reason = failure_file_reason(path)
    assert reason is not None
    assert len(reason) == FAILURE_REASON_MAX
    assert reason.startswith("AlgorithmError: yyy")


def test_job_failed_truncates() -> None:
    failed = client_error("z" * 3000)
    assert isinstance(failed, JobFailed)
    assert len(failed.reason) == FAILURE_REASON_MAX
    assert failed.reason.startswith("ClientError: zzz")
