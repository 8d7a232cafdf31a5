"""The console's job page follows a running job's log through the live stream (Chromium, a real server).

The job's script prints a line, then waits for a file the test creates only after the page showed that line; so
the page showed it while the job was running, with no timing in the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.test_console import ARGS, CHROMIUM, signed_in
from tests.e2e.test_live_logs import submit
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_the_job_page_shows_a_line_while_the_job_runs(browser: Browser, server: ServerProcess) -> None:
    release = submit(server, "console-live")
    page = signed_in(browser, server)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto("/console/jobs/console-live")
    expect(page.locator("#log .line", has_text="live line one")).to_have_count(1)
    expect(page.locator("#job-status")).to_have_text("InProgress")  # the script waits for the release
    assert any("/console/api/jobs/console-live/log-stream" in url for url in requested), requested
    release.touch()
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#log .line", has_text="after release")).to_have_count(1)
    page.context.close()


def test_the_log_stream_needs_a_console_session(server: ServerProcess) -> None:
    submit(server, "console-private")
    with server.client() as c:  # a bearer token is not a console session
        reply = c.get("/console/api/jobs/console-private/log-stream")
    assert reply.status_code == 401
