"""Distributed launch of a training script with ``torchrun`` (reference §1.8).

When the job's additional framework parameters enable ``sagemaker_torch_distributed_enabled`` (or
``sagemaker_pytorch_ddp_enabled``, which trainforge also runs with torchrun), each host's supervisor runs
``<python> -m torch.distributed.run --nnodes <hosts> --node_rank <index of this host> --nproc_per_node
<SM_NUM_GPUS or 1> --master_addr <master> --master_port <port> <entry_point> <args>``. torchrun starts the
processes and gives each its ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
the supervisor also exports ``MASTER_ADDR``, ``MASTER_PORT`` and ``WORLD_SIZE`` to the launcher, as
SageMaker's PyTorch toolkit does.

The master is the first distribution host. A single-host job rendezvouses on ``127.0.0.1``; a multi-host
job on the master's address as the backend placed it (the IP, since torch's C++ rendezvous does not see the
host names that :mod:`trainforge.runtime.hostnames` teaches Python). The port is 7777 (SageMaker's) unless the
backend chose one (the local backend does, as all hosts share this machine); a single-host job whose machine
already has 7777 taken (another job) takes a free port.

Every host of a multi-host job also gets the variables SageMaker's PyTorch toolkit sets before it runs the
script on each host (:func:`rendezvous_env`), with or without torchrun.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainforge.runtime.failure import algorithm_error
from trainforge.runtime.toolkit import EntryPointType

TORCH_DISTRIBUTED_HP = "sagemaker_torch_distributed_enabled"
PYTORCH_DDP_HP = "sagemaker_pytorch_ddp_enabled"
TORCHRUN_FLAGS = (TORCH_DISTRIBUTED_HP, PYTORCH_DDP_HP)
TORCHRUN_MODULE = "torch.distributed.run"
MASTER_PORT = 7777
LOOPBACK = "127.0.0.1"


def torchrun_enabled(framework_params: Mapping[str, Any]) -> bool:
    """Whether the additional framework parameters ask for a torchrun launch (a flag that is ``True``).

    Values are the decoded hyperparameters, so ``"true"`` arrived as True; the string ``"True"`` (the
    generic Estimator's ``str()`` encoding) counts as well.
    """
    return any(framework_params.get(flag) in (True, "True", "true") for flag in TORCHRUN_FLAGS)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP listener could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port the OS reports free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


RENDEZVOUS_PORTS = 3
"""Consecutive ports a multi-host job may listen on from ``MASTER_PORT``: torch's rendezvous, then the XGBoost
helper's two rings (``MASTER_PORT + 1`` and ``+ 2``)."""
_PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(p) for p in Path(_PORT_RANGE_FILE).read_text(encoding="ascii").split()[:2])
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def _all_free(host: str, first: int, count: int) -> bool:
    socks: list[socket.socket] = []
    try:
        for port in range(first, first + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


def free_port_block(count: int = RENDEZVOUS_PORTS, host: str = LOOPBACK, *, attempts: int = 200) -> int:
    """The first of ``count`` consecutive TCP ports free on ``host``, chosen below the kernel's ephemeral range, so
    the port an outgoing connection picks can never take one of them between this choice and the job's bind (a port
    the OS hands out from ``bind(0)`` lies in that range, and so do its neighbours). Falls back to
    :func:`free_port` when no block below the range is free."""
    low, _high = _ephemeral_range()
    floor = 10000
    if low - floor > count:
        rng = random.Random()
        for _ in range(attempts):
            first = rng.randrange(floor, low - count)
            if _all_free(host, first, count):
                return first
    return free_port(host)


@dataclass(frozen=True)
class TorchrunLaunch:
    """One host's torchrun launch: the node layout and the rendezvous address."""

    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str
    master_port: int

    @property
    def world_size(self) -> int:
        """Processes across all hosts."""
        return self.nnodes * self.nproc_per_node

    def env(self) -> dict[str, str]:
        """Rendezvous variables exported to the launcher (torchrun passes them on to every process)."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "WORLD_SIZE": str(self.world_size),
        }

    def command(self, python: str, kind: EntryPointType, entry_point: str, args: list[str]) -> list[str]:
        """``python -m torch.distributed.run <options> <entry_point> <args>``.

        Raises:
            JobFailed: The entry point is a package (``setup.py``) or a command: as in SageMaker's toolkit,
                torch_distributed runs Python scripts only.
        """
        if kind is EntryPointType.PYTHON_PACKAGE:
            raise algorithm_error(
                "Python packages are not supported for torch_distributed. Please use a python script as the entry-point"
            )
        if kind is not EntryPointType.PYTHON_PROGRAM:
            raise algorithm_error(f"Unsupported entry point type for torch_distributed: {entry_point}")
        return [
            python,
            "-m",
            TORCHRUN_MODULE,
            "--nnodes",
            str(self.nnodes),
            "--node_rank",
            str(self.node_rank),
            "--nproc_per_node",
            str(self.nproc_per_node),
            "--master_addr",
            self.master_addr,
            "--master_port",
            str(self.master_port),
            entry_point,
            *args,
        ]


def interface_of(address: str) -> str | None:
    """The name of this machine's network interface that holds ``address`` (``lo`` for 127.0.0.1)."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == address for a in addrs):
            return name
    return None


def rendezvous_env(
    hosts: list[str], current: str, addresses: Mapping[str, str], master_port: int | None
) -> dict[str, str]:
    """What every host of a multi-host job gets, as SageMaker's PyTorch toolkit sets it: ``MASTER_ADDR`` (the
    first host's address), ``MASTER_PORT``, ``NCCL_SOCKET_IFNAME`` (the interface of this host's address),
    ``NCCL_IB_DISABLE=1``, ``NCCL_DEBUG=WARN``; and ``TRAINFORGE_HOST_ADDRESSES`` for host-name resolution.
    Empty for a single-host job."""
    if len(hosts) <= 1:
        return {}
    import json

    from trainforge.runtime.hostnames import ADDRESSES_ENV

    table = {h: addresses.get(h, LOOPBACK) for h in hosts}
    env = {
        "MASTER_ADDR": table[hosts[0]],
        "MASTER_PORT": str(master_port or MASTER_PORT),
        "NCCL_IB_DISABLE": "1",
        "NCCL_DEBUG": "WARN",
        ADDRESSES_ENV: json.dumps(table, separators=(",", ":")),
    }
    interface = interface_of(table.get(current, LOOPBACK))
    if interface:
        env["NCCL_SOCKET_IFNAME"] = interface
    return env


def torchrun_launch(
    train_env: Mapping[str, Any], *, master_port: int | None = None, master_addr: str | None = None
) -> TorchrunLaunch:
    """The torchrun launch for this host of a training environment (:func:`toolkit.training_env`).

    Nodes are the distribution hosts (all hosts unless instance groups say otherwise), this host's rank is
    its index among them, one process per GPU (one on a host without GPUs). ``master_port`` and
    ``master_addr`` override the choices described in the module docstring.

    Raises:
        JobFailed: This host is not one of the distribution hosts.
    """
    hosts = list(train_env.get("distribution_hosts") or train_env["hosts"])
    current = str(train_env["current_host"])
    if current not in hosts:
        raise algorithm_error(f"torch_distributed: host {current} is not one of the distribution hosts {hosts}")
    single = len(hosts) == 1
    if master_port is None:
        master_port = MASTER_PORT if not single or port_is_free(MASTER_PORT) else free_port()
    return TorchrunLaunch(
        nnodes=len(hosts),
        node_rank=hosts.index(current),
        nproc_per_node=max(1, int(train_env.get("num_gpus") or 0)),
        master_addr=LOOPBACK if single else (master_addr or str(train_env.get("master_hostname") or hosts[0])),
        master_port=master_port,
    )
