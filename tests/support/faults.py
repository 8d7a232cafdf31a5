"""Helpers for fault-injection tests: script jobs submitted over HTTP, their supervisors found and SIGKILLed, their
logs read whole, and numbered-line scripts whose output can be checked exactly."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from trainforge.backends.local import session_members
from trainforge.storage import LocalObjectStore

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
BUCKET = "s3://trainforge-default"


def numbered_script(
    lines: int, *, sleep_s: float, checkpoint_every: int = 0, fail: str | None = None, hold: bool = False
) -> str:
    """A ``train.py`` printing ``n=<i>`` for ``i`` in ``range(lines)`` (``sleep_s`` apart), writing
    ``/opt/ml/checkpoints/step.txt`` (and a file per checkpoint, ``ckpt-<i>.txt``) every ``checkpoint_every`` lines,
    then ``done``; with ``fail`` it prints ``fail`` to stderr after the last line and exits 1. With ``hold`` it
    waits after its last line until a file ``release`` appears in its own ``/opt/ml`` (see :func:`release`)."""
    parts = [
        "import os, sys, time",
        "ck = '/opt/ml/checkpoints'",
        f"for i in range({lines}):",
        "    print(f'n={i}', flush=True)",
    ]
    if checkpoint_every:
        parts += [
            f"    if i % {checkpoint_every} == 0:",
            "        os.makedirs(ck, exist_ok=True)",
            "        open(os.path.join(ck, f'ckpt-{i}.txt'), 'w').write(str(i))",
            "        open(os.path.join(ck, 'step.txt'), 'w').write(str(i))",
        ]
    parts.append(f"    time.sleep({sleep_s})")
    if hold:
        parts += [
            "release = os.path.join(os.path.dirname(os.environ['SM_MODEL_DIR']), 'release')",
            "while not os.path.exists(release):",
            "    time.sleep(0.05)",
        ]
    if fail is not None:
        parts += [f"print({fail!r}, file=sys.stderr, flush=True)", "sys.exit(1)"]
    else:
        parts.append("print('done', flush=True)")
    return "\n".join(parts) + "\n"


def upload_source(home: Path, name: str, script: str) -> str:
    """Store ``sourcedir.tar.gz`` holding ``train.py`` in the server's local object store; returns its URI."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = script.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    uri = f"{BUCKET}/{name}/source/sourcedir.tar.gz"
    LocalObjectStore(home / "storage").put_bytes(uri, buf.getvalue())
    return uri


def script_job(
    name: str, source_uri: str, *, checkpoint: bool = False, retries: int | None = None, instances: int = 1
) -> dict[str, Any]:
    """A CreateTrainingJob body running ``train.py`` of ``source_uri`` on ``trainforge/python:current``; with
    ``checkpoint`` a ``CheckpointConfig`` at ``<bucket>/<name>/checkpoints``; with ``retries`` a ``RetryStrategy``."""
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": f"{BUCKET}/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": instances, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "HyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source_uri)},
    }
    if checkpoint:
        body["CheckpointConfig"] = {"S3Uri": f"{BUCKET}/{name}/checkpoints"}
    if retries is not None:
        body["RetryStrategy"] = {"MaximumRetryAttempts": retries}
    return body


def all_events(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """Every stored log event of job ``name``, read page by page over the API."""
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:
        r = client.get(f"/v1/training-jobs/{name}/logs", params={"cursor": cursor, "limit": 10000})
        r.raise_for_status()
        page = r.json()
        if not page["events"]:
            return events
        events.extend(page["events"])
        cursor = page["next_cursor"]


@dataclass(frozen=True)
class Supervisor:
    """A live supervisor process of one host of one job, and whether its session runs the job's ``train.py``."""

    job: str
    host: str
    pid: int
    attempt: int = 1
    code_running: bool = False
    root: Path | None = None


def release(sup: Supervisor) -> None:
    """Let a ``hold`` script of this supervisor's host finish (a file in its job root's ``opt/ml``)."""
    if sup.root is not None:
        with contextlib.suppress(OSError):
            (sup.root / "opt" / "ml" / "release").touch()


def _processes() -> list[tuple[int, int, list[bytes]]]:
    """(pid, session id, argv) of every live process, from one pass over ``/proc``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_bytes()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        found.append((int(proc.name), int(fields[3]), argv))
    return found


def supervisors(home: Path) -> list[Supervisor]:
    """The live supervisor processes whose job root is under ``home`` (found by their ``supervisor.json`` argument),
    each with whether its user code (``train.py``) runs in its session."""
    configs = {str(cfg).encode(): cfg for cfg in home.glob("jobs/*/*/supervisor.json")}
    procs = _processes()
    code_sessions = {sid for _, sid, argv in procs if any(a.endswith(b"train.py") for a in argv)}
    found: list[Supervisor] = []
    for pid, sid, argv in procs:
        for arg in argv:
            cfg = configs.get(arg)
            if cfg is not None:
                job, _, attempt = cfg.parent.parent.name.partition(".attempt-")  # a retry's root: <job>.attempt-N
                found.append(Supervisor(job, cfg.parent.name, pid, int(attempt or 1), sid in code_sessions, cfg.parent))
                break
    return found


def lose_host(sup: Supervisor) -> None:
    """SIGKILL the supervisor and every process of its session (its user code): the host is lost."""
    try:
        members = session_members(os.getsid(sup.pid))
    except OSError:
        return
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
