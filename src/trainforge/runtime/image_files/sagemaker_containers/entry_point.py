"""``sagemaker_containers.entry_point._wait_hostname_resolution``: wait until every host of the job resolves.

The job's hosts are ``SM_HOSTS`` (or ``hosts`` of ``resourceconfig.json``). The job's own host names (``algo-1``,
...) resolve to the addresses the backend placed them at (``TRAINFORGE_HOST_ADDRESSES``; ``127.0.0.1`` when it is
not set: every host on this machine) without a name service; any other name is looked up with
:func:`socket.gethostbyname`, retried with exponential backoff for up to 15 minutes as SageMaker's helper does.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCAL_ADDRESS = "127.0.0.1"
RESOLUTION_TIMEOUT_S = 15 * 60.0
FIRST_WAIT_S = 0.1
MAX_WAIT_S = 30.0


def job_hosts() -> list[str]:
    """The job's hosts: ``SM_HOSTS``, else ``hosts`` of ``resourceconfig.json``, else ``["algo-1"]``."""
    raw = os.environ.get("SM_HOSTS")
    if raw:
        try:
            hosts = json.loads(raw)
            if isinstance(hosts, list) and hosts:
                return [str(h) for h in hosts]
        except ValueError:
            pass
    config_dir = Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))
    try:
        resources = json.loads((config_dir / "resourceconfig.json").read_text(encoding="utf-8"))
        hosts = resources.get("hosts") if isinstance(resources, dict) else None
        if isinstance(hosts, list) and hosts:
            return [str(h) for h in hosts]
    except (OSError, ValueError):
        pass
    return ["algo-1"]


def _dns_lookup(host: str, timeout_s: float = RESOLUTION_TIMEOUT_S) -> str:
    """The address of ``host``: local for the job's own hosts, else DNS retried until ``timeout_s``."""
    if host in job_hosts():
        try:
            placed = json.loads(os.environ.get("TRAINFORGE_HOST_ADDRESSES") or "{}")
        except ValueError:
            placed = {}
        address = placed.get(host) if isinstance(placed, dict) else None
        return str(address) if address else LOCAL_ADDRESS
    deadline = time.monotonic() + timeout_s
    wait = FIRST_WAIT_S
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)


def resolve_hosts(hosts: list[str] | None = None) -> dict[str, str]:
    """Every host of ``hosts`` (default: the job's) with its address, waiting for each to resolve."""
    return {host: _dns_lookup(host) for host in (job_hosts() if hosts is None else hosts)}


def _wait_hostname_resolution() -> None:
    """Block until every host of the job resolves (as in SageMaker's image; returns None)."""
    resolve_hosts()
