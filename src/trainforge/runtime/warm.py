"""Warm workers: a supervisor that stays up after a job with ``KeepAlivePeriodInSeconds`` and runs the next
matching job without a new process start (reference §6.1 ``keep_alive_period_in_seconds``).

A warm worker listens on a Unix socket ``<warm_dir>/<key>/<pid>.sock`` where ``key`` is derived from the job's
image and instance type. A backend hands it a job by sending the path of the job's ``supervisor.json``; the worker
acknowledges, closes its socket (so nobody else can hand it a job while it is busy), runs the job, and listens
again with the new job's keep-alive period. It exits when that period passes without a job, or on SIGTERM.

While warm, a worker whose job ran its code with an environment's python keeps a forkserver of that python with the
image's heavy modules imported, and the next job's entry point is forked from it
(:mod:`trainforge.runtime.forkserver`; ``TRAINFORGE_WARM_FORK=off`` turns that off).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("trainforge.warm")
HANDOFF_TIMEOUT_S = 2.0


def keep_alive_seconds(spec: Mapping[str, Any]) -> int:
    """The job's ``ResourceConfig.KeepAlivePeriodInSeconds`` (0 when unset)."""
    return int((spec.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds") or 0)


def warm_key(spec: Mapping[str, Any]) -> str:
    """Which warm workers may run a job: same image, same instance type."""
    algo = spec.get("AlgorithmSpecification") or {}
    image = algo.get("TrainingImage") or algo.get("AlgorithmName") or ""
    instance = (spec.get("ResourceConfig") or {}).get("InstanceType") or ""
    return hashlib.sha256(json.dumps([image, instance]).encode()).hexdigest()[:16]


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(4)
    return sock


def serve(warm_dir: Path, spec: Mapping[str, Any], run_job: Callable[[Path], Mapping[str, Any] | None]) -> None:
    """Stay warm for the job ``spec`` described; ``run_job(config_path)`` runs one handed-over job and returns
    that job's spec (or None if its config was unusable)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while (keep := keep_alive_seconds(spec)) > 0:
        path = warm_dir / warm_key(spec) / f"{os.getpid()}.sock"
        sock = _listen(path)
        sock.settimeout(keep)
        log.info("warm for %ss at %s", keep, path)
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            log.info("keep-alive period over; exiting")
            return
        finally:
            path.unlink(missing_ok=True)
        with conn, contextlib.suppress(OSError):
            sock.close()
            conn.settimeout(HANDOFF_TIMEOUT_S)
            try:
                request = json.loads(conn.makefile("r").readline())
                config = Path(request["config"])
                conn.sendall((json.dumps({"ok": True, "pid": os.getpid()}) + "\n").encode())
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("bad hand-off: %s", exc)
                continue
        next_spec = run_job(config)
        if next_spec is None:
            return
        spec = next_spec
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def hand_off(warm_dir: Path, spec: Mapping[str, Any], config_path: Path) -> int | None:
    """Give the job whose config is at ``config_path`` to an idle warm worker; its pid, or None if none took it."""
    for sock_path in sorted((warm_dir / warm_key(spec)).glob("*.sock")):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(HANDOFF_TIMEOUT_S)
        try:
            client.connect(str(sock_path))
            client.sendall((json.dumps({"config": str(config_path)}) + "\n").encode())
            reply = json.loads(client.makefile("r").readline() or "{}")
            if reply.get("ok"):
                return int(reply["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            if not _pid_alive(sock_path.stem):
                sock_path.unlink(missing_ok=True)
        finally:
            client.close()
    return None


def _pid_alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
