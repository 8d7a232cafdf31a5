"""trainforge.archives: tar.gz written and read with ISA-L, still the gzip every other tool reads."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from trainforge import archives

THREADS = [1, 2]  # the caller's-thread writer (one core) and the threaded one (two cores)


def make_tree(root: Path) -> Path:
    """A directory with nested files, an empty directory, a symlink to a file and one to a directory."""
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # more than one compression block
    (root / "b").mkdir()
    (root / "b" / "z.txt").write_text("zeta\n" * 1000)
    (root / "b" / "a.txt").write_text("alpha\n")
    (root / "empty").mkdir()
    (root / "A.cfg").write_text("upper case sorts first\n")
    os.symlink("b/a.txt", root / "link.txt")
    os.symlink("b", root / "dirlink")
    return root


EXPECTED = ["A.cfg", "b", "b/a.txt", "b/z.txt", "dirlink", "empty", "link.txt", "weights.bin"]


def files_of(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a symlink's target, ``"<dir>"`` for a directory."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "<dir>"
            else:
                found[rel] = path.read_bytes()
    return found


@pytest.mark.parametrize("threads", THREADS)
def test_stdlib_tarfile_reads_what_we_write_in_order_with_links_as_links(tmp_path: Path, threads: int) -> None:
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    assert archives.write_archive(src, archive, threads=threads) == 6
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == EXPECTED  # at the root, every directory's entries sorted
        by_name = {m.name: m for m in members}
        assert by_name["link.txt"].issym() and by_name["link.txt"].linkname == "b/a.txt"
        assert by_name["dirlink"].issym() and by_name["dirlink"].linkname == "b"
        assert by_name["empty"].isdir()
        tar.extractall(tmp_path / "out", filter="data")
    assert files_of(tmp_path / "out") == files_of(src)


@pytest.mark.parametrize("threads", THREADS)
def test_gnu_tar_extracts_what_we_write(tmp_path: Path, threads: int) -> None:
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    archives.write_archive(src, archive, threads=threads)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True)
    assert files_of(out) == files_of(src)
    subprocess.run(["gzip", "-t", str(archive)], check=True)  # gzip's own check: CRC and length trailer


@pytest.mark.parametrize("threads", THREADS)
def test_the_gzip_header_is_plain_and_says_fastest(tmp_path: Path, threads: int) -> None:
    archive = tmp_path / "a.tar.gz"
    archives.write_archive(make_tree(tmp_path / "src"), archive, threads=threads)
    header = archive.read_bytes()[:10]
    assert header[:4] == b"\x1f\x8b\x08\x00"  # deflate, no name, comment or extra field
    assert header[4:8] == b"\x00\x00\x00\x00"  # mtime 0: the same files give the same header
    assert (header[8], header[9]) == (4, 255)  # XFL "fastest", OS "unknown"


@pytest.mark.parametrize("threads", THREADS)
def test_an_empty_or_missing_directory_gives_a_valid_empty_archive(tmp_path: Path, threads: int) -> None:
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "empty", tmp_path / "missing"):
        archive = tmp_path / f"{src.name}.tar.gz"
        assert archives.write_archive(src, archive, threads=threads) == 0
        with tarfile.open(archive) as tar:
            assert tar.getnames() == []
        listed = subprocess.run(["tar", "tzf", str(archive)], check=True, capture_output=True, text=True)
        assert listed.stdout == ""


@pytest.mark.parametrize("threads", THREADS)
def test_contents_hash_every_regular_file_as_it_is_archived(tmp_path: Path, threads: int) -> None:
    src = make_tree(tmp_path / "src")
    contents = archives.Contents()
    archives.write_archive(src, io.BytesIO(), threads=threads, contents=contents)
    expected = {
        name: hashlib.sha256(data).hexdigest()
        for name, data in files_of(src).items()
        if isinstance(data, bytes) and not (src / name).is_symlink()
    }
    assert contents.files == expected
    assert contents.links == {"link.txt": "b/a.txt", "dirlink": "b"}


def test_create_writes_into_a_file_object_and_follows_links_when_asked(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    buffer = io.BytesIO()
    with archives.create(buffer, dereference=True) as tar:
        tar.add(src / "link.txt", arcname="code/link.txt")
    assert not buffer.closed
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue()), mode="r:gz") as tar:
        member = tar.getmember("code/link.txt")
        assert member.isfile()
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == b"alpha\n"


@pytest.mark.parametrize("threads", THREADS)
def test_an_abandoned_archive_is_removed_or_left_unfinished(tmp_path: Path, threads: int) -> None:
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    with pytest.raises(RuntimeError, match="stop here"), archives.create(archive, threads=threads) as tar:
        archives.add_tree(tar, src)
        raise RuntimeError("stop here")
    assert not archive.exists()
    buffer = io.BytesIO()
    with pytest.raises(RuntimeError, match="stop here"), archives.create(buffer, threads=threads) as tar:
        archives.add_tree(tar, src)
        raise RuntimeError("stop here")
    with pytest.raises(EOFError):  # no trailer: no reader takes it for a whole archive
        gzip.decompress(buffer.getvalue())


def test_threads_must_be_positive_and_default_to_at_most_two(tmp_path: Path) -> None:
    assert 1 <= archives.compression_threads() <= min(2, len(os.sched_getaffinity(0)))
    with pytest.raises(ValueError, match="threads"), archives.create(tmp_path / "a.tar.gz", threads=0):
        pass


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("flags", ["czf", "cjf", "cf"])
def test_we_read_what_gnu_tar_writes(tmp_path: Path, stream: bool, flags: str) -> None:
    if flags == "cjf" and shutil.which("bzip2") is None:
        pytest.skip("bzip2 is not installed")
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", flags, str(archive), "-C", str(src), "."], check=True)
    with archives.open_archive(archive, stream=stream) as tar:
        read = {}
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                read[name] = handle.read()
            elif member.issym():
                read[name] = "-> " + member.linkname
    expected = {k: v for k, v in files_of(src).items() if v != "<dir>"}
    assert read == expected


def test_random_access_allows_checking_every_member_then_extracting(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "a.tar.gz"
    archives.write_archive(src, archive)
    with archives.open_archive(archive) as tar:
        members = tar.getmembers()  # reads to the end ...
        tar.extractall(tmp_path / "out", members=members, filter="data")  # ... then back from the start
    assert files_of(tmp_path / "out") == files_of(src)


@pytest.mark.parametrize("stream", [False, True])
def test_corrupt_or_truncated_gzip_raises_what_tarfile_raises(tmp_path: Path, stream: bool) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    good = tmp_path / "good.tar.gz"
    archives.write_archive(src, good)
    data = good.read_bytes()
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(data[:100] + bytes(b ^ 0x5A for b in data[100:4096]) + data[4096:])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    for bad in (corrupt, truncated):
        with pytest.raises((tarfile.ReadError, EOFError)), archives.open_archive(bad, stream=stream) as tar:
            for member in tar:
                handle = tar.extractfile(member)
                while handle is not None and handle.read(1 << 20):
                    pass
    not_tar = tmp_path / "not.tar.gz"
    not_tar.write_bytes(gzip.compress(b"just some text, not a tar archive" * 40))
    with pytest.raises(tarfile.ReadError), archives.open_archive(not_tar, stream=stream):
        pass


def test_gunzip_reads_every_member_and_names_bad_data() -> None:
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    assert archives.gunzip(data) == b"one\ntwo\n"
    with pytest.raises(OSError):
        archives.gunzip(b"this is not gzip data at all")
    with pytest.raises(EOFError):
        archives.gunzip(data[:12])


def test_without_isal_the_stdlib_writes_and_reads_the_same_archives(tmp_path: Path) -> None:
    """Where ``isal`` cannot be imported (a user's environment), the module still works, with the stdlib's gzip."""
    src = make_tree(tmp_path / "src")
    archive = tmp_path / "plain.tar.gz"
    script = f"""
import sys
sys.modules["isal"] = None  # importing isal now fails, as where it is not installed
from pathlib import Path
from trainforge import archives
assert not archives.ACCELERATED
assert archives.write_archive(Path({str(src)!r}), Path({str(archive)!r}), threads=2) == 6
with archives.open_archive(Path({str(archive)!r})) as tar:
    print(",".join(tar.getnames()))
print(archives.gunzip(__import__("gzip").compress(b"ok")).decode())
"""
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert done.stdout.split() == [",".join(EXPECTED), "ok"]
    assert archive.read_bytes()[8:10] == bytes([4, 255])
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(out)], check=True)
    assert files_of(out) == files_of(src)
