"""The Ray backend (``TRAINFORGE_BACKEND=ray``): each job's hosts run on a Ray cluster.

One job = one detached placement group (``trainforge:<namespace>:<job>``) with one bundle per host, sized from
the instance type (vCPUs -> ``CPU``, GPUs -> ``GPU``; memory is not reserved) and laid out with
``TRAINFORGE_RAY_PLACEMENT`` (``STRICT_SPREAD``: one node per host; ``PACK``: hosts may share a node). In each
bundle a detached named actor ``trainforge:<job>:<host>`` (:class:`~trainforge.backends.ray_node.SupervisorHost`,
zero CPUs, the bundle's GPUs) starts that host's supervisor on its node, with every host's node IP as
``host_addresses``. The placement group holds the job's resources until the job is released.

Everything about a running job can be found again from its handle (names, not object references), so a
restarted server reconnects and carries on: :meth:`RayBackend.hosts_alive` asks the actors by name, and tells
them once where this server is now (its advertised URL, else the URL in its ``server.json``): each actor keeps a
node-local ``server.json`` that its supervisor re-reads when the server stops answering, so a server restarted
on another port is found again, as on the local backend.

Lifecycle of the Ray objects: :meth:`RayBackend.release` (the scheduler calls it when a job ended) kills what
is left of the job's hosts, the actors and the placement group. As a safety net the backend also releases a
job by itself when :meth:`~RayBackend.hosts_alive` finds none of its supervisors running, when the
supervisors of a cancelled job have all exited, and on a sweep of this namespace's placement groups whose
supervisors all ended: at start, every :data:`SWEEP_PERIOD_S` in the background, and (at most every
:data:`SWEEP_INTERVAL_S`) when a launch finds the cluster full.

The server imports Ray only when this backend is chosen; the nodes need ``trainforge[ray]`` installed in the
Python that runs Ray there.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from trainforge.backends.base import LaunchRequest
from trainforge.backends.local import UPLOAD_ALLOWANCE_S
from trainforge.backends.ray_node import SupervisorHost
from trainforge.backends.ray_resources import bundle_for, fmt_resources, refuse_never_fitting, shortfall
from trainforge.errors import BackendError, CapacityError, TrainforgeError, ValidationError
from trainforge.scheduler.instances import InstanceType
from trainforge.settings import Settings
from trainforge.spec.contract import host_name

log = logging.getLogger("trainforge.backends.ray")

PLACEMENT_WAIT_S = 2.0
"""How long a launch waits for its placement group before the job goes back to ``Pending``."""
START_TIMEOUT_S = 120.0
"""How long a launch waits for the hosts' actors to start their supervisors."""
ASK_TIMEOUT_S = 10.0
"""How long a liveness or stop request waits for the actors' answers."""
SWEEP_INTERVAL_S = 2.0
"""Least time between two sweeps for ended jobs triggered by a launch that found the cluster full."""
SWEEP_PERIOD_S = 30.0
"""Time between two sweeps of the background sweeper (frees ended jobs' resources on an idle server too)."""
ADDRESS_SETTING = "TRAINFORGE_RAY_ADDRESS"


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ValidationError(
            "TRAINFORGE_BACKEND=ray needs Ray on the server: install trainforge[ray] (pip install 'trainforge[ray]')",
            field="TRAINFORGE_BACKEND",
        ) from None


def _check_reachable(address: str) -> None:
    """Fail fast (instead of Ray's long retry loop) when a ``host:port`` address refuses connections."""
    if "://" in address or address == "auto" or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"{ADDRESS_SETTING}={address}: cannot reach the Ray cluster ({exc}). Start it with `ray start --head` "
            f"or point {ADDRESS_SETTING} at its head node (host:port of the GCS, usually port 6379).",
            field=ADDRESS_SETTING,
        ) from None


