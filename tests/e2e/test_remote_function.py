"""``@remote`` and ``RemoteExecutor`` end to end: functions defined in ``__main__`` (as in a notebook) run as real
training jobs through a real server and real supervisors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.server import ServerProcess
from trainforge.remote_function import SerializationError, remote
from trainforge.remote_function import serialization as ser
from trainforge.storage import LocalObjectStore


def run_main(server: ServerProcess, workdir: Path, code: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``__main__`` in ``workdir`` (like a notebook kernel) against the test server."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "main.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], cwd=workdir, env=server.env, capture_output=True, text=True, timeout=timeout
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_seed_example_divide(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        from trainforge.remote_function import remote

        @remote(instance_type="ml.m5.xlarge")
        def divide(x, y):
            print(f"Calculating {x}/{y}")
            return x / y

        print("RESULT", divide(3, 2))
        try:
            divide(3, 0)
        except ZeroDivisionError as exc:
            notes = "".join(getattr(exc, "__notes__", []))
            print("RAISED", type(exc).__name__, "|", "Remote traceback" in notes, "|", "x / y" in notes)
    """,
        )
    )
    assert "Calculating 3/2" in out and "RESULT 1.5" in out
    assert "RAISED ZeroDivisionError | True | True" in out
    with trainforge.Session(settings=trainforge.settings.Settings(home=server.home)).client as client:
        names = [
            s["TrainingJobName"] for s in client.list_training_jobs(name_contains="divide")["TrainingJobSummaries"]
        ]
    assert len(names) == 2 and all(n.startswith("divide-") for n in names)


def test_numpy_closures_and_a_local_module(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def scale(a, k):\n    return a * k\n")
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import numpy as np
        from trainforge.remote_function import remote
        import helpers

        OFFSET = 10.0  # a notebook global, captured by value

        @remote(include_local_workdir=True, instance_type="ml.m5.large")
        def transform(arr):
            return helpers.scale(arr, 2) + OFFSET

        result = transform(np.arange(4, dtype=np.float64))
        print("RESULT", type(result).__name__, result.tolist())
    """,
        )
    )
    assert "RESULT ndarray [10.0, 12.0, 14.0, 16.0]" in out


def test_dependencies_install_a_package_absent_from_the_caller(server: ServerProcess, tmp_path: Path) -> None:
    pkg = tmp_path / "pkgsrc"
    (pkg / "tfremotedep").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tfremotedep"\nversion = "0.3"\n'
    )
    (pkg / "tfremotedep" / "__init__.py").write_text("def answer():\n    return 42\n")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "requirements.txt").write_text(f"tfremotedep @ file://{pkg}\n")
    out = ok(
        run_main(
            server,
            tmp_path / "work",
            """
        from trainforge.remote_function import remote

        @remote(dependencies="requirements.txt")
        def use_dependency():
            import tfremotedep
            return tfremotedep.answer()

        print("RESULT", use_dependency())
        try:
            import tfremotedep  # noqa: F401
            print("CALLER HAS IT")
        except ImportError:
            print("CALLER LACKS IT")
    """,
        )
    )
    assert "RESULT 42" in out and "CALLER LACKS IT" in out


def test_executor_runs_at_most_max_parallel_jobs(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import time
        from trainforge.remote_function import RemoteExecutor

        def square(x):
            time.sleep(1.0)
            return x * x

        with RemoteExecutor(max_parallel_jobs=2, instance_type="ml.m5.large", job_name_prefix="sq") as ex:
            futures = [ex.submit(square, i) for i in range(4)]
            print("RESULTS", [f.result() for f in futures])
            print("DONE", all(f.done() for f in futures), [f.running() for f in futures])
    """,
        )
    )
    assert "RESULTS [0, 1, 4, 9]" in out and "DONE True [False, False, False, False]" in out
    session = trainforge.Session(settings=trainforge.settings.Settings(home=server.home))
    jobs = [
        session.client.describe_training_job(s["TrainingJobName"])
        for s in session.client.list_training_jobs(name_contains="sq", max_results=100)["TrainingJobSummaries"]
    ]
    assert len(jobs) == 4 and all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    events = sorted([(j["CreationTime"], 1) for j in jobs] + [(j["TrainingEndTime"], -1) for j in jobs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_reattach_after_a_kernel_restart(server: ServerProcess, tmp_path: Path) -> None:
    ok(
        run_main(
            server,
            tmp_path,
            """
        from trainforge.remote_function import RemoteExecutor
        with RemoteExecutor(instance_type="local", job_name_prefix="reattach") as ex:
            ex.submit(pow, 2, 10)
    """,
        )
    )
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        from trainforge.remote_function import Future, list_futures
        futures = list(list_futures("reattach"))
        print("LISTED", len(futures), futures[0].result())
        print("AGAIN", Future.from_describe(futures[0].job_name).result())
    """,
        )
    )
    assert "LISTED 1 1024" in out and "AGAIN 1024" in out


def test_unpicklable_argument_fails_before_any_job(server: ServerProcess, session: trainforge.Session) -> None:
    import socket
    import threading

    @remote(instance_type="local", sagemaker_session=session)
    def touch(resource: Any) -> str:
        return str(resource)

    with pytest.raises(SerializationError, match="argument 'resource'"):
        touch(threading.Lock())
    with socket.socket() as sock, pytest.raises(SerializationError, match="cannot be sent"):
        touch(sock)
    assert session.list_training_jobs()["TrainingJobSummaries"] == []


def test_a_job_killed_from_outside_gives_a_clear_error(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import os, signal
        from trainforge.remote_function import remote, RemoteFunctionError

        @remote(instance_type="local")
        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        try:
            die()
        except RemoteFunctionError as exc:
            print("ERROR", exc)
    """,
        )
    )
    assert "ERROR remote function job die-" in out and "failed without returning" in out
    assert "ExitCode 137" in out or "SIGKILL" in out


