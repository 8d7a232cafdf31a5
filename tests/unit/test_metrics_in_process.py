"""Metrics through the server app in-process: extraction at log ingestion, posted points, the read route,
``FinalMetricDataList`` and ``TrainingJobAnalytics`` (no scheduler: the test plays the job's supervisor)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from trainforge.analytics import TrainingJobAnalytics
from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError, ValidationError
from trainforge.estimator import Estimator
from trainforge.runtime.agent import AgentClient, ServerLocator
from trainforge.runtime.sysmetrics import SystemMetricsSampler
from trainforge.server.app import create_app
from trainforge.service.agent import hash_token
from trainforge.session import Session
from trainforge.settings import Settings
from trainforge.store.jobs import JobStore

TOKEN = "in-process-token"
AGENT_TOKEN = "agent-token-for-tests"
DEFINITIONS = [
    {"Name": "loss", "Regex": r"loss=(\S+)"},
    {"Name": "validation:rmse", "Regex": r".*\[[0-9]+\].*#011validation-rmse:(\S+)"},
    {"Name": "train:rmse", "Regex": r".*\[[0-9]+\].*#011train-rmse:(\S+)"},
]


class App:
    def __init__(self, http: TestClient, session: Session, store: JobStore) -> None:
        self.http = http
        self.session = session
        self.store = store

    def agent(self, name: str, route: str, body: dict[str, Any]) -> Any:
        return self.http.post(
            f"/v1/agent/training-jobs/{name}/{route}", json=body, headers={"Authorization": f"Bearer {AGENT_TOKEN}"}
        )

    def start_job(self, name: str) -> Estimator:
        """Submit a job with the metric definitions and give it an agent token, as a launch would."""
        est = Estimator(
            "trainforge/python:current",
            instance_type="local",
            instance_count=1,
            metric_definitions=DEFINITIONS,
            sagemaker_session=self.session,
        )
        est.fit(wait=False, job_name=name)
        self.store.set_fields(name, agent_token_hash=hash_token(AGENT_TOKEN))
        return est


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    settings = Settings(home=tmp_path / "home", token=TOKEN)
    fastapi_app = create_app(settings, start_scheduler=False)
    with TestClient(fastapi_app) as http:
        client = TrainforgeClient("http://testserver", TOKEN, transport=http._transport)
        yield App(http, Session(settings=settings, client=client), fastapi_app.state.store)


def lines(*messages: str, first_seq: int = 0, t0: float = 1000.0) -> list[dict[str, Any]]:
    return [{"seq": first_seq + i, "timestamp": t0 + i, "message": m} for i, m in enumerate(messages)]


def test_log_lines_yield_points_once_even_when_a_batch_is_resent(app: App) -> None:
    app.start_job("extract")
    batch = lines(
        "epoch=1 loss=0.5",
        "[1]\ttrain-rmse:0.25\tvalidation-rmse:0.3",
        "loss=not-a-number",
        "[2]#011train-rmse:0.2#011validation-rmse:0.28",
    )
    assert app.agent("extract", "logs", {"host": "algo-1", "lines": batch}).json() == {"inserted": 4}
    assert app.agent("extract", "logs", {"host": "algo-1", "lines": batch}).json() == {"inserted": 0}
    more = lines("epoch=2 loss=0.4", first_seq=4, t0=2000.0)
    assert app.agent("extract", "logs", {"host": "algo-2", "lines": more}).json() == {"inserted": 1}

    points = app.session.client.metrics("extract")["points"]
    assert points == [
        {"name": "loss", "value": 0.5, "timestamp": 1000.0, "host": "algo-1"},
        {"name": "loss", "value": 0.4, "timestamp": 2000.0, "host": "algo-2"},
        {"name": "train:rmse", "value": 0.25, "timestamp": 1001.0, "host": "algo-1"},
        {"name": "train:rmse", "value": 0.2, "timestamp": 1003.0, "host": "algo-1"},
        {"name": "validation:rmse", "value": 0.3, "timestamp": 1001.0, "host": "algo-1"},
        {"name": "validation:rmse", "value": 0.28, "timestamp": 1003.0, "host": "algo-1"},
    ]
    assert [p["value"] for p in app.session.client.metrics("extract", names=["loss"], host="algo-2")["points"]] == [0.4]
    window = app.session.client.metrics("extract", start_time=1001.0, end_time=1002.0)["points"]
    assert {p["name"] for p in window} == {"train:rmse", "validation:rmse"}


def test_posted_points_are_idempotent_by_seq_and_never_final_metrics(app: App) -> None:
    app.start_job("posted")
    app.agent("posted", "logs", {"lines": lines("loss=0.9", "loss=0.7")})
    system = [
        {"name": "system/cpu_percent", "value": 150.0, "timestamp": 1500.0, "seq": 1500000},
        {"name": "system/memory_percent", "value": 42.0, "timestamp": 1500.0, "seq": 1500000},
    ]
    assert app.agent("posted", "metrics", {"points": system}).json() == {"inserted": 2}
    assert app.agent("posted", "metrics", {"points": system}).json() == {"inserted": 0}

    final = app.session.client.describe_training_job("posted")["FinalMetricDataList"]
    assert final == [{"MetricName": "loss", "Value": 0.7, "Timestamp": 1001.0}]
    names = {p["name"] for p in app.session.client.metrics("posted")["points"]}
    assert names == {"loss", "system/cpu_percent", "system/memory_percent"}


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"value": 1.0, "timestamp": 1.0}, "points[0].name"),
        ({"name": "", "value": 1.0, "timestamp": 1.0}, "points[0].name"),
        ({"name": "m", "value": "NaN", "timestamp": 1.0}, "points[0].value"),
        ({"name": "m", "value": "high", "timestamp": 1.0}, "points[0].value"),
        ({"name": "m", "value": 1.0, "timestamp": 1.0, "seq": "7"}, "points[0].seq"),
    ],
)
def test_bad_posted_points_are_a_400_naming_the_field(app: App, point: dict[str, Any], field: str) -> None:
    app.start_job("bad-points")
    response = app.agent("bad-points", "metrics", {"points": [point]})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(field)


def test_read_route_checks_its_filters_and_the_job(app: App) -> None:
    app.start_job("filters")
    with pytest.raises(ValidationError, match="end_time"):
        app.session.client.metrics("filters", start_time=10.0, end_time=5.0)
    with pytest.raises(NotFoundError):
        app.session.client.metrics("no-such-job")
    assert app.session.client.metrics("filters") == {"points": []}


def test_training_job_analytics_dataframe_like_sagemaker(app: App, tmp_path: Path) -> None:
    est = app.start_job("analytics")
    created = app.session.client.describe_training_job("analytics")["CreationTime"]
    t0 = created + 10
    app.agent(
        "analytics",
        "logs",
        {"lines": lines("loss=0.9", "[0]\ttrain-rmse:0.6\tvalidation-rmse:0.5", "loss=0.7", "loss=0.6", t0=t0)},
    )
    cpu_point = {"name": "system/cpu_percent", "value": 5.0, "timestamp": t0 + 1.5}
    app.agent("analytics", "metrics", {"points": [cpu_point]})
    app.agent("analytics", "logs", {"lines": lines("loss=0.1", first_seq=99, t0=created - 5)})  # before creation

    analytics = TrainingJobAnalytics("analytics", sagemaker_session=app.session)
    assert analytics.metric_names == ["loss", "validation:rmse", "train:rmse"]
    df = analytics.dataframe()
    assert list(df.columns) == ["timestamp", "metric_name", "value"]
    # One origin for every metric: the training start (the job's CreationTime while it has not trained), so the
    # rmse printed on the line after the first loss starts 1 s after it rather than at 0.
    assert df.to_dict("records") == [
        {"timestamp": 10.0, "metric_name": "loss", "value": 0.9},
        {"timestamp": 12.0, "metric_name": "loss", "value": 0.7},
        {"timestamp": 13.0, "metric_name": "loss", "value": 0.6},
        {"timestamp": 11.0, "metric_name": "validation:rmse", "value": 0.5},
        {"timestamp": 11.0, "metric_name": "train:rmse", "value": 0.6},
    ]
    assert analytics.dataframe() is df
    app.agent("analytics", "logs", {"lines": lines("loss=0.5", first_seq=4, t0=t0 + 4)})
    assert len(analytics.dataframe()) == 5 and len(analytics.dataframe(force_refresh=True)) == 6

    pd.testing.assert_frame_equal(est.training_job_analytics.dataframe(), analytics.dataframe())
    csv = tmp_path / "metrics.csv"
    analytics.export_csv(str(csv))
    assert pd.read_csv(csv, index_col=0).equals(analytics.dataframe())

    system = TrainingJobAnalytics("analytics", ["system/cpu_percent"], sagemaker_session=app.session)
    assert system.dataframe().to_dict("records") == [
        {"timestamp": 11.5, "metric_name": "system/cpu_percent", "value": 5.0}
    ]
    # period: the mean of each 13 s bucket counted from the job's CreationTime (points at +10, +12 | +13, +14).
    averaged = TrainingJobAnalytics("analytics", ["loss"], sagemaker_session=app.session, period=13)
    assert averaged.dataframe().to_dict("records") == [
        {"timestamp": 0.0, "metric_name": "loss", "value": pytest.approx((0.9 + 0.7) / 2)},
        {"timestamp": 13.0, "metric_name": "loss", "value": pytest.approx((0.6 + 0.5) / 2)},
    ]
    late = TrainingJobAnalytics(
        "analytics", ["loss"], sagemaker_session=app.session, start_time=datetime.fromtimestamp(t0 + 2.5, UTC)
    )
    assert late.dataframe()["value"].tolist() == [0.6, 0.5]
    naive_utc = datetime.fromtimestamp(t0 + 2.5, UTC).replace(tzinfo=None)
    assert TrainingJobAnalytics("analytics", ["loss"], app.session, naive_utc).dataframe()["value"].tolist() == [
        0.6,
        0.5,
    ]
    empty = TrainingJobAnalytics("analytics", ["nothing"], sagemaker_session=app.session).dataframe()
    assert list(empty.columns) == ["timestamp", "metric_name", "value"] and empty.empty
    with pytest.raises(ValidationError, match="period"):
        TrainingJobAnalytics("analytics", sagemaker_session=app.session, period=0)
    with pytest.raises(NotFoundError):
        TrainingJobAnalytics("no-such-job", sagemaker_session=app.session)


def test_training_job_analytics_needs_a_job_on_the_estimator(app: App) -> None:
    est = Estimator("trainforge/python:current", instance_type="local", instance_count=1, sagemaker_session=app.session)
    with pytest.raises(ValidationError, match="fit"):
        est.training_job_analytics  # noqa: B018


def test_a_missing_pandas_is_a_clear_error() -> None:
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "from trainforge.analytics import _pandas\n"
        "try:\n    _pandas()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'trainforge[sklearn]'" in out and "pandas" in out


def test_the_sampler_posts_system_metrics_of_a_real_process_group(app: App, tmp_path: Path) -> None:
    app.start_job("sampled")
    client = AgentClient(
        locator=ServerLocator("http://testserver"),
        token=AGENT_TOKEN,
        job_name="sampled",
        host="algo-1",
        transport=app.http._transport,
    )
    busy = "import time\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy], process_group=0)
    sampler = SystemMetricsSampler(client=client, interval=0.2, disk_path=tmp_path)
    try:
        sampler.start(child.pid, [])
        child.wait(timeout=30)
    finally:
        child.kill()
        assert sampler.close()
    points = app.session.client.metrics("sampled")["points"]
    by_name: dict[str, list[float]] = {}
    for p in points:
        by_name.setdefault(p["name"], []).append(p["value"])
    assert set(by_name) == {
        "system/cpu_percent",
        "system/machine_cpu_percent",
        "system/memory_used_mb",
        "system/memory_percent",
        "system/disk_percent",
    }
    assert len(by_name["system/cpu_percent"]) >= 4  # a sample at start, then every 0.2 s for 1.5 s
    assert max(by_name["system/cpu_percent"]) > 0  # the busy loop is counted (how much depends on the load)
    assert max(by_name["system/memory_used_mb"]) > 1
    assert all(0 <= v <= 100 for n in ("system/memory_percent", "system/disk_percent") for v in by_name[n])
    assert app.session.client.describe_training_job("sampled")["FinalMetricDataList"] == []


def test_analytics_timestamps_count_from_the_training_start(app: App) -> None:
    app.start_job("analytics-origin")
    for status in ("Downloading", "Training"):
        assert app.agent("analytics-origin", "status", {"status": status}).status_code == 200
    started = app.session.client.describe_training_job("analytics-origin")["TrainingStartTime"]
    app.agent("analytics-origin", "logs", {"lines": lines("loss=0.9", "loss=0.8", t0=started + 5)})
    app.agent("analytics-origin", "logs", {"lines": lines("[0]\ttrain-rmse:0.6", first_seq=2, t0=started + 7)})
    df = TrainingJobAnalytics("analytics-origin", sagemaker_session=app.session).dataframe()
    got = {(r["metric_name"], round(r["timestamp"], 6)) for r in df.to_dict("records")}
    assert got == {("loss", 5.0), ("loss", 6.0), ("train:rmse", 7.0)}
