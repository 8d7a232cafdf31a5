"""CLI argument parsing and exit codes that need no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainforge import __version__
from trainforge.cli.main import build_parser, main, parse_args


@pytest.fixture(autouse=True)
def _empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TRAINFORGE_ENDPOINT", "TRAINFORGE_TOKEN", "TRAINFORGE_PORT", "TRAINFORGE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_output_is_accepted_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parse_args(parser, ["jobs", "list"]).output == "text"
    assert parse_args(parser, ["jobs", "list", "--output", "json"]).output == "json"
    assert parse_args(parser, ["--output", "json", "jobs", "list"]).output == "json"
    assert parse_args(parser, ["-o", "json", "server", "status"]).output == "json"
    assert parse_args(parser, ["jobs", "-o", "json", "list"]).output == "json"
    args = parse_args(parser, ["jobs", "logs", "my-job", "-f", "--cursor", "17", "--host", "algo-2"])
    assert (args.name, args.follow, args.cursor, args.host) == ("my-job", True, 17, "algo-2")
    args = parse_args(parser, ["jobs", "list"])
    assert (args.sort_by, args.sort_order, args.max_results) == ("CreationTime", "Descending", 100)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["jobs"],
        ["bogus"],
        ["jobs", "describe"],
        ["jobs", "list", "--max-results", "0"],
        ["jobs", "list", "--status", "Running"],
        ["jobs", "wait", "j", "--logs", "--timeout", "3"],
        ["jobs", "list", "--output", "yaml"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"trainforge {__version__}"


def test_jobs_commands_without_a_server_exit_4_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["jobs", "list"], ["jobs", "describe", "x"], ["jobs", "logs", "x", "-f"], ["jobs", "wait", "x"]):
        assert main(argv) == 4
        err = capsys.readouterr().err
        assert err.startswith("error: no trainforge server is running") and err.count("\n") == 1
        assert "Traceback" not in err


def test_server_status_and_stop_without_a_server(capsys: pytest.CaptureFixture[str], _empty_home: Path) -> None:
    assert main(["server", "status", "--output", "json"]) == 4
    status = json.loads(capsys.readouterr().out)
    assert status["running"] is False and status["url"] is None and status["pid"] is None
    assert status["home"] == str(_empty_home)
    assert main(["server", "stop"]) == 0
    assert "no trainforge server is running" in capsys.readouterr().out


def test_a_bad_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRAINFORGE_PORT", "not-a-port")
    assert main(["jobs", "list"]) == 2
    assert capsys.readouterr().err.startswith("error: invalid setting TRAINFORGE_PORT")
