"""The supervisor's on-disk spool, and the reporter's bounded memory while the server cannot be reached."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from trainforge.runtime.agent import AgentClient, ServerLocator
from trainforge.runtime.reporter import Reporter, spool_owner
from trainforge.runtime.spool import ACK_FILE, Spool, drain, open_for


def _line(seq: int, message: str = "") -> dict[str, Any]:
    return {"kind": "line", "seq": seq, "timestamp": 1.0 + seq, "stream": "stdout", "message": message or f"m{seq}"}


def _write(spool: Spool, count: int, start: int = 0) -> None:
    for seq in range(start, start + count):
        spool.append(_line(seq))
        spool.next_seq = seq + 1
    spool.flush()


def test_append_read_ack_and_compaction_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a", segment_bytes=400)
    _write(spool, 60)
    assert len(spool.segments()) > 5  # small segments: many of them
    records = spool.unacknowledged(max_records=1000)
    assert [r.data["seq"] for r in records] == list(range(60))
    head = spool.read(spool.acked, max_records=25)
    assert [r.data["seq"] for r in head] == list(range(25))
    spool.ack(head[-1].end)
    assert spool.segments()[0] == head[-1].end.segment  # wholly acknowledged segments are deleted
    assert [r.data["seq"] for r in spool.unacknowledged()] == list(range(25, 60))
    spool.ack(spool.end)
    assert not spool.pending and len(spool.segments()) == 1
    spool.close()
    again = Spool(tmp_path / "spool", owner="a", segment_bytes=400)
    assert again.next_seq == 60 and not again.pending and again.unacknowledged() == []


def test_reopen_resumes_at_the_acknowledged_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a", segment_bytes=500)
    _write(spool, 40)
    spool.ack(spool.read(spool.acked, max_records=17)[-1].end)
    spool.close()
    again = Spool(tmp_path / "spool", owner="a", segment_bytes=500)
    assert [r.data["seq"] for r in again.unacknowledged()] == list(range(17, 40))
    assert again.next_seq == 40
    _write(again, 3, start=40)
    assert [r.data["seq"] for r in again.unacknowledged()][-4:] == [39, 40, 41, 42]


def test_a_record_cut_short_by_a_crash_is_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a")
    _write(spool, 5)
    spool.close()
    segment = tmp_path / "spool" / "00000001.jsonl"
    with open(segment, "ab") as out:
        out.write(b'{"kind":"line","seq":5,"timestamp":1.0,"stream":"stdout","mess')  # killed mid-write
    again = Spool(tmp_path / "spool", owner="a")
    assert [r.data["seq"] for r in again.unacknowledged()] == [0, 1, 2, 3, 4]
    assert again.next_seq == 5
    assert segment.read_bytes().endswith(b"\n")
    _write(again, 1, start=5)
    assert [r.data["seq"] for r in again.unacknowledged()] == [0, 1, 2, 3, 4, 5]


def test_an_acknowledgement_beyond_what_the_disk_kept_means_all_was_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a")
    _write(spool, 10)
    spool.ack(spool.end)
    spool.close()
    segment = tmp_path / "spool" / "00000001.jsonl"
    segment.write_bytes(segment.read_bytes()[:50])  # a machine crash kept less than was synced
    again = Spool(tmp_path / "spool", owner="a")
    assert not again.pending and again.next_seq == 10


def test_another_launchs_spool_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="first")
    _write(spool, 3)
    spool.close()
    fresh = open_for(tmp_path / "spool", "second")
    assert fresh.next_seq == 0 and not fresh.pending
    aside = list(tmp_path.glob("spool.*.stale"))
    assert len(aside) == 1 and json.loads((aside[0] / ACK_FILE).read_text())["owner"] == "first"
    fresh.close()
    empty = open_for(tmp_path / "spool", "third")  # nothing undelivered: simply replaced
    assert len(list(tmp_path.glob("spool.*.stale"))) == 1
    empty.close()


def test_drain_hands_over_lines_and_points_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a", segment_bytes=300)
    _write(spool, 8)
    spool.append({"kind": "status", "status": "Training", "message": "x", "failure_reason": None})
    spool.append({"kind": "metrics", "points": [{"name": "loss", "value": 1.5, "timestamp": 2.0, "seq": 1}]})
    _write(spool, 4, start=8)
    spool.ack(spool.read(spool.acked, max_records=3)[-1].end)
    spool.close()
    lines: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    assert drain(tmp_path / "spool", on_lines=lines.extend, on_metrics=points.extend, batch=4) == 9
    assert [line["seq"] for line in lines] == list(range(3, 12))
    assert set(lines[0]) == {"seq", "timestamp", "stream", "message"}
    assert points == [{"name": "loss", "value": 1.5, "timestamp": 2.0, "seq": 1}]
    assert drain(tmp_path / "spool", on_lines=lines.extend, on_metrics=points.extend) == 0


def test_drain_leaves_what_a_failing_handler_did_not_take(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", owner="a")
    _write(spool, 6)
    spool.close()

    def refuse(batch: list[dict[str, Any]]) -> None:
        raise OSError("database away")

    with pytest.raises(OSError):
        drain(tmp_path / "spool", on_lines=refuse, on_metrics=refuse)
    got: list[dict[str, Any]] = []
    assert drain(tmp_path / "spool", on_lines=got.extend, on_metrics=got.extend) == 6


def _unreachable_client() -> AgentClient:
    """A client of a port nobody listens on (bound, then closed): every request is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    locator = ServerLocator(f"http://127.0.0.1:{port}")
    return AgentClient(locator=locator, token="t", job_name="job", host="algo-1", timeout=1.0)


def test_reporter_memory_is_a_bounded_window_while_the_server_is_away(tmp_path: Path) -> None:
    """40,000 lines and some reports while nothing answers: memory holds at most ``max_lines`` records, the spool
    holds everything, and a reporter reopened on the spool (a restarted supervisor) goes on from it."""
    spool_dir = tmp_path / "spool"
    reporter = Reporter(_unreachable_client(), spool_dir=spool_dir, spool_owner=spool_owner("t"), max_lines=100)
    reporter.start()
    for i in range(40_000):
        reporter.line("stdout" if i % 2 else "stderr", f"line {i} " + "x" * 100)
        if i % 10_000 == 0:
            reporter.status("Training", f"report {i}")
    assert reporter.window <= 100 and reporter.peak_window <= 100
    assert reporter.lines_queued == 40_000
    reporter.abort()
    assert not reporter.close(timeout=10)  # not delivered: it stays on disk
    assert spool_dir.is_dir()
    resumed = Reporter(_unreachable_client(), spool_dir=spool_dir, spool_owner=spool_owner("t"), max_lines=100)
    assert resumed.resumed and resumed.lines_queued == 40_000
    resumed.line("stdout", "after the restart")
    spool = Spool(spool_dir)
    seqs: list[int] = []
    kinds: list[str] = []
    position = spool.acked
    while batch := spool.read(position, max_records=5000):
        seqs += [r.data["seq"] for r in batch if r.kind == "line"]
        kinds += [r.kind for r in batch]
        position = batch[-1].end
    assert seqs == list(range(40_001))
    assert kinds.count("status") == 4
    spool.close()
    resumed.abort()
    resumed.close(timeout=10)
