"""System metrics of one host of a job, sampled by its supervisor and posted as ``system/...`` metric points.

While the job's code runs, :class:`SystemMetricsSampler` takes a sample when started and then every
``interval`` seconds:

- ``system/cpu_percent``: CPU used by the job's process group (the user code and everything it started) over
  the last interval, in percent of one core; ``system/machine_cpu_percent``: the whole machine, 0-100.
- ``system/memory_used_mb``: resident memory of the job's process group in MiB; ``system/memory_percent``:
  memory in use on the machine.
- ``system/disk_percent``: space used on the file system of the job's root.
- ``system/gpu<i>_utilization`` and ``system/gpu<i>_memory_used_mb`` for each GPU of the job (``i`` is the
  GPU's position in the job's ``CUDA_VISIBLE_DEVICES``), read through NVML (``nvidia-ml-py``, imported on
  first use). Without the library, the NVIDIA driver or a GPU, GPU metrics are skipped (logged once).

Points are posted to ``/v1/agent/training-jobs/{name}/metrics`` from the sampler's own thread, each with a
``seq`` (its sample time in milliseconds) that the server stores once per (host, name, seq): a batch that
fails to reach the server stays queued and is sent again with the next sample, and a resent batch adds
nothing. :meth:`SystemMetricsSampler.close` delivers what is still queued, retrying while the server is
unreachable, for at most ``drain_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from trainforge.runtime.agent import AgentClient, ReplyKind
from trainforge.spec import metrics as names

log = logging.getLogger(__name__)

MIB = float(1 << 20)
MIN_INTERVAL = 0.1
MAX_QUEUED = 50_000
MAX_BATCH = 5_000
DRAIN_SECONDS = 60.0


def job_gpus(cuda_visible_devices: str | None, instance_gpus: int) -> list[str] | None:
    """The GPUs of a job as NVML identifiers (indices or UUIDs), in the job's order.

    ``CUDA_VISIBLE_DEVICES`` of the job when set (empty or ``-1``: none); else every GPU of the machine
    (None) when the instance type has GPUs, and none otherwise.
    """
    if cuda_visible_devices is None:
        return None if instance_gpus > 0 else []
    tokens = [t.strip() for t in cuda_visible_devices.split(",") if t.strip()]
    if not tokens or tokens[0] in ("-1", "NoDevFiles"):
        return []
    return tokens


class GroupUsage:
    """CPU and resident memory of one process group, from ``/proc`` through psutil.

    CPU is measured as the growth of the members' CPU time between two calls; a process first seen counts
    with all the CPU time it used so far (it started after the previous call, or is the group's first).
    """

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self._cpu: dict[tuple[int, float], float] = {}
        self._last = time.monotonic()

    def members(self) -> list[psutil.Process]:
        """The live processes of the group."""
        found: list[psutil.Process] = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.pgid:
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def sample(self) -> tuple[float, float]:
        """``(cpu percent of one core since the previous call, resident MiB)`` of the group now."""
        now = time.monotonic()
        cpu_total = 0.0
        rss = 0
        seen: dict[tuple[int, float], float] = {}
        for proc in self.members():
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    times = proc.cpu_times()
                    used = float(times.user + times.system)
                    rss += int(proc.memory_info().rss)
            except psutil.Error:
                continue
            seen[key] = used
            cpu_total += used - self._cpu.get(key, 0.0)
        window = max(now - self._last, 1e-3)
        self._cpu = seen
        self._last = now
        return max(0.0, 100.0 * cpu_total / window), rss / MIB


class GpuReader:
    """Utilisation and memory of the job's GPUs through NVML; empty when NVML or the GPUs are not there."""

    def __init__(self, gpus: Sequence[str] | None) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._open(gpus)

    def _open(self, gpus: Sequence[str] | None) -> None:
        if gpus is not None and not gpus:
            return
        try:
            import pynvml  # nvidia-ml-py: imported here, so machines without it never pay for it
        except ImportError:
            log.info("GPU metrics off: the nvidia-ml-py package is not installed")
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.info("GPU metrics off: NVML is not available (%s)", exc)
            return
        self._nvml = pynvml
        try:
            ids = gpus if gpus is not None else [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
            for ident in ids:
                if ident.isdigit():
                    self._handles.append(pynvml.nvmlDeviceGetHandleByIndex(int(ident)))
                else:
                    self._handles.append(pynvml.nvmlDeviceGetHandleByUUID(ident))
        except pynvml.NVMLError as exc:
            log.info("GPU metrics off: cannot open the job's GPUs %s (%s)", gpus, exc)
            self.close()
        if self._nvml is not None and not self._handles:
            log.info("GPU metrics off: this machine has no GPU")

    def sample(self) -> list[tuple[str, float]]:
        """``(name, value)`` of each GPU's utilisation and used memory; empty (and closed) after an NVML error."""
        if self._nvml is None:
            return []
        out: list[tuple[str, float]] = []
        try:
            for i, handle in enumerate(self._handles):
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                out.append((names.gpu_utilization(i), float(util.gpu)))
                out.append((names.gpu_memory_used_mb(i), float(mem.used) / MIB))
        except self._nvml.NVMLError as exc:
            log.info("GPU metrics off: NVML failed (%s)", exc)
            self.close()
            return []
        return out

    def close(self) -> None:
        """Release NVML (idempotent)."""
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
        self._nvml = None
        self._handles = []


def machine_sample(disk_path: Path) -> list[tuple[str, float]]:
    """Machine-wide CPU (since the previous call of ``psutil.cpu_percent``), memory and disk use."""
    out = [
        (names.MACHINE_CPU_PERCENT, float(psutil.cpu_percent(interval=None))),
        (names.MEMORY_PERCENT, float(psutil.virtual_memory().percent)),
    ]
    try:
        out.append((names.DISK_PERCENT, float(psutil.disk_usage(str(disk_path)).percent)))
    except OSError as exc:
        log.debug("no disk usage for %s: %s", disk_path, exc)
    return out


class SystemMetricsSampler:
    """Samples a job's resource use on this host and posts it (see the module doc).

    Args:
        client: The agent client to post with; the sampler closes it in :meth:`close`.
        interval: Seconds between samples; 0 turns sampling off (values under 0.1 count as 0.1).
        disk_path: A path on the file system whose usage is reported (the job root).
        drain_seconds: How long :meth:`close` keeps trying to deliver queued points.
    """

    def __init__(
        self, *, client: AgentClient, interval: float, disk_path: Path, drain_seconds: float = DRAIN_SECONDS
    ) -> None:
        self._client = client
        self.interval = 0.0 if interval <= 0 else max(MIN_INTERVAL, interval)
        self._disk_path = disk_path
        self._drain_seconds = drain_seconds
        self._queue: deque[dict[str, Any]] = deque()
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._gone = False
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def enabled(self) -> bool:
        """Whether :meth:`start` samples at all."""
        return self.interval > 0

    def start(self, pgid: int, gpus: Sequence[str] | None) -> None:
        """Start sampling the process group ``pgid`` and the GPUs ``gpus`` (see :func:`job_gpus`); the first
        sample is taken at once. Does nothing when sampling is off or it was already started."""
        if not self.enabled or self._thread is not None or self._closed:
            return
        psutil.cpu_percent(interval=None)  # the machine-wide figure is measured from this call on
        group = GroupUsage(pgid)
        self._thread = threading.Thread(target=self._run, args=(group, gpus), name="trainforge-sysmetrics", daemon=True)
        self._thread.start()

    def close(self) -> bool:
        """Stop sampling, deliver queued points (for at most ``drain_seconds``), release the client.

        Idempotent. Returns True when every point was delivered (or none was taken).
        """
        if self._closed:
            return not self._queue
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._drain_seconds)
            if self._thread.is_alive():
                log.warning("system metrics: %d point(s) not delivered in %.0fs", len(self._queue), self._drain_seconds)
                self._cancel.set()
                self._thread.join(5.0)
        self._client.close()
        return not self._queue

    def _run(self, group: GroupUsage, gpus: Sequence[str] | None) -> None:
        reader = GpuReader(gpus)
        try:
            next_at = time.monotonic()
            while not self._stop.is_set() and not self._gone:
                self._enqueue(self._sample(group, reader))
                self._send(retry=False)
                next_at = max(next_at + self.interval, time.monotonic())
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    break
        except Exception:
            log.exception("system metrics sampling failed; no more samples")
        finally:
            reader.close()
        while self._queue and not self._gone and not self._cancel.is_set():
            if not self._send(retry=True):
                break

    def _sample(self, group: GroupUsage, reader: GpuReader) -> list[dict[str, Any]]:
        timestamp = time.time()
        cpu, rss_mb = group.sample()
        values = [(names.CPU_PERCENT, cpu), (names.MEMORY_USED_MB, rss_mb)]
        values += machine_sample(self._disk_path)
        values += reader.sample()
        seq = round(timestamp * 1000)
        return [{"name": n, "value": round(v, 3), "timestamp": timestamp, "seq": seq} for n, v in values]

    def _enqueue(self, points: Iterable[dict[str, Any]]) -> None:
        self._queue.extend(points)
        while len(self._queue) > MAX_QUEUED:
            self._queue.popleft()
            self._dropped += 1
            if self._dropped == 1:
                log.warning("system metrics: the server is unreachable; dropping the oldest queued points")

    def _send(self, *, retry: bool) -> bool:
        """Post the queue's head batch (retrying while unreachable when ``retry``); True if it was answered."""
        if not self._queue:
            return True
        batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
        body = {"host": self._client.host, "points": batch}
        if retry:
            reply = self._client.deliver("metrics", body, cancel=self._cancel)
        else:
            reply = self._client.send("metrics", body)
        if reply.kind is ReplyKind.RETRY:
            return False
        if reply.kind is ReplyKind.GONE:
            self._gone = True
            self._queue.clear()
            return True
        if reply.kind is not ReplyKind.OK:
            log.error("server refused %d system metric point(s): %s", len(batch), reply.error)
        for _ in batch:
            self._queue.popleft()
        return True
