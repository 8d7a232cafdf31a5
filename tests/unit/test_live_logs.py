"""Live logs: the reporter's rule (a line leaves at once when nothing is in flight, lines written during a request
leave together as the next batch) and the server's log bus that wakes follow streams."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.wait import wait_for
from tests.unit.test_runtime_supervisor import TOKEN, TrainforgeServer, make_spec
from trainforge.runtime.agent import AgentClient, ServerLocator
from trainforge.runtime.reporter import Outbox, Reporter
from trainforge.server.log_bus import LogBus

# -- the Outbox rule --------------------------------------------------------------------------------------


def test_a_line_queued_while_idle_is_due_at_once() -> None:
    box = Outbox()
    box.add_line("stdout", "now", 0.0, now=10.0)
    batch = box.due(10.0)
    assert isinstance(batch, list) and [line.message for line in batch] == ["now"]


def test_lines_queued_while_a_batch_is_in_flight_leave_together_as_the_next_batch() -> None:
    box = Outbox(max_lines=4)
    box.add_line("stdout", "first", 0.0, now=10.0)
    in_flight = box.due(10.0)  # sent, not answered: it stays queued until popped
    assert isinstance(in_flight, list) and len(in_flight) == 1
    for i in range(6):
        box.add_line("stdout", f"during {i}", 0.0, now=10.0)
    box.pop(len(in_flight))  # answered
    batch = box.due(10.0)
    assert isinstance(batch, list) and [line.message for line in batch] == [f"during {i}" for i in range(4)]
    box.pop(len(batch))
    rest = box.due(10.0)
    assert isinstance(rest, list) and [line.message for line in rest] == ["during 4", "during 5"]


# -- the Reporter against the real server, its first request held in flight -------------------------------


class GatedTransport(httpx.HTTPTransport):
    """A real HTTP transport that can hold the next log batch before sending it, and notes each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.hold_next = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/logs"):
            self.batches.append(len(json.loads(request.read())["lines"]))
            if self.hold_next:
                self.hold_next = False
                self.holding.set()
                assert self.release.wait(60), "the test never released the held batch"
        return super().handle_request(request)


@pytest.fixture(scope="module")
def tf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainforgeServer]:
    server = TrainforgeServer(tmp_path_factory.mktemp("live-logs") / "home")
    yield server
    server.close()


def test_a_burst_during_a_request_is_batched_and_bounded(tf_server: TrainforgeServer, tmp_path: Path) -> None:
    tf_server.register(make_spec("burst", {}))
    gate = GatedTransport()
    client = AgentClient(
        locator=ServerLocator(tf_server.url, None), token=TOKEN, job_name="burst", host="algo-1", transport=gate
    )
    reporter = Reporter(client, spool_dir=tmp_path / "spool", max_lines=100)
    reporter.start()
    gate.hold_next = True
    reporter.line("stdout", "alone")  # nothing in flight: it leaves at once, by itself
    assert gate.holding.wait(30)
    for i in range(250):
        reporter.line("stdout", f"burst {i}")
    gate.release.set()
    assert reporter.close(timeout=60)
    assert gate.batches == [1, 100, 100, 50]
    assert tf_server.messages("burst") == ["alone", *(f"burst {i}" for i in range(250))]
    client.close()


def test_lines_printed_one_at_a_time_each_leave_alone(tf_server: TrainforgeServer, tmp_path: Path) -> None:
    tf_server.register(make_spec("trickle", {}))
    gate = GatedTransport()
    client = AgentClient(
        locator=ServerLocator(tf_server.url, None), token=TOKEN, job_name="trickle", host="algo-1", transport=gate
    )
    reporter = Reporter(client, spool_dir=tmp_path / "spool")
    reporter.start()
    for i in range(3):
        reporter.line("stdout", f"line {i}")
        wait_for(lambda: tf_server.messages("trickle")[-1:] == [f"line {i}"], what=f"line {i} to be stored")  # noqa: B023
    assert reporter.close(timeout=30)
    assert gate.batches == [1, 1, 1]
    client.close()


# -- the log bus --------------------------------------------------------------------------------------------


def test_a_publish_from_another_thread_wakes_the_follower_of_that_name_only() -> None:
    bus = LogBus()

    async def follow() -> tuple[bool, bool]:
        with bus.subscribe("job-a") as a, bus.subscribe("job-b") as b:
            a.clear()
            b.clear()
            publisher = threading.Thread(target=bus.publish, args=("job-a",))
            publisher.start()
            woken_a = await a.wait(30)
            publisher.join()
            woken_b = await b.wait(0.01)
            return woken_a, woken_b

    assert asyncio.run(follow()) == (True, False)
    assert bus.followers("job-a") == bus.followers("job-b") == 0  # subscriptions end with their block


def test_a_publish_between_clear_and_wait_is_not_missed() -> None:
    bus = LogBus()

    async def follow() -> bool:
        with bus.subscribe("job") as sub:
            sub.clear()  # then the follower reads the store...
            bus.publish("job")  # ...while a batch is stored
            return await sub.wait(30)

    assert asyncio.run(follow()) is True
    bus.publish("nobody-follows")  # no subscriber: nothing happens, nothing is kept
    assert bus.followers("nobody-follows") == 0
