"""A real model server (``python -m trainforge_serving``) for tests: started on a free port, stopped after."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.wait import wait_for
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.distributed import free_port
from trainforge.runtime.serving.process import ping


@dataclass
class ModelServer:
    """A running ``trainforge_serving`` process."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, str]:
        """One request: ``(status, body, content type)``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            conn.close()

    def invoke(self, body: bytes, content_type: str | None = None, accept: str | None = None) -> tuple[int, bytes, str]:
        """``POST /invocations``."""
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        return self.request("POST", "/invocations", body, headers)


def serving_env(model_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a model server for ``model_dir`` (its code in ``model_dir/code``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINFORGE_", "SAGEMAKER_"))}
    env.update({"PYTHONPATH": str(IMAGE_FILES), "SM_MODEL_DIR": str(model_dir), "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def start_model_server(
    model_dir: Path, framework: str, *, python: str = sys.executable, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m trainforge_serving`` (output captured); the caller waits for it."""
    port = free_port()
    cmd = [python, "-m", "trainforge_serving", "--framework", framework, "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=serving_env(model_dir, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=model_dir
    )
    proc.port = port  # type: ignore[attr-defined]
    return proc


@contextmanager
def model_server(
    model_dir: Path, framework: str, *, python: str = sys.executable, env: dict[str, str] | None = None
) -> Iterator[ModelServer]:
    """A model server answering ``/ping`` (the test fails with its output if it exits first); killed after."""
    proc = start_model_server(model_dir, framework, python=python, env=env)
    server = ModelServer(proc, proc.port)  # type: ignore[attr-defined]
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"model server exited with {proc.returncode}:\n{output}")
            return ping(server.address, timeout=1.0)

        wait_for(ready, timeout=60, what="the model server's /ping")
        yield server
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def run_to_exit(
    model_dir: Path, framework: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Start a model server expected to fail at start: its exit code and output."""
    proc = start_model_server(model_dir, framework, env=env)
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, output.decode()