def test_python_version_mismatch_fails_fast_with_an_explanation(server: ServerProcess, tmp_path: Path) -> None:
    """A payload pickled by another Python: the job refuses it before unpickling, and says why."""
    session = trainforge.Session(settings=trainforge.settings.Settings(home=server.home))
    name = "mismatch-job"
    base = f"s3://trainforge-default/{name}"
    key = session.client.remote_function_key(name)
    store = LocalObjectStore(server.home / "storage")
    ser.upload(store, f"{base}/function", key, ser.dumps(len, what="fn"), python_version="3.9.18")
    ser.upload(store, f"{base}/arguments", key, ser.dumps(((), {}), what="args"))
    from trainforge.remote_function.job import JobSettings, _request
    from trainforge.remote_function.workspace import build_workspace

    tarball = build_workspace(
        tmp_path / "sourcedir.tar.gz",
        include_local_workdir=False,
        custom_file_filter=None,
        dependencies=None,
        pre_execution_commands=None,
        pre_execution_script=None,
    )
    source = f"{base}/sm_rf_user_ws/sourcedir.tar.gz"
    store.put_file(source, tarball)
    request = _request(
        JobSettings(instance_type="local", sagemaker_session=session),
        name=name,
        base=base,
        image="trainforge/python:current",
        source_uri=source,
        checkpoint=None,
    )
    session.create_training_job(request)
    from tests.support.wait import wait_for

    d = wait_for(
        lambda: (lambda d: d if d["TrainingJobStatus"] == "Failed" else None)(
            session.client.describe_training_job(name)
        ),
        what="Failed",
    )
    assert "RuntimeEnvironmentError" in d["FailureReason"] and "Python 3.9.18" in d["FailureReason"]


def test_checkpoint_location_maps_to_the_checkpoint_config(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import os
        from trainforge.remote_function import remote, CheckpointLocation

        @remote(instance_type="local", job_name_prefix="ckpt")
        def where(ckpt):
            return os.fspath(ckpt)

        print("PATH", where(CheckpointLocation("s3://trainforge-default/checkpoints/run-1")))
    """,
        )
    )
    assert "PATH " in out and out.split("PATH ")[1].strip().endswith("opt/ml/checkpoints/")
    session = trainforge.Session(settings=trainforge.settings.Settings(home=server.home))
    name = session.client.list_training_jobs(name_contains="ckpt")["TrainingJobSummaries"][0]["TrainingJobName"]
    assert session.client.describe_training_job(name)["CheckpointConfig"] == {
        "S3Uri": "s3://trainforge-default/checkpoints/run-1",
        "LocalPath": "/opt/ml/checkpoints/",
    }


def test_keep_alive_reuses_a_warm_worker_and_each_call_is_its_own_job(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import os
        from trainforge.remote_function import remote

        @remote(instance_type="local", keep_alive_period_in_seconds=30, job_name_prefix="warm")
        def pid_of_worker():
            return os.getppid()

        print("PIDS", pid_of_worker(), pid_of_worker(), pid_of_worker())
    """,
        )
    )
    pids = out.split("PIDS ")[1].split()
    assert len(set(pids)) == 1, pids  # the same supervisor process ran all three calls
    session = trainforge.Session(settings=trainforge.settings.Settings(home=server.home))
    jobs = session.client.list_training_jobs(name_contains="warm", sort_by="CreationTime")["TrainingJobSummaries"]
    assert len(jobs) == 3 and all(j["TrainingJobStatus"] == "Completed" for j in jobs)
    later = [e["message"] for e in session.client.logs(jobs[2]["TrainingJobName"])["events"]]
    assert any("running on a warm worker" in line for line in later)


def test_cancel_stops_the_job_and_a_wait_can_time_out(server: ServerProcess, tmp_path: Path) -> None:
    out = ok(
        run_main(
            server,
            tmp_path,
            """
        import time
        from trainforge.remote_function import RemoteExecutor, RemoteFunctionError

        def slow():
            print("started", flush=True)
            time.sleep(120)

        with RemoteExecutor(instance_type="local", job_name_prefix="slow") as ex:
            future = ex.submit(slow)
            try:
                future.result(timeout=0.5)
            except TimeoutError as exc:
                print("TIMEOUT", exc)
            while not future.running() or future.job_name is None:
                time.sleep(0.05)
            print("CANCELLED", future.cancel(), future.cancelled())
            try:
                future.result(timeout=60)
            except RemoteFunctionError as exc:
                print("STOPPED", exc)
    """,
        )
    )
    assert "TIMEOUT remote function" in out
    assert "CANCELLED True True" in out
    assert "STOPPED remote function job slow-" in out and "was stopped" in out


def test_a_tampered_payload_is_refused(server: ServerProcess, session: trainforge.Session) -> None:
    store = LocalObjectStore(server.home / "storage")
    key = session.client.remote_function_key("tamper-job")
    ser.upload(store, "s3://trainforge-default/tamper-job/results", key, ser.dumps(42, what="result"))
    payload, _ = ser.download(store, "s3://trainforge-default/tamper-job/results", key)
    assert ser.loads(payload, what="result") == 42
    store.put_bytes("s3://trainforge-default/tamper-job/results/payload.pkl", ser.dumps(43, what="forged"))
    with pytest.raises(ser.DeserializationError, match="HMAC"):
        ser.download(store, "s3://trainforge-default/tamper-job/results", key)
    other_key = session.client.remote_function_key("another-job")
    assert other_key != key
