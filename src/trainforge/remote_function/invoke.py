"""The job side of a remote function: verify, unpickle, call, and write the result or the exception.

This file is copied into the job's workspace as ``trainforge_remote_invoke.py`` and run as its entry point, so it
imports only the standard library and cloudpickle (the job's environment need not contain trainforge).
Exit codes: 0 with ``results/`` written; 1 with ``exception/`` written and ``/opt/ml/output/failure`` set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import linecache
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

PAYLOAD = "payload.pkl"
METADATA = "metadata.json"
PRE_EXEC = "pre_exec.sh"


class _JobError(Exception):
    """A failure before the function ran; its text becomes the FailureReason."""


def _output_root() -> Path:
    return Path(os.environ["SM_OUTPUT_DIR"]) / "remote_function"


def _fail(text: str) -> None:
    failure = Path(os.environ["SM_OUTPUT_DIR"]) / "failure"
    if not failure.exists():
        failure.write_text(text[:1024])


def _sign(payload: bytes) -> str:
    key = os.environ.get("TRAINFORGE_REMOTE_FUNCTION_KEY", "")
    if not key:
        raise _JobError("RuntimeEnvironmentError: this job has no remote-function key (TRAINFORGE_REMOTE_FUNCTION_KEY)")
    return hmac.new(bytes.fromhex(key), payload, hashlib.sha256).hexdigest()


def _metadata(payload: bytes, **extra: Any) -> dict[str, Any]:
    import cloudpickle

    return {
        "version": "trainforge-2026-11",
        "python_version": platform.python_version(),
        "serialization_module": "cloudpickle",
        "serializer_version": str(cloudpickle.__version__),
        "sha256_hash": hashlib.sha256(payload).hexdigest(),
        "hmac_sha256": _sign(payload),
        **extra,
    }


def _read(channel: str) -> tuple[bytes, dict[str, Any]]:
    root = Path(os.environ[f"SM_CHANNEL_{channel.upper()}"])
    payload = (root / PAYLOAD).read_bytes()
    metadata = json.loads((root / METADATA).read_text())
    if not hmac.compare_digest(str(metadata.get("hmac_sha256", "")), _sign(payload)):
        raise _JobError(
            f"DeserializationError: integrity check failed for the {channel} payload (HMAC mismatch): it was not "
            "written by this job's caller, so it is not unpickled"
        )
    return payload, metadata


def _check_versions(metadata: dict[str, Any]) -> None:
    import cloudpickle

    caller_py = str(metadata.get("python_version", ""))
    here_py = platform.python_version()
    if caller_py.split(".")[:2] != here_py.split(".")[:2]:
        raise _JobError(
            f"RuntimeEnvironmentError: the caller runs Python {caller_py} but this job's image runs Python {here_py}; "
            "pickled functions only load in the same Python major.minor. Use an image with Python "
            f"{'.'.join(caller_py.split('.')[:2])} (image_uri=...) or call from a matching Python."
        )
    if metadata.get("serialization_module") != "cloudpickle":
        raise _JobError(f"RuntimeEnvironmentError: unknown serializer {metadata.get('serialization_module')!r}")
    caller_cp = str(metadata.get("serializer_version", ""))
    here_cp = str(cloudpickle.__version__)
    if caller_cp.split(".")[:2] != here_cp.split(".")[:2]:
        raise _JobError(
            f"RuntimeEnvironmentError: the caller pickled with cloudpickle {caller_cp} but this job has cloudpickle "
            f"{here_cp}; install cloudpickle=={caller_cp} in the job (dependencies=...) or match the caller's."
        )


def _pre_exec(code_dir: Path) -> None:
    script = code_dir / PRE_EXEC
    if not script.is_file():
        return
    print(f"Running pre-execution commands from {PRE_EXEC}", flush=True)
    rc = subprocess.call(["/bin/bash", str(script)], cwd=code_dir)
    if rc != 0:
        raise _JobError(f"RuntimeEnvironmentError: pre-execution commands failed with exit code {rc}")


def _write(kind: str, payload: bytes, **extra: Any) -> None:
    out = _output_root() / kind
    out.mkdir(parents=True, exist_ok=True)
    (out / PAYLOAD).write_bytes(payload)
    (out / METADATA).write_text(json.dumps(_metadata(payload, **extra)))


def _pickle_exception(exc: BaseException) -> bytes:
    import cloudpickle

    try:
        data = bytes(cloudpickle.dumps(exc))
        cloudpickle.loads(data)
        return data
    except Exception:
        fallback = RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        return bytes(cloudpickle.dumps(fallback))


def _register_source(func: Any, source: Any) -> None:
    """Let tracebacks show the caller's source lines for functions pickled by value."""
    code = getattr(func, "__code__", None)
    if code is None or not isinstance(source, str):
        return
    lines = source.splitlines(keepends=True)
    linecache.cache[code.co_filename] = (len(source), None, lines, code.co_filename)


def main() -> int:
    """Run the remote function once; see the module docstring for the exit codes."""
    import cloudpickle

    code_dir = Path(__file__).resolve().parent
    try:
        _pre_exec(code_dir)
        fn_payload, fn_meta = _read("function")
        _check_versions(fn_meta)
        args_payload, _ = _read("arguments")
        func = cloudpickle.loads(fn_payload)
        _register_source(func, fn_meta.get("source"))
        args, kwargs = cloudpickle.loads(args_payload)
    except _JobError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        _fail(str(exc))
        return 1
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:  # the user's function may raise anything, SystemExit included
        remote_tb = "".join(traceback.format_exception(exc))
        sys.stderr.write(remote_tb)
        sys.stderr.flush()
        _write(
            "exception",
            _pickle_exception(exc),
            traceback=remote_tb,
            exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=str(exc),
        )
        _fail(f"{type(exc).__name__}: {exc}")
        return 1
    try:
        payload = bytes(cloudpickle.dumps(result))
    except Exception as exc:
        text = f"SerializationError: the function's return value cannot be pickled: {type(exc).__name__}: {exc}"
        print(text, file=sys.stderr, flush=True)
        _fail(text)
        return 1
    _write("results", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
