"""End to end: what a new user sees of stops, logs, describe output and artifacts, against one real server."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.cli.main import main as cli_main
from trainforge.errors import UnexpectedStatusError, ValidationError
from trainforge.estimator import Estimator
from trainforge.server.console.links import console_login_url
from trainforge.settings import Settings

STATUS_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+) - ")

CHATTY = """
    print("first line", flush=True)
    print("loss=0.5", flush=True)
    print("last line", flush=True)
"""

LOOPING = """
    import time
    print("looping", flush=True)
    while True:
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for every job of this module."""
    home = tmp_path_factory.mktemp("fidelity-home")
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    srv = ServerProcess(home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(home)


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


def source(root: Path, script: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(textwrap.dedent(script))
    return root


@pytest.fixture(scope="module")
def completed(session: trainforge.Session, tmp_path_factory: pytest.TempPathFactory) -> Estimator:
    """A job that prints three lines (one a metric), writes no model and completes."""
    est = script_estimator(
        session,
        source(tmp_path_factory.mktemp("chatty"), CHATTY),
        metric_definitions=[{"Name": "train:loss", "Regex": "loss=([0-9.]+)"}],
    )
    est.fit(logs="None")
    return est


@pytest.fixture(scope="module")
def stopped(session: trainforge.Session, tmp_path_factory: pytest.TempPathFactory) -> Estimator:
    """A looping job, stopped by its user while it trains; its model dir stays empty."""
    est = script_estimator(session, source(tmp_path_factory.mktemp("looping"), LOOPING))
    est.fit(wait=False)
    job = est.latest_training_job
    assert job is not None
    wait_for(
        lambda: any(e["message"] == "looping" for e in session.client.logs(job.name)["events"]),
        timeout=60,
        what="the script to start",
    )
    job.stop()
    wait_for(lambda: job.describe()["TrainingJobStatus"] == "Stopped", timeout=60, what="Stopped")
    return est


def printed(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What was printed since the last call, one entry per line: a status line as ``<Status>``, else the line."""
    out = capsys.readouterr().out.splitlines()
    return [f"<{m.group(1)}>" if (m := STATUS_LINE.match(line)) else line for line in out]


def test_a_stop_records_stopping_once(
    session: trainforge.Session, stopped: Estimator, capsys: pytest.CaptureFixture[str]
) -> None:
    name = stopped.latest_training_job.name  # type: ignore[union-attr]
    statuses = [t["Status"] for t in session.describe_training_job(name)["SecondaryStatusTransitions"]]
    assert statuses.count("Stopping") == 1, statuses
    assert statuses[-2:] == ["Stopping", "Stopped"]
    capsys.readouterr()
    session.logs_for_job(name, wait=True)
    lines = printed(capsys)
    assert lines.count("<Stopping>") == 1, lines
    assert lines.count("<Stopped>") == 1, lines


def test_a_finished_jobs_log_prints_statuses_where_they_happened(
    session: trainforge.Session, completed: Estimator, capsys: pytest.CaptureFixture[str]
) -> None:
    name = completed.latest_training_job.name  # type: ignore[union-attr]
    capsys.readouterr()
    session.logs_for_job(name)
    lines = printed(capsys)
    mine = [line for line in lines if line.startswith("<") or line in ("first line", "loss=0.5", "last line")]
    assert mine[0] == "<Starting>" and "<Downloading>" in mine, lines
    assert mine[-6:] == ["<Training>", "first line", "loss=0.5", "last line", "<Uploading>", "<Completed>"], lines
    assert lines.index("<Downloading>") > 1  # the supervisor's own first lines came before it
    assert not any(line.startswith(("Training seconds", "Billable seconds")) for line in lines)

    attached_estimator = Estimator.attach(name, sagemaker_session=session)  # prints the job's end, as SageMaker
    capsys.readouterr()
    attached_estimator.logs()
    attached = printed(capsys)
    assert attached[: len(lines)] == lines  # the same story, then how long it took
    assert [line.split(":")[0] for line in attached[len(lines) :]] == ["Training seconds", "Billable seconds"]


