"""Source packaging (reference §2.1): archive layout, and every check made before anything is uploaded."""

from __future__ import annotations

import io
import socket
import tarfile
from pathlib import Path

import pytest

from trainforge.errors import ValidationError
from trainforge.estimator import Estimator
from trainforge.fw_utils import tar_and_upload_dir, validate_source_code
from trainforge.session import Session
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn
from trainforge.storage import LocalObjectStore

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_session() -> Session:
    """A session whose server does not exist: anything that needs the server fails loudly."""
    return Session(settings=Settings(endpoint=f"http://127.0.0.1:{closed_port()}", token="t"))


def archive(store: LocalObjectStore, uri: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(uri)), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_top_level_entries_and_dependencies_land_at_the_archive_root(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "train.py").write_text("import pkg\n")
    (src / "pkg" / "__init__.py").write_text("X = 1\n")
    (src / "requirements.txt").write_text("numpy\n")
    shared = tmp_path / "libs" / "common"
    shared.mkdir(parents=True)
    (shared / "util.py").write_text("Y = 2\n")
    outside = tmp_path / "data.txt"
    outside.write_text("linked content")
    (src / "link.txt").symlink_to(outside)
    store = LocalObjectStore(tmp_path / "storage")

    code = tar_and_upload_dir(store, "bkt", "job/source", "train.py", directory=str(src), dependencies=[str(shared)])

    assert code.s3_prefix == "s3://bkt/job/source/sourcedir.tar.gz"
    assert code.script_name == "train.py"
    files = archive(store, code.s3_prefix)
    assert sorted(files) == ["common/util.py", "link.txt", "pkg/__init__.py", "requirements.txt", "train.py"]
    assert files["link.txt"] == b"linked content"


def test_entry_point_is_relative_to_source_dir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "scripts").mkdir(parents=True)
    (src / "scripts" / "train.py").write_text("print(1)\n")
    store = LocalObjectStore(tmp_path / "storage")
    code = tar_and_upload_dir(store, "bkt", "j/source", "scripts/train.py", directory=str(src))
    assert code.script_name == "scripts/train.py"
    assert sorted(archive(store, code.s3_prefix)) == ["scripts/train.py"]


def test_an_s3_source_dir_is_used_as_is(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "storage")
    uri = "s3://bkt/old-job/source/sourcedir.tar.gz"
    code = tar_and_upload_dir(store, "bkt", "new/source", "train.py", directory=uri)
    assert (code.s3_prefix, code.script_name) == (uri, "train.py")
    assert list(store.list("s3://bkt/")) == []


@pytest.mark.parametrize(
    ("entry_point", "source_dir", "deps", "field"),
    [
        ("train.py", "src", [], "entry_point"),
        ("train.py", "missing-dir", [], "source_dir"),
        ("other.py", None, [], "entry_point"),
        ("s3://bkt/train.py", None, [], "entry_point"),
        ("present.py", "src", ["no-such-lib"], "dependencies"),
    ],
)
def test_missing_code_names_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry_point: str,
    source_dir: str | None,
    deps: list[str],
    field: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "present.py").write_text("")
    with pytest.raises(ValidationError) as info:
        validate_source_code(entry_point, source_dir, deps)
    assert info.value.field == field


def test_missing_entry_point_fails_fit_before_any_upload_or_server_call(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "other.py").write_text("print(1)\n")
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(src),
        framework_version="1.2-1",
        role=ROLE,
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=unreachable_session(),
    )
    with pytest.raises(ValidationError) as info:
        est.fit({"train": "s3://bkt/train/"})
    assert info.value.field == "entry_point"
    assert 'No file named "train.py"' in str(info.value)
    assert est.latest_training_job is None and est.uploaded_code is None


def test_bad_inputs_fail_fit_before_any_upload_or_server_call(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print(1)\n")
    est = Estimator(
        "trainforge/python:current",
        role=ROLE,
        instance_type="local",
        instance_count=1,
        entry_point="train.py",
        source_dir=str(src),
        sagemaker_session=unreachable_session(),
    )
    with pytest.raises(ValidationError) as info:
        est.fit("data/train.csv")
    assert info.value.field == "inputs"
    assert "upload_data" in str(info.value)
    with pytest.raises(ValidationError):
        est.fit({"train": 42})  # type: ignore[dict-item]
    assert est.uploaded_code is None
