"""Session helpers over a real local object store: upload/download as SageMaker, roles, timestamps."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

import trainforge
from trainforge.errors import NotFoundError, ValidationError
from trainforge.session import Session, get_execution_role, with_datetimes
from trainforge.settings import Settings
from trainforge.storage import LocalObjectStore


def offline_session(tmp_path: Path, **config: str) -> Session:
    return Session(
        settings=Settings(home=tmp_path / "home", endpoint="http://127.0.0.1:9", token="unused"),
        server_config={
            "region": "local",
            "account_id": "111122223333",
            "default_bucket": "trainforge-default",
            "storage": {"kind": "local", "root": str(tmp_path / "storage")},
            **config,
        },
    )


def test_upload_a_file(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    (tmp_path / "train.csv").write_text("1,2\n")
    assert session.upload_data(tmp_path / "train.csv", key_prefix="iris/train") == (
        "s3://trainforge-default/iris/train/train.csv"
    )
    assert session.upload_data(str(tmp_path / "train.csv")) == "s3://trainforge-default/data/train.csv"
    assert (
        session.upload_data(str(tmp_path / "train.csv"), bucket="other", key_prefix="/x/") == "s3://other/x/train.csv"
    )
    store = LocalObjectStore(tmp_path / "storage")
    assert store.get_bytes("s3://trainforge-default/iris/train/train.csv") == b"1,2\n"


def test_upload_a_directory_recursively_returns_the_prefix(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    data = tmp_path / "data"
    (data / "nested" / "deeper").mkdir(parents=True)
    (data / "a.csv").write_text("a")
    (data / "nested" / "b.csv").write_text("b")
    (data / "nested" / "deeper" / "c.csv").write_text("c")
    assert session.upload_data(str(data), key_prefix="set") == "s3://trainforge-default/set"
    assert session.list_s3_files("trainforge-default", "set/") == [
        "set/a.csv",
        "set/nested/b.csv",
        "set/nested/deeper/c.csv",
    ]


def test_upload_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        offline_session(tmp_path).upload_data(str(tmp_path / "nope.csv"))
    assert info.value.field == "path"


def test_download_data_as_sagemaker(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    session.upload_string_as_file_body("m", "b", "job/output/model.tar.gz")
    session.upload_string_as_file_body("x", "b", "set/a/x.txt")
    session.upload_string_as_file_body("y", "b", "set/y.txt")
    out = tmp_path / "out"
    assert session.download_data(str(out), "b", "job/output/model.tar.gz") == [str(out / "model.tar.gz")]
    got = session.download_data(str(out / "set"), "b", "set")
    assert got == [str(out / "set" / "a" / "x.txt"), str(out / "set" / "y.txt")]
    assert (out / "set" / "a" / "x.txt").read_text() == "x"
    assert session.read_s3_file("b", "set/y.txt") == "y"
    with pytest.raises(NotFoundError):
        session.download_data(str(out), "b", "nothing/here")


def test_configuration_values(tmp_path: Path) -> None:
    session = offline_session(tmp_path)
    assert session.boto_region_name == "local"
    assert session.default_bucket() == "trainforge-default"
    assert (
        Session(settings=session.settings, server_config=session.config, default_bucket="mine").default_bucket()
        == "mine"
    )
    assert session.account_id() == "111122223333"
    assert session.expand_role("Trainer") == "arn:aws:iam::111122223333:role/Trainer"
    assert session.expand_role("arn:aws:iam::1:role/x") == "arn:aws:iam::1:role/x"
    assert get_execution_role(session) == "arn:aws:iam::111122223333:role/TrainforgeExecutionRole"


def test_get_execution_role_reads_settings_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINFORGE_ACCOUNT_ID", raising=False)
    assert trainforge.get_execution_role() == "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
    monkeypatch.setenv("TRAINFORGE_ACCOUNT_ID", "123456789012")
    assert trainforge.get_execution_role() == "arn:aws:iam::123456789012:role/TrainforgeExecutionRole"


def test_answers_get_boto3_style_datetimes() -> None:
    converted = with_datetimes(
        {
            "CreationTime": 1700000000.5,
            "TrainingJobStatus": "Completed",
            "TrainingTimeInSeconds": 12,
            "SecondaryStatusTransitions": [{"Status": "Starting", "StartTime": 1700000000, "EndTime": None}],
        }
    )
    assert isinstance(converted["CreationTime"], datetime) and converted["CreationTime"].tzinfo is not None
    assert converted["CreationTime"].timestamp() == 1700000000.5
    assert converted["TrainingTimeInSeconds"] == 12
    assert converted["SecondaryStatusTransitions"][0]["StartTime"].timestamp() == 1700000000
    assert converted["SecondaryStatusTransitions"][0]["EndTime"] is None


def test_import_trainforge_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, trainforge; print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'pydantic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert set(trainforge.__all__) >= {"Session", "Estimator", "TrainingInput", "get_execution_role", "__version__"}