@pytest.fixture
def cli_home(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """The CLI pointed at this module's server, as a user's environment would."""
    for name in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_PORT", "TRAINFORGE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(server.home))
    return server


def is_aws_cli_time(value: object) -> bool:
    """Whether ``value`` is a time as the AWS CLI prints one: ISO-8601 with its UTC offset."""
    return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() is not None and "T" in value


def test_cli_describe_shows_final_metrics_and_json_times_are_iso(
    cli_home: ServerProcess, completed: Estimator, capsys: pytest.CaptureFixture[str]
) -> None:
    name = completed.latest_training_job.name  # type: ignore[union-attr]
    capsys.readouterr()
    assert cli_main(["jobs", "describe", name]) == 0
    text = capsys.readouterr().out.splitlines()
    at = text.index("Final metrics:")
    assert text[at + 1].split()[:2] == ["train:loss", "0.5"]

    assert cli_main(["jobs", "describe", name, "--output", "json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    for key in ("CreationTime", "TrainingStartTime", "TrainingEndTime", "LastModifiedTime"):
        assert is_aws_cli_time(desc[key]), (key, desc[key])
    assert all(is_aws_cli_time(t["StartTime"]) for t in desc["SecondaryStatusTransitions"])
    assert is_aws_cli_time(desc["FinalMetricDataList"][0]["Timestamp"])
    api = completed.sagemaker_session.client.describe_training_job(name)
    assert datetime.fromisoformat(desc["CreationTime"]).timestamp() == pytest.approx(api["CreationTime"], abs=1e-5)
    assert isinstance(api["CreationTime"], float)  # the REST API keeps epoch seconds (boto3 parses those)

    assert cli_main(["jobs", "list", "--output", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["TrainingJobSummaries"]
    assert all(is_aws_cli_time(s["CreationTime"]) for s in listed)
    assert cli_main(["jobs", "logs", name, "--follow", "--output", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert is_aws_cli_time(events[0]["Time"]) and all(is_aws_cli_time(e["timestamp"]) for e in events[1:-1])


def output_uri(session: trainforge.Session, est: Estimator, archive: str) -> str:
    name = est.latest_training_job.name  # type: ignore[union-attr]
    return f"{est.output_path.rstrip('/')}/{name}/output/{archive}"  # type: ignore[union-attr]


def test_a_failed_or_stopped_job_with_an_empty_model_dir_stores_no_model(
    server: ServerProcess,
    session: trainforge.Session,
    completed: Estimator,
    stopped: Estimator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = script_estimator(session, source(tmp_path / "failing", "raise SystemExit('broken on purpose')\n"))
    with pytest.raises(UnexpectedStatusError):
        failed.fit(logs="None")
    store = session.object_store
    for est in (failed, stopped):
        desc = est.latest_training_job.describe()  # type: ignore[union-attr]
        assert desc["TrainingJobStatus"] in ("Failed", "Stopped")
        assert "ModelArtifacts" not in desc
        assert not store.exists(output_uri(session, est, "model.tar.gz"))
        assert store.exists(output_uri(session, est, "output.tar.gz"))
        with pytest.raises(ValidationError, match=r"without storing a model") as info:
            est.model_data  # noqa: B018 - the property is what a user reads
        assert info.value.field == "model_data"
    # A Completed job stores its model even when the model directory is empty (SageMaker does).
    done = completed.latest_training_job.describe()  # type: ignore[union-attr]
    assert (
        done["ModelArtifacts"]["S3ModelArtifacts"]
        == completed.model_data
        == output_uri(session, completed, "model.tar.gz")
    )
    assert store.exists(str(completed.model_data))

    # The console's job page and the CLI show a job without ModelArtifacts.
    name = stopped.latest_training_job.name  # type: ignore[union-attr]
    with httpx.Client(base_url=server.url, follow_redirects=True, timeout=30) as browser:
        assert browser.get(console_login_url(Settings(home=server.home))).status_code == 200
        page = browser.get(f"/console/jobs/{name}")
        assert page.status_code == 200 and "no model was stored" in page.text
