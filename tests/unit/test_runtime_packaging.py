"""model.tar.gz / output.tar.gz layout and publication."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from trainforge.runtime.packaging import make_archive, publish_artifacts
from trainforge.storage import LocalObjectStore


def fill(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_archive_has_contents_at_root(tmp_path: Path) -> None:
    model = tmp_path / "model"
    fill(model, {"model.joblib": "weights", "sub/config.json": "{}"})
    archive = tmp_path / "model.tar.gz"
    assert make_archive(model, archive) == 2
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert names == ["model.joblib", "sub", "sub/config.json"]
    assert not any(name.startswith("model/") for name in names)


def test_archive_uses_fast_gzip_level(tmp_path: Path) -> None:
    model = tmp_path / "model"
    fill(model, {"a.txt": "abc" * 1000})
    archive = tmp_path / "m.tar.gz"
    make_archive(model, archive)
    header = archive.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b"
    assert header[8] == 4  # XFL=4: "compressor used fastest algorithm" (levels 1)
    assert gzip.decompress(archive.read_bytes())  # valid gzip


def test_empty_dir_gives_empty_archive(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    archive = tmp_path / "e.tar.gz"
    assert make_archive(tmp_path / "empty", archive) == 0
    with tarfile.open(archive) as tar:
        assert tar.getnames() == []


def test_publish_to_store(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    model, data = tmp_path / "model", tmp_path / "data"
    fill(model, {"model.bin": "m"})
    fill(data, {"metrics.json": "{}"})
    artifacts = publish_artifacts(
        store, output_path="s3://bkt/out/", job_name="j1", model_dir=model, output_data_dir=data,
        tmp_dir=tmp_path / "tmp",
    )  # fmt: skip
    assert [a.uri for a in artifacts] == [
        "s3://bkt/out/j1/output/model.tar.gz",
        "s3://bkt/out/j1/output/output.tar.gz",
    ]
    assert store.exists("s3://bkt/out/j1/output/model.tar.gz")
    assert not (tmp_path / "tmp").exists()  # streamed into the store: nothing staged next to the job
    stored = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert stored == ["model.tar.gz", "output.tar.gz"]  # and no temporary file left in the store
    local = tmp_path / "fetched.tar.gz"
    store.download_file("s3://bkt/out/j1/output/model.tar.gz", local)
    with tarfile.open(local) as tar:
        assert tar.getnames() == ["model.bin"]


def test_publish_uncompressed_and_file_uri(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    model = tmp_path / "model"
    fill(model, {"a/b.txt": "b"})
    artifacts = publish_artifacts(
        store, output_path="s3://bkt/out", job_name="j2", model_dir=model, output_data_dir=tmp_path / "none",
        tmp_dir=tmp_path / "tmp", compressed=False,
    )  # fmt: skip
    assert artifacts[0].uri == "s3://bkt/out/j2/output/model/"
    assert store.get_bytes("s3://bkt/out/j2/output/model/a/b.txt") == b"b"
    publish_artifacts(
        store, output_path=f"file://{tmp_path / 'dest'}", job_name="j3", model_dir=model,
        output_data_dir=tmp_path / "none", tmp_dir=tmp_path / "tmp",
    )  # fmt: skip
    assert (tmp_path / "dest" / "j3" / "output" / "model.tar.gz").is_file()


def test_an_ending_other_than_completed_stores_no_empty_model(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    empty, data = tmp_path / "model", tmp_path / "data"
    empty.mkdir()
    fill(data, {"notes.txt": "n"})
    for compressed in (True, False):
        job = f"j-{compressed}"
        artifacts = publish_artifacts(
            store, output_path="s3://bkt/out", job_name=job, model_dir=empty, output_data_dir=data,
            tmp_dir=tmp_path / "tmp", compressed=compressed, empty_model=False,
        )  # fmt: skip
        assert [a.kind for a in artifacts] == ["output"]
        assert not [o for o in store.list(f"s3://bkt/out/{job}/output/model") if o.key]
    # A model directory with files is stored whatever the ending; a Completed job stores even an empty one.
    fill(empty, {"saved.bin": "s"})
    kept = publish_artifacts(
        store, output_path="s3://bkt/out", job_name="j-kept", model_dir=empty, output_data_dir=data,
        tmp_dir=tmp_path / "tmp", empty_model=False,
    )  # fmt: skip
    assert [a.kind for a in kept] == ["model", "output"]
    (empty / "saved.bin").unlink()
    done = publish_artifacts(
        store, output_path="s3://bkt/out", job_name="j-done", model_dir=empty, output_data_dir=data,
        tmp_dir=tmp_path / "tmp",
    )  # fmt: skip
    assert [(a.kind, a.entries) for a in done] == [("model", 0), ("output", 1)]
    assert store.exists("s3://bkt/out/j-done/output/model.tar.gz")
