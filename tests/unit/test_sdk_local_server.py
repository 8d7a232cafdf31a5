"""Finding, starting and stopping the embedded server of a TRAINFORGE_HOME (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainforge.errors import ServerUnavailableError
from trainforge.local_server import connect, ensure_server, find_server, read_server_file, stop_server
from trainforge.session import Session
from trainforge.settings import Settings


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_HOST", "TRAINFORGE_PORT"):
        monkeypatch.delenv(name, raising=False)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_no_server_is_found_in_an_empty_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert find_server(settings) is None
    with pytest.raises(ServerUnavailableError, match="trainforge server start"):
        connect(settings, start=False)
    (tmp_path / "server.json").write_text("not json")
    assert read_server_file(settings) is None and find_server(settings) is None


def test_stopping_with_a_stale_server_file_removes_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead_pid()}))
    result = stop_server(settings)
    assert (result.was_running, result.stopped) == (False, True)
    assert not (tmp_path / "server.json").exists()
    assert stop_server(settings).was_running is False


def test_a_server_that_cannot_start_reports_why(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, host="256.0.0.1")
    with pytest.raises(ServerUnavailableError, match="exited with code") as info:
        ensure_server(settings, timeout_s=20)
    assert str(tmp_path / "server.log") in str(info.value)


def test_start_find_use_and_stop(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    try:
        first = ensure_server(settings)
        assert first.started and first.pid and first.url.startswith("http://127.0.0.1:")
        assert (settings.token_path.stat().st_mode & 0o777) == 0o600
        again = ensure_server(settings)
        assert (again.started, again.pid, again.url) == (False, first.pid, first.url)
        session = Session(settings=settings)
        assert session.config["storage"] == {"kind": "local", "root": str(settings.storage_root)}
        (tmp_path / "f.txt").write_text("x")
        uri = session.upload_data(str(tmp_path / "f.txt"), key_prefix="p")
        assert (settings.storage_root / "trainforge-default" / "p" / "f.txt").read_text() == "x"
        assert uri == "s3://trainforge-default/p/f.txt"
    finally:
        result = stop_server(settings)
    assert result.was_running and result.stopped and result.pid == first.pid
    assert find_server(settings) is None and not settings.server_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(first.pid, 0)