def connect(address: str | None, namespace: str) -> Any:
    """Connect this process to the Ray cluster at ``address`` (None: ``auto``) in ``namespace``; return ``ray``.

    Raises:
        ValidationError: Ray is not installed, or the cluster cannot be reached (the message names
            ``TRAINFORGE_RAY_ADDRESS``).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    target = address or "auto"
    _check_reachable(target)
    try:
        ray.init(
            address=target,
            namespace=namespace,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ... for a bad cluster
        raise ValidationError(
            f"{ADDRESS_SETTING}={target}: cannot connect to the Ray cluster: {exc}. Check the address (host:port "
            "of the head node) and that the server uses the cluster's Ray version and auth mode (RAY_AUTH_MODE).",
            field=ADDRESS_SETTING,
        ) from None
    return ray


class RayBackend:
    """Runs each host's supervisor in a placement-group bundle of a Ray cluster (see the module docstring)."""

    name = "ray"
    uses_local_capacity = False

    def __init__(
        self,
        *,
        address: str | None,
        namespace: str,
        placement: str,
        server_file: Path | None = None,
        advertise_url: str | None = None,
    ) -> None:
        """Connect to the cluster now, so a wrong address fails the server's start, not its first job.

        ``advertise_url`` (else the ``url`` in this server's ``server_file``, once it is written) is where a
        restarted server tells the supervisors of jobs launched by its predecessor to find it.

        Raises:
            ValidationError: Ray is missing or the cluster cannot be reached.
        """
        self.address = address or "auto"
        self.namespace = namespace
        self.placement = placement
        self._server_file = server_file
        self._server_url = advertise_url.rstrip("/") if advertise_url else None
        self._told: set[str] = set()  # jobs whose supervisors were told this server's URL
        self._ray = connect(address, namespace)
        self._host_cls: Any = self._ray.remote(SupervisorHost)
        self._actors: dict[str, Any] = {}
        self._released: set[str] = set()
        self._launching: set[str] = set()
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self.sweep()
        threading.Thread(target=self._sweep_forever, daemon=True, name="trainforge-ray-sweeper").start()

    @classmethod
    def from_settings(cls, settings: Settings) -> RayBackend:
        """The backend ``TRAINFORGE_RAY_ADDRESS``, ``_RAY_NAMESPACE`` and ``_RAY_PLACEMENT`` describe."""
        return cls(
            address=settings.ray_address,
            namespace=settings.ray_namespace,
            placement=settings.ray_placement,
            server_file=settings.server_file,
            advertise_url=settings.advertise_url,
        )

    # ----------------------------------------------------------------------------------------------- names

    def group_name(self, job_name: str) -> str:
        """The job's placement group: ``trainforge:<namespace>:<job>``."""
        return f"trainforge:{self.namespace}:{job_name}"

    @staticmethod
    def actor_name(job_name: str, host: str) -> str:
        """The name of a host's actor in the backend's namespace: ``trainforge:<job>:<host>``."""
        return f"trainforge:{job_name}:{host}"

    # ------------------------------------------------------------------------------------------- capacity

    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def check_fits(self, instance: InstanceType, count: int) -> None:
        """Refuse (``ValidationError``) a job the cluster's nodes could never hold, whatever else ended.

        A host must fit one node; with ``STRICT_SPREAD`` each host needs a different node, with ``STRICT_PACK``
        all hosts one node, with ``PACK``/``SPREAD`` the hosts may share nodes as their resources allow.
        """
        try:
            alive_nodes = self._alive_nodes()
        except Exception as exc:
            raise BackendError(f"cannot read the nodes of the Ray cluster at {self.address}: {exc}") from None
        nodes = [{k: float(v) for k, v in n.get("Resources", {}).items()} for n in alive_nodes]
        refuse_never_fitting(nodes, instance, count, self.placement, where=f"the Ray cluster at {self.address}")

    def _shortfall(self, bundle: dict[str, float], count: int) -> str | None:
        """Why ``count`` bundles cannot fit in what the cluster has free now (None: they might)."""
        return shortfall(self._ray.available_resources(), self._ray.cluster_resources(), bundle, count)

    # --------------------------------------------------------------------------------------------- launch

    def launch(self, request: LaunchRequest) -> dict[str, Any]:
        """Reserve one bundle per host and start each host's supervisor on its bundle's node.

        Returns:
            ``{"backend": "ray", "job", "namespace", "placement_group", "hosts": [{"host", "actor", "pid",
            "start_time", "node_ip", "node_id", "root", "gpu_ids"}, ...]}``.

        Raises:
            CapacityError: The cluster has no room for the job now (``Waiting for capacity on the Ray
                cluster: ...``); nothing is left reserved.
            BackendError: The supervisors could not be started; nothing is left running or reserved.
        """
        job = request.job_name
        inst = request.placement.instance
        count = int(request.spec["ResourceConfig"].get("InstanceCount") or 1)
        hosts = [host_name(i) for i in range(count)]
        bundle = bundle_for(inst)
        wanted = f"{count} x {inst.name} ({fmt_resources(bundle)} each, {self.placement})"
        with self._lock:
            self._launching.add(job)
        try:
            # A launch means none of this job's hosts legitimately runs: drop what an interrupted launch left.
            self._remove(job, hosts)
            short = self._shortfall(bundle, count)
            if short and self._sweep_if_due():
                short = None  # ended jobs were released: let the placement group itself say whether it fits now
            if short:
                raise CapacityError(f"Waiting for capacity on the Ray cluster: {wanted}: {short}")
            group = self._reserve(job, bundle, count, wanted)
            try:
                started = self._start_hosts(request, group, hosts)
            except BaseException:
                self._remove(job, hosts)
                raise
        except TrainforgeError:
            raise
        except Exception as exc:  # the cluster itself failed (unreachable GCS, a node lost mid-launch, ...)
            raise BackendError(f"the Ray cluster at {self.address} failed while launching {job}: {exc}") from None
        finally:
            with self._lock:
                self._launching.discard(job)
        with self._lock:
            self._released.discard(job)
            self._told.add(job)
        return {
            "backend": self.name,
            "job": job,
            "namespace": self.namespace,
            "placement_group": self.group_name(job),
            "hosts": started,
        }

    def _reserve(self, job: str, bundle: dict[str, float], count: int, wanted: str) -> Any:
        from ray.util.placement_group import placement_group, remove_placement_group

        group = placement_group(
            [dict(bundle) for _ in range(count)],
            strategy=self.placement,
            name=self.group_name(job),
            lifetime="detached",
        )
        if not group.wait(timeout_seconds=PLACEMENT_WAIT_S):
            with contextlib.suppress(Exception):
                remove_placement_group(group)
            raise CapacityError(
                f"Waiting for capacity on the Ray cluster: {wanted} do not fit on the nodes' free resources now"
            )
        return group

    def _start_hosts(self, request: LaunchRequest, group: Any, hosts: list[str]) -> list[dict[str, Any]]:
        from ray.util.placement_group import placement_group_table
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray = self._ray
        node_ips = {n["NodeID"]: n["NodeManagerAddress"] for n in self._alive_nodes()}
        placed = placement_group_table(group).get("bundles_to_node_id", {})
        addresses = {host: node_ips.get(placed.get(i, ""), "127.0.0.1") for i, host in enumerate(hosts)}
        inst = request.placement.instance
        actors = []
        for i, host in enumerate(hosts):
            actor = self._host_cls.options(
                name=self.actor_name(request.job_name, host),
                namespace=self.namespace,
                lifetime="detached",
                max_restarts=0,
                num_cpus=0,
                num_gpus=inst.gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=group, placement_group_bundle_index=i
                ),
            ).remote()
            actors.append(actor)
            self._actors[f"{self.namespace}/{self.actor_name(request.job_name, host)}"] = actor
        try:
            # The rendezvous port must be free where the first host runs: that host's actor picks it.
            master_port = ray.get(actors[0].free_port.remote(), timeout=START_TIMEOUT_S) if len(hosts) > 1 else None
            refs = [
                actor.start.remote(
                    self._config(request, host, hosts, addresses, master_port), self.namespace, request.envs_root
                )
                for actor, host in zip(actors, hosts, strict=True)
            ]
            results = ray.get(refs, timeout=START_TIMEOUT_S)
        except Exception as exc:
            raise BackendError(
                f"could not start the supervisors of {request.job_name} on the Ray cluster: {exc}"
            ) from None
        return [
            {"host": host, "actor": self.actor_name(request.job_name, host), **result}
            for host, result in zip(hosts, results, strict=True)
        ]

    @staticmethod
    def _config(
        request: LaunchRequest, host: str, hosts: list[str], addresses: dict[str, str], master_port: int | None
    ) -> dict[str, Any]:
        """The host's supervisor config, less what its node fills in (interpreter, env cache, vCPUs, GPUs)."""
        cfg = request.host_config(
            host,
            hosts,
            addresses=addresses,
            master_port=master_port,
            python="python",  # replaced by the node's interpreter
            server_file=None,  # a path on the server's machine, meaningless on a node
        )
        return cfg.model_dump(mode="json")

    # ------------------------------------------------------------------------------------- watch and stop

    def _actor(self, name: str, namespace: str | None = None) -> Any | None:
        """The live actor called ``name`` in ``namespace`` (default: the backend's), or None when there is none.
        Raises only when the cluster cannot be asked."""
        key = f"{namespace or self.namespace}/{name}"
        actor = self._actors.get(key)
        if actor is not None:
            return actor
        try:
            actor = self._ray.get_actor(name, namespace=namespace or self.namespace)
        except ValueError:
            return None
        self._actors[key] = actor
        return actor

    def _ask(self, handle: dict[str, Any], method: str, *args: Any) -> dict[str, Any]:
        """Call ``method`` on each host's actor; per host: its answer, ``None`` when the actor is gone, or
        ``...`` when the answer did not come in time (or the actor is unreachable for now)."""
        ray = self._ray
        answers: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        namespace = str(handle.get("namespace") or self.namespace)
        for i, h in enumerate(handle.get("hosts", [])):
            host = str(h.get("host", host_name(i)))
            try:
                actor = self._actor(str(h.get("actor") or self.actor_name(self._job_of(handle), host)), namespace)
                if actor is None:
                    answers[host] = None
                else:
                    refs[host] = getattr(actor, method).remote(*args)
            except Exception:  # the cluster does not answer: unknown
                log.warning("could not reach the actor of %s/%s", self._job_of(handle), host, exc_info=True)
                answers[host] = ...
        deadline = time.monotonic() + ASK_TIMEOUT_S
        for host, ref in refs.items():
            try:
                answers[host] = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
            except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
                answers[host] = ...
            except ray.exceptions.RayActorError:  # the actor died (killed, its node died): so did its supervisor
                self._actors.pop(f"{namespace}/{self.actor_name(self._job_of(handle), host)}", None)
                answers[host] = None
            except Exception:
                log.warning("no answer from the actor of %s/%s", self._job_of(handle), host, exc_info=True)
                answers[host] = ...
        return answers

    @staticmethod
    def _job_of(handle: dict[str, Any]) -> str:
        return str(handle.get("job", ""))

    def adopt(self, job_name: str, attempt: int, count: int) -> dict[str, Any] | None:
        """Find the job's host actors by name (a launch the server died in the middle of)."""
        hosts = [host_name(i) for i in range(count)]
        try:
            if not any(self._actor(self.actor_name(job_name, h)) is not None for h in hosts):
                return None
        except Exception:
            log.warning("could not look up the Ray actors of %s", job_name, exc_info=True)
            return None
        return {
            "backend": self.name,
            "job": job_name,
            "namespace": self.namespace,
            "placement_group": self.group_name(job_name),
            "hosts": [{"host": h, "actor": self.actor_name(job_name, h)} for h in hosts],
        }

    def hosts_alive(self, handle: dict[str, Any]) -> dict[str, bool]:
        """Per host, whether its supervisor runs. An actor that is gone (killed, its node died) is not alive; one
        that does not answer in time is counted alive (unknown is not dead). When no host is alive, the job's
        actors and placement group are released. Works from a restarted server (actors are found by name)."""
        answers = self._ask(handle, "alive")
        alive = {host: answer is ... or bool(answer) for host, answer in answers.items()}
        if alive and not any(alive.values()):
            self.release(handle)
        elif self._job_of(handle) not in self._told:
            self._tell_where(handle)
        return alive

    def _current_url(self) -> str | None:
        """This server's URL for supervisors: the advertised one, else the one in its own ``server.json``."""
        if self._server_url is None and self._server_file is not None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                info = json.loads(self._server_file.read_text(encoding="utf-8"))
                if info["pid"] == os.getpid():
                    self._server_url = str(info["url"]).rstrip("/")
        return self._server_url

    def _tell_where(self, handle: dict[str, Any]) -> None:
        """Point the supervisors of a job launched by an earlier server process at this one (its port may have
        changed); once per job and server process."""
        url = self._current_url()
        if url is None:
            return  # not serving yet: the next pass tells them
        answers = self._ask(handle, "point_to", url)
        if all(answer is not ... for answer in answers.values()):
            self._told.add(self._job_of(handle))

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """SIGTERM each live supervisor through its actor; the actor SIGKILLs the supervisor's session if it
        outlives ``grace_s`` plus the upload allowance. Once every supervisor has exited, the job's actors and
        placement group are released (in a background thread). Never raises for a job already gone."""
        kill_after = grace_s + UPLOAD_ALLOWANCE_S
        try:
            self._ask(handle, "terminate", kill_after)
        except Exception:
            log.warning("could not ask the hosts of %s to stop", self._job_of(handle), exc_info=True)
        threading.Thread(
            target=self._release_when_done, args=(handle, kill_after + 30.0), daemon=True, name="trainforge-ray-stop"
        ).start()

    def kill(self, handle: dict[str, Any]) -> None:
        """SIGKILL what still runs of the job's hosts and free its actors and placement group now (see
        :meth:`release`); a later :meth:`launch` of the job starts afresh. Never raises."""
        self.release(handle)

    def _release_when_done(self, handle: dict[str, Any], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not any(self.hosts_alive(handle).values()):
                    return  # hosts_alive released the job
            time.sleep(1.0)
        self.release(handle)

    def release(self, handle: dict[str, Any]) -> None:
        """Free what a job holds on the cluster: SIGKILL whatever still runs in its hosts' sessions, kill its
        actors and remove its placement group. Idempotent; never raises. Call it once the job ended (use
        :meth:`cancel` first for a graceful stop)."""
        job = self._job_of(handle)
        with self._lock:
            if job in self._released or job in self._launching:
                return
            self._released.add(job)
        hosts = [str(h.get("host", host_name(i))) for i, h in enumerate(handle.get("hosts", []))]
        try:
            self._remove(job, hosts, str(handle.get("namespace") or self.namespace))
        except Exception:
            with self._lock:
                self._released.discard(job)
            log.warning("could not release the Ray resources of %s", job, exc_info=True)

    def _remove(self, job: str, hosts: list[str], namespace: str | None = None) -> None:
        """Kill the job's actors (after SIGKILLing their sessions) and remove its placement group."""
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

        ray = self._ray
        namespace = namespace or self.namespace
        names = [self.actor_name(job, host) for host in hosts]
        actors = [(name, self._actor(name, namespace)) for name in names]
        kills = [actor.kill.remote() for _, actor in actors if actor is not None]
        if kills:
            with contextlib.suppress(Exception):
                ray.wait(kills, num_returns=len(kills), timeout=ASK_TIMEOUT_S)
        for name, actor in actors:
            self._actors.pop(f"{namespace}/{name}", None)
            if actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
        group_name = f"trainforge:{namespace}:{job}"
        for group_id, info in placement_group_table().items():
            if info.get("name") == group_name and info.get("state") != "REMOVED":
                with contextlib.suppress(Exception):
                    remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(group_id))))

    # ---------------------------------------------------------------------------------------------- sweep

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(SWEEP_PERIOD_S)
            if time.monotonic() - self._last_sweep >= SWEEP_PERIOD_S / 2:
                self.sweep()

    def _sweep_if_due(self) -> bool:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL_S:
            return False
        return self.sweep() > 0

    def sweep(self) -> int:
        """Release this namespace's jobs whose supervisors have all ended (a safety net for jobs nobody
        released: ended while no server ran, or a scheduler that does not call :meth:`release`). Returns how
        many jobs were released; never raises."""
        from ray.util.placement_group import placement_group_table

        self._last_sweep = time.monotonic()
        prefix = self.group_name("")
        released = 0
        try:
            table = placement_group_table()
        except Exception:
            log.warning("could not list the Ray cluster's placement groups", exc_info=True)
            return 0
        for info in table.values():
            name = str(info.get("name") or "")
            if not name.startswith(prefix) or info.get("state") == "REMOVED":
                continue
            job = name[len(prefix) :]
            with self._lock:
                if job in self._launching:
                    continue
            hosts = [host_name(int(i)) for i in info.get("bundles", {})]
            handle = {
                "job": job,
                "namespace": self.namespace,
                "placement_group": name,
                "hosts": [{"host": h, "actor": self.actor_name(job, h)} for h in hosts],
            }
            try:
                answers = self._ask(handle, "alive")
            except Exception:
                continue
            if all(answer is None or answer is False for answer in answers.values()):
                with self._lock:
                    self._released.discard(job)
                self.release(handle)
                released += 1
        return released
