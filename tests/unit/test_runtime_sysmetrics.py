"""The system-metrics sampler's parts on this machine: the job's GPUs, NVML, process-group usage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.wait import wait_for
from trainforge.runtime.agent import AgentClient, ServerLocator
from trainforge.runtime.sysmetrics import GpuReader, GroupUsage, SystemMetricsSampler, job_gpus, machine_sample
from trainforge.spec import metrics as names


def test_the_jobs_gpus_come_from_cuda_visible_devices() -> None:
    assert job_gpus("2,3", 0) == ["2", "3"]
    assert job_gpus(" GPU-8f1c , 1", 1) == ["GPU-8f1c", "1"]
    assert job_gpus("", 4) == [] and job_gpus("-1", 4) == [] and job_gpus("NoDevFiles", 1) == []
    assert job_gpus(None, 2) is None  # unset on a GPU type: every GPU of the machine
    assert job_gpus(None, 0) == []


def test_gpu_metrics_are_skipped_without_gpus_or_nvml(caplog: pytest.LogCaptureFixture) -> None:
    none = GpuReader([])
    assert none.sample() == []
    caplog.set_level("INFO", logger="trainforge.runtime.sysmetrics")
    reader = GpuReader(None)
    samples = reader.sample()
    reader.close()
    reader.close()
    if samples:  # a machine with NVML and GPUs: two metrics per GPU, named by position
        assert samples[0][0] == names.gpu_utilization(0) and samples[1][0] == names.gpu_memory_used_mb(0)
    else:
        assert [r.message for r in caplog.records if r.message.startswith("GPU metrics off")]


BUSY = "import time\nt = time.time()\nwhile time.time() - t < 60:\n    pass\n"


def test_group_usage_counts_every_process_of_the_group() -> None:
    script = f"import subprocess, sys\nkid = subprocess.Popen([sys.executable, '-c', {BUSY!r}])\n{BUSY}"
    leader = subprocess.Popen([sys.executable, "-c", script], process_group=0)
    try:
        usage = GroupUsage(leader.pid)

        def both() -> list[psutil.Process] | None:
            members = usage.members()
            return members if len(members) == 2 else None

        procs = wait_for(both, what="both processes of the group")

        def cpu() -> list[float]:
            return [sum(p.cpu_times()[:2]) for p in procs]

        before_first = time.monotonic()
        usage.sample()
        start = cpu()
        # Each process (leader and child) uses 0.3 s of CPU, however busy this machine is.
        wait_for(lambda: all(c - s >= 0.3 for c, s in zip(cpu(), start, strict=True)), timeout=60, what="CPU time")
        percent, rss_mib = usage.sample()
        window = time.monotonic() - before_first
        assert percent / 100 * window >= 0.55  # both processes counted: the leader alone has only ~0.3 s
        assert rss_mib > 2  # two Python interpreters' resident memory
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_machine_figures_are_percentages(tmp_path: Path) -> None:
    values = dict(machine_sample(tmp_path))
    assert set(values) == {names.MACHINE_CPU_PERCENT, names.MEMORY_PERCENT, names.DISK_PERCENT}
    assert all(0 <= v <= 100 for v in values.values())


def test_an_interval_of_zero_samples_nothing() -> None:
    client = AgentClient(locator=ServerLocator("http://127.0.0.1:9"), token="t", job_name="j", host="algo-1")
    sampler = SystemMetricsSampler(client=client, interval=0, disk_path=Path("/"))
    assert not sampler.enabled
    sampler.start(1, [])
    assert sampler.close() and sampler.close()
    assert SystemMetricsSampler(client=client, interval=0.01, disk_path=Path("/")).interval == 0.1
