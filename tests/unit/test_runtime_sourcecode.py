"""Source archives are checked member by member before anything is written."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from trainforge.runtime.failure import JobFailed
from trainforge.runtime.sourcecode import extract_archive, fetch_source
from trainforge.storage import LocalObjectStore


def make_tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (kind, name, data-or-linkname) with kind file|dir|sym|hard|fifo."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                payload = data.encode()
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, data
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tar.addfile(info)
    return path


def test_good_archive_extracts(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [
            ("file", "train.py", "print(1)"),
            ("dir", "pkg", ""),
            ("file", "pkg/a.py", "x=1"),
            ("sym", "link", "pkg/a.py"),
        ],
    )
    dest = tmp_path / "code"
    dest.mkdir()
    assert extract_archive(archive, dest, "ok.tar.gz") == 4
    assert (dest / "train.py").read_text() == "print(1)"
    assert (dest / "link").read_text() == "x=1"


@pytest.mark.parametrize(
    ("members", "bad", "why"),
    [
        ([("file", "ok.py", "1"), ("file", "../evil", "x")], "../evil", "'..'"),
        ([("file", "ok.py", "1"), ("file", "a/../../evil", "x")], "a/../../evil", "'..'"),
        ([("file", "ok.py", "1"), ("file", "/abs", "x")], "/abs", "absolute"),
        ([("file", "ok.py", "1"), ("sym", "out", "/etc/passwd")], "out", "outside"),
        ([("file", "ok.py", "1"), ("sym", "up", "../../x")], "up", "outside"),
        ([("file", "ok.py", "1"), ("hard", "h", "../x")], "h", "outside"),
        ([("sym", "d", "."), ("file", "ok.py", "1"), ("file", "d/x.py", "x")], "d/x.py", "symbolic link"),
        ([("file", "ok.py", "1"), ("fifo", "pipe", "")], "pipe", "special"),
    ],
)
def test_bad_member_rejects_whole_archive(
    tmp_path: Path, members: list[tuple[str, str, str]], bad: str, why: str
) -> None:
    archive = make_tar(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "code"
    dest.mkdir()
    with pytest.raises(JobFailed) as info:
        extract_archive(archive, dest, "s3://b/src.tar.gz")
    assert info.value.reason.startswith(f"ClientError: source archive s3://b/src.tar.gz: member '{bad}' ")
    assert why in info.value.reason
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not gzip")
    dest = tmp_path / "code"
    dest.mkdir()
    with pytest.raises(JobFailed, match=r"not a readable tar\.gz"):
        extract_archive(junk, dest, "junk")


def test_fetch_from_store_and_directory(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    archive = make_tar(tmp_path / "src.tar.gz", [("file", "train.py", "print('hi')")])
    store.put_file("s3://b/job/source/sourcedir.tar.gz", archive)
    code = tmp_path / "code"
    code.mkdir()
    (tmp_path / "tmp").mkdir()
    fetch_source(store, "s3://b/job/source/sourcedir.tar.gz", code, tmp_path / "tmp")
    assert (code / "train.py").read_text() == "print('hi')"
    assert list((tmp_path / "tmp").iterdir()) == []

    src = tmp_path / "srcdir"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "m.py").write_text("m")
    code2 = tmp_path / "code2"
    code2.mkdir()
    fetch_source(store, f"file://{src}", code2, tmp_path / "tmp")
    assert (code2 / "sub" / "m.py").read_text() == "m"

    with pytest.raises(JobFailed, match="ClientError: cannot download source code"):
        fetch_source(store, "s3://b/missing.tar.gz", code2, tmp_path / "tmp")
