"""The SDK over the server app in-process (swapped transport, DESIGN §7): no network, no scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from trainforge.client import TrainforgeClient
from trainforge.errors import NotFoundError
from trainforge.estimator import Estimator
from trainforge.logs import STOPPED_WARNING
from trainforge.server.app import create_app
from trainforge.session import Session
from trainforge.settings import Settings


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    settings = Settings(home=tmp_path / "home", token="in-process-token")
    with TestClient(create_app(settings, start_scheduler=False)) as app_client:
        client = TrainforgeClient("http://testserver", "in-process-token", transport=app_client._transport)
        yield Session(settings=settings, client=client)


def test_submit_describe_list_stop_and_follow_a_stopped_job(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert session.config["storage"] == {"kind": "local", "root": str(tmp_path / "home" / "storage")}
    (tmp_path / "data.csv").write_text("1,2\n")
    uri = session.upload_data(str(tmp_path / "data.csv"), key_prefix="in")
    est = Estimator("trainforge/python:current", instance_type="local", instance_count=1, sagemaker_session=session)
    est.fit(uri, wait=False, job_name="in-process")
    assert est.latest_training_job is not None and est.latest_training_job.name == "in-process"

    described = est.latest_training_job.describe()
    assert (described["TrainingJobStatus"], described["SecondaryStatus"]) == ("InProgress", "Starting")
    assert described["RoleArn"] == "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
    assert described["InputDataConfig"][0]["ChannelName"] == "training"
    assert isinstance(described["CreationTime"], datetime)
    summaries = session.sagemaker_client.list_training_jobs(NameContains="process")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in summaries] == ["in-process"]
    assert est.model_data == "s3://trainforge-default/in-process/output/model.tar.gz"

    est.latest_training_job.stop()
    events = list(session.client.follow_logs("in-process"))
    assert events[0]["type"] == "status"
    assert events[-1] == {"type": "end", "TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}

    capsys.readouterr()
    session.logs_for_job("in-process", wait=True)
    assert STOPPED_WARNING in capsys.readouterr().out
    assert session.wait_for_job("in-process", poll=0.1)["TrainingJobStatus"] == "Stopped"

    with pytest.raises(NotFoundError):
        session.describe_training_job("no-such-job")
