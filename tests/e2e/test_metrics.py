"""End to end: training metrics from a real job's log lines, system metrics from its supervisor, read back
through describe, the metrics route, ``TrainingJobAnalytics`` and ``estimator.training_job_analytics``."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.analytics import TrainingJobAnalytics
from trainforge.estimator import Estimator
from trainforge.settings import Settings

SAMPLE_INTERVAL_S = 0.2
DEFINITIONS = [
    {"Name": "loss", "Regex": r"loss=(\S+)"},
    {"Name": "validation:rmse", "Regex": r".*\[[0-9]+\].*#011validation-rmse:(\S+)"},
]
SYSTEM = {
    "system/cpu_percent",
    "system/machine_cpu_percent",
    "system/memory_used_mb",
    "system/memory_percent",
    "system/disk_percent",
}

TRAIN = """
    import time

    for epoch in range(1, 4):
        started = time.time()
        while time.time() - started < 0.4:  # some real work for the CPU figures
            pass
        print(f"epoch={epoch} loss={1.0 / epoch}", flush=True)
        print(f"[{epoch}]\\ttrain-rmse:{0.5 / epoch}\\tvalidation-rmse:{0.6 / epoch}", flush=True)
    print("loss=nan-ish", flush=True)
"""

TICKING = """
    import time

    for i in range(60):
        print(f"tick {i}", flush=True)
        time.sleep(0.1)
"""


@pytest.fixture
def metrics_server(tf_home: Path) -> Iterator[ServerProcess]:
    """A server whose supervisors sample system metrics every 0.2 s."""
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_SYSTEM_METRICS_INTERVAL_SECONDS": str(SAMPLE_INTERVAL_S)}
    srv = ServerProcess(tf_home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(tf_home)


def estimator(session: trainforge.Session, source: Path) -> Estimator:
    return script_estimator(session, source, metric_definitions=DEFINITIONS)


def by_name(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["name"], []).append(p)
    return out


def test_a_jobs_metrics_are_stored_and_read_back_like_sagemaker(
    metrics_server: ServerProcess, make_source: Any
) -> None:
    session = trainforge.Session(settings=Settings(home=metrics_server.home))
    est = estimator(session, make_source({"train.py": TRAIN}))
    est.fit(logs="None")
    name = est.latest_training_job.name
    d = session.client.describe_training_job(name)
    assert d["TrainingJobStatus"] == "Completed"

    points = by_name(session.client.metrics(name)["points"])
    assert [p["value"] for p in points["loss"]] == [1.0, 0.5, 1.0 / 3]  # "loss=nan-ish" is skipped
    assert [p["value"] for p in points["validation:rmse"]] == [0.6 / e for e in (1, 2, 3)]
    # Each point carries the timestamp of its line, inside the job's training time.
    logged = {e["message"]: e["timestamp"] for e in session.client.logs(name, limit=10000)["events"]}
    assert [p["timestamp"] for p in points["loss"]] == [logged[f"epoch={i} loss={1.0 / i}"] for i in (1, 2, 3)]
    assert all(d["TrainingStartTime"] <= p["timestamp"] <= d["TrainingEndTime"] for p in points["loss"])

    final = {m["MetricName"]: m for m in d["FinalMetricDataList"]}
    assert set(final) == {"loss", "validation:rmse"}  # never system metrics
    assert final["loss"]["Value"] == 1.0 / 3 and final["loss"]["Timestamp"] == points["loss"][-1]["timestamp"]
    assert final["validation:rmse"]["Value"] == 0.6 / 3

    df = TrainingJobAnalytics(name, sagemaker_session=session).dataframe()
    assert list(df.columns) == ["timestamp", "metric_name", "value"]
    assert df["metric_name"].tolist() == ["loss"] * 3 + ["validation:rmse"] * 3
    assert df["value"].tolist() == [1.0, 0.5, 1.0 / 3, 0.6, 0.3, 0.6 / 3]
    # Every metric's timestamps count from the training start: each point sits where its line was printed.
    start = d["TrainingStartTime"]
    for metric in ("loss", "validation:rmse"):
        times = df[df["metric_name"] == metric]["timestamp"].tolist()
        assert times == pytest.approx([p["timestamp"] - start for p in points[metric]]), metric
    loss_times = df[df["metric_name"] == "loss"]["timestamp"].tolist()
    assert loss_times[0] >= 0.0 and loss_times == sorted(loss_times) and loss_times[-1] > 0.5
    assert est.training_job_analytics.dataframe().equals(df)

    # System metrics: sampled at the start and then every 0.2 s while the code ran (~1.2 s), on algo-1.
    for metric in SYSTEM:
        assert len(points[metric]) >= 3, metric
        assert {p["host"] for p in points[metric]} == {"algo-1"}
    assert not [n for n in points if n.startswith("system/gpu")]  # no GPU on a CPU instance type
    assert max(p["value"] for p in points["system/memory_used_mb"]) > 5
    cpu = TrainingJobAnalytics(name, ["system/cpu_percent"], sagemaker_session=session).dataframe()
    assert len(cpu) == len(points["system/cpu_percent"]) and cpu["value"].max() > 0


def test_system_metrics_sampled_while_the_server_is_down_are_delivered_once(
    metrics_server: ServerProcess, make_source: Any
) -> None:
    session = trainforge.Session(settings=Settings(home=metrics_server.home))
    est = estimator(session, make_source({"train.py": TICKING}))
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(
        lambda: session.client.metrics(name, names=["system/memory_percent"])["points"],
        timeout=60,
        what="a first system metric point",
    )
    job_log = metrics_server.home / "jobs" / name / "algo-1" / "job.log"
    ticks_before = job_log.read_text().count("tick ")
    metrics_server.kill(signal.SIGKILL)
    down_at = time.time()
    # The job goes on for ~1.5 s (15 ticks) with no server; its sampler keeps sampling.
    wait_for(lambda: job_log.read_text().count("tick ") >= ticks_before + 15, timeout=60, what="the job to go on")
    up_at = time.time()
    metrics_server.start()
    session = trainforge.Session(settings=Settings(home=metrics_server.home))
    wait_for(
        lambda: session.describe_training_job(name)["TrainingJobStatus"] == "Completed",
        timeout=120,
        what="the job to complete after the restart",
    )
    points = session.client.metrics(name, names=["system/memory_percent"])["points"]
    times = [p["timestamp"] for p in points]
    assert times == sorted(times) and len(times) == len(set(times))  # nothing stored twice
    assert len([t for t in times if down_at < t < up_at]) >= 4  # sampled while down, delivered after
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 1.5, gaps  # no hole where the server was down
