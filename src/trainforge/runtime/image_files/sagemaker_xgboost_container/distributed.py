"""``sagemaker_xgboost_container.distributed``: :func:`rabit_run` and :func:`wait_hostname_resolution`.

:func:`rabit_run` behaves as SageMaker's: on one host, a host with data runs ``exec_fun(**args)`` (adding
``is_master=True`` when ``update_rabit_args``) and a host without data logs a warning and exits 0. On several hosts
it builds XGBoost's collective ring in two rounds, as SageMaker's image does: every host joins a first ring (on
``first_port``) to learn which hosts have training data; hosts without data leave (exit 0); the others join a
second ring (on ``second_port``) and run ``exec_fun`` inside it, so ``xgboost.train`` aggregates across them. The
first host of each ring runs XGBoost's tracker; ranks follow host order, so ``is_master`` is the first host with
data. The first host tells the others where its tracker listens over ``first_port``/``second_port``, which default
to ``MASTER_PORT + 1`` and ``+ 2`` (trainforge gives every multi-host job a ``MASTER_PORT``), else SageMaker's 9099
and 9100.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sagemaker_containers.entry_point import resolve_hosts

log = logging.getLogger("sagemaker_xgboost_container.distributed")

DEFAULT_FIRST_PORT = 9099
CONNECT_TIMEOUT_S = 300.0
CONNECT_RETRIES = 8


def wait_hostname_resolution(sm_hosts: list[str]) -> None:
    """Block until every host in ``sm_hosts`` resolves."""
    resolve_hosts(list(sm_hosts))


def _default_ports(first_port: int | None, second_port: int | None) -> tuple[int, int]:
    base = os.environ.get("MASTER_PORT")
    first = first_port or (int(base) + 1 if base and base.isdigit() else DEFAULT_FIRST_PORT)
    return first, second_port or first + 1


def _publish(address: str, port: int, payload: bytes, readers: int, timeout_s: float) -> threading.Thread:
    """Hand ``payload`` to the first ``readers`` connections on ``address:port`` (in a daemon thread)."""
    server = socket.create_server((address, port))
    server.settimeout(timeout_s)

    def serve() -> None:
        with server:
            for _ in range(readers):
                try:
                    conn, _peer = server.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(payload)

    thread = threading.Thread(target=serve, name="rabit-rendezvous", daemon=True)
    thread.start()
    return thread


def _fetch(address: str, port: int, timeout_s: float) -> dict[str, Any]:
    """What the ring's first host published on ``address:port``, waiting for it to come up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((address, port), timeout=10) as conn:
                chunks = []
                while chunk := conn.recv(4096):
                    chunks.append(chunk)
            value: dict[str, Any] = json.loads(b"".join(chunks))
            return value
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabit: the first host of the ring did not answer on {address}:{port}") from None
            time.sleep(0.2)


@contextmanager
def ring(members: list[str], current_host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[int]:
    """Join XGBoost's collective ring of ``members``; yield this host's rank (members' order).

    The first member runs XGBoost's tracker (on a port of its choosing: XGBoost 2 does not take one) and tells the
    others where it listens over ``port``.
    """
    import xgboost
    from xgboost import collective

    addresses = resolve_hosts(members)
    master = members[0]
    tracker = None
    if current_host == master:
        from xgboost.tracker import RabitTracker

        tracker = RabitTracker(n_workers=len(members), host_ip=addresses[master], sortby="task", timeout=int(timeout_s))
        tracker.start()
        where = {k: v for k, v in tracker.worker_args().items() if k in ("dmlc_tracker_uri", "dmlc_tracker_port")}
        _publish(addresses[master], port, json.dumps(where).encode(), len(members) - 1, timeout_s)
    else:
        where = _fetch(addresses[master], port, timeout_s)
    args: dict[str, Any] = {
        **where,
        "dmlc_task_id": f"{members.index(current_host):05d}-{current_host}",
        "dmlc_retry": CONNECT_RETRIES,
        "dmlc_timeout": int(timeout_s),
    }
    log.info(
        "rabit: %s joins a ring of %d hosts (tracker on %s at port %s, xgboost %s)",
        current_host,
        len(members),
        master,
        where.get("dmlc_tracker_port"),
        xgboost.__version__,
    )
    try:
        with collective.CommunicatorContext(**args):
            yield collective.get_rank()
    except BaseException:
        if tracker is not None:
            tracker.free()  # the others fail on their own; do not wait for them
        raise
    if tracker is not None:
        tracker.wait_for(int(timeout_s))
        tracker.free()


def _hosts_with_data(hosts: list[str], current_host: str, include: bool, port: int) -> list[str]:
    import numpy as np
    from xgboost import collective

    with ring(hosts, current_host, port):
        flags = np.zeros(len(hosts), dtype=np.float64)
        flags[hosts.index(current_host)] = 1.0 if include else 0.0
        flags = collective.allreduce(flags, collective.Op.SUM)
    return [host for host, flag in zip(hosts, flags, strict=True) if flag > 0]


def rabit_run(
    exec_fun: Callable[..., Any],
    args: dict[str, Any],
    include_in_training: bool,
    hosts: list[str],
    current_host: str,
    first_port: int | None = None,
    second_port: int | None = None,
    max_connect_attempts: int | None = None,
    connect_retry_timeout: int = 3,
    update_rabit_args: bool = False,
) -> Any:
    """Run ``exec_fun(**args)`` on the hosts that have training data, in one XGBoost ring across them.

    With ``update_rabit_args``, ``args["is_master"]`` says whether this host has rank 0 of the training ring. A
    host without data exits 0 (after telling the others, on several hosts). ``max_connect_attempts`` and
    ``connect_retry_timeout`` are accepted for compatibility.
    """
    hosts = list(hosts)
    if len(hosts) <= 1:
        if not include_in_training:
            log.warning("Host %s not being used for distributed training.", current_host)
            sys.exit(0)
        log.debug("Only 1 host with training data, starting single node training job from: %s", current_host)
        if update_rabit_args:
            args.update({"is_master": True})
        return exec_fun(**args)
    first, second = _default_ports(first_port, second_port)
    members = _hosts_with_data(hosts, current_host, include_in_training, first)
    if current_host not in members:
        log.warning("Host %s not being used for distributed training.", current_host)
        sys.exit(0)
    if not members:
        raise RuntimeError("rabit: no host has training data")
    log.info("rabit: training on %d of %d hosts: %s", len(members), len(hosts), ", ".join(members))
    if len(members) == 1:
        if update_rabit_args:
            args.update({"is_master": True})
        return exec_fun(**args)
    with ring(members, current_host, second) as rank:
        if update_rabit_args:
            args.update({"is_master": rank == 0})
        return exec_fun(**args)
