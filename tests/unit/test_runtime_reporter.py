"""The reporter's ordered queue and batching rule, without a server."""

from __future__ import annotations

from trainforge.runtime.reporter import LogLine, Outbox, StatusTicket


def test_one_sequence_across_streams() -> None:
    box = Outbox()
    lines = [box.add_line(stream, f"m{i}", 100.0 + i, 0.0) for i, stream in enumerate(["stdout", "stderr"] * 3)]
    assert [line.seq for line in lines] == [0, 1, 2, 3, 4, 5]
    assert [line.stream for line in lines[:2]] == ["stdout", "stderr"]
    assert lines[0].to_wire() == {"seq": 0, "timestamp": 100.0, "stream": "stdout", "message": "m0"}


def test_batch_waits_for_flush_interval() -> None:
    box = Outbox(flush_interval=0.2)
    box.add_line("stdout", "a", 0.0, now=10.0)
    box.add_line("stdout", "b", 0.0, now=10.1)
    assert box.due(10.1) is None
    assert box.wake_in(10.1) is not None and abs(box.wake_in(10.1) - 0.1) < 1e-9  # type: ignore[operator]
    batch = box.due(10.25)
    assert isinstance(batch, list) and [line.message for line in batch] == ["a", "b"]
    assert box.due(10.1, closing=True) == batch


def test_full_batch_is_due_at_once_and_capped() -> None:
    box = Outbox(max_lines=3, flush_interval=60)
    for i in range(7):
        box.add_line("stdout", str(i), 0.0, now=0.0)
    batch = box.due(0.0)
    assert isinstance(batch, list) and [line.seq for line in batch] == [0, 1, 2]
    box.pop(3)
    batch = box.due(0.0)
    assert isinstance(batch, list) and [line.seq for line in batch] == [3, 4, 5]
    box.pop(3)
    assert box.due(0.0) is None  # one line left, not old enough
    assert len(box) == 1


def test_byte_cap_splits_batches() -> None:
    box = Outbox(max_bytes=1000, flush_interval=60)
    for _ in range(5):
        box.add_line("stdout", "x" * 400, 0.0, now=0.0)
    batch = box.due(0.0)
    assert isinstance(batch, list) and len(batch) == 2
    box.pop(2)
    box.pop(2)
    box.add_line("stdout", "y" * 5000, 0.0, now=0.0)  # an oversized line still goes, alone
    batch = box.due(0.0, closing=True)
    assert isinstance(batch, list) and [line.seq for line in batch] == [4]
    box.pop(1)
    batch = box.due(0.0)
    assert isinstance(batch, list) and [line.seq for line in batch] == [5]


def test_status_never_overtakes_earlier_lines() -> None:
    box = Outbox(flush_interval=60)
    box.add_line("stdout", "before", 0.0, now=0.0)
    ticket = StatusTicket("Training", "go", None)
    box.add_status(ticket, now=0.0)
    box.add_line("stdout", "after", 0.0, now=0.0)
    first = box.due(0.0)
    assert isinstance(first, list) and [line.message for line in first] == ["before"]
    box.pop(1)
    assert box.due(0.0) is ticket
    box.pop(1)
    assert box.due(0.0) is None
    last = box.due(0.0, closing=True)
    assert isinstance(last, list) and isinstance(last[0], LogLine) and last[0].message == "after"


def test_drop_all_returns_tickets() -> None:
    box = Outbox()
    ticket = StatusTicket("Failed", "x", "reason")
    box.add_line("stdout", "a", 0.0, now=0.0)
    box.add_status(ticket, now=0.0)
    assert box.drop_all() == [ticket]
    assert len(box) == 0
