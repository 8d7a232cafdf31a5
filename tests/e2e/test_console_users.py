"""The console for several users, in Debian's Chromium driven by Playwright, against one real server process.

The store is given one finished job of alice and one of bob before the server starts (through the real
``JobStore``); the admin then makes the two users over the API. Each test signs in its own browser context.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.server import ServerProcess
from trainforge.spec.contract import job_arn, model_artifacts_uri
from trainforge.spec.job import parse_create_request
from trainforge.spec.status import SecondaryStatus as S
from trainforge.store import NewJob, open_job_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
T0 = 1_700_000_000.0


def add_job(store: Any, name: str, owner: str, t: float) -> None:
    """A Completed job of ``owner`` created at ``t`` (with a secret-looking variable)."""
    spec = parse_create_request(
        {
            "TrainingJobName": name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "Environment": {"API_TOKEN": f"{owner}-secret-value"},
        }
    ).to_wire()
    new = NewJob(
        name=name,
        arn=job_arn("local", "000000000000", name),
        spec_json=json.dumps(spec),
        instance_type="ml.m5.large",
        instance_count=1,
        model_artifacts=model_artifacts_uri("s3://trainforge-default/", name),
        created_by=owner,
    )
    store.create(new, now=t)
    for i, status in enumerate((S.DOWNLOADING, S.TRAINING, S.UPLOADING, S.COMPLETED), start=1):
        store.transition(name, status, status.value, now=t + i)


@dataclass
class Site:
    """The server and its users' tokens."""

    srv: ServerProcess
    tokens: dict[str, str]

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("console-users") / "tfhome"
    home.mkdir(parents=True)
    store = open_job_store(f"sqlite:///{home / 'trainforge.db'}")
    add_job(store, "alice-train", "alice", T0)
    add_job(store, "bob-train", "bob", T0 + 100)
    store.engine.dispose()
    srv = ServerProcess(home).start()
    try:
        tokens = {"admin": srv.token}
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"}, timeout=30) as c:
            for user in ("alice", "bob", "carol"):
                tokens[user] = c.post("/v1/users", json={"UserName": user}).json()["Token"]
        yield Site(srv, tokens)
    finally:
        srv.kill()


def sign_in_with_token(browser: Browser, site: Site, user: str) -> Page:
    """A fresh browser context signed in by pasting ``user``'s token into the login form."""
    page = browser.new_context(base_url=site.srv.url).new_page()
    page.set_default_timeout(15_000)
    page.goto("/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.fill("#token", site.tokens[user])
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/jobs$"))
    return page


def cli_login_link(site: Site, user: str) -> str:
    """What ``trainforge console --print`` gives the CLI of ``user`` (its endpoint and token set)."""
    env = {**site.srv.env, "TRAINFORGE_ENDPOINT": site.srv.url, "TRAINFORGE_TOKEN": site.tokens[user]}
    out = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "console", "--print", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    link: str = json.loads(out.stdout)["url"]
    assert site.tokens[user] not in link
    return link


def test_a_user_sees_only_their_own_jobs_and_another_users_job_is_a_404_page(browser: Browser, site: Site) -> None:
    page = sign_in_with_token(browser, site, "bob")
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as bob")
    expect(page.locator("#job-rows td.name")).to_have_text(["bob-train"])
    expect(page.locator("#job-count")).to_have_text("1 job")

    page.goto("/console/jobs/bob-train")
    expect(page.locator("#job-owner")).to_have_text("bob")
    expect(page.locator("#environment")).to_contain_text("****")
    assert "bob-secret-value" not in page.content()  # masked for the owner too

    unknown = page.goto("/console/jobs/no-such-job")
    assert unknown is not None and unknown.status == 404
    unknown_html = unknown.text()
    theirs = page.goto("/console/jobs/alice-train")
    assert theirs is not None and theirs.status == 404
    expect(page.locator("h1")).to_contain_text("Training job not found")
    assert unknown_html.replace("no-such-job", "alice-train") == theirs.text()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=site.srv.url, cookies=cookies, timeout=10) as c:
        for path in (
            "/console/jobs/alice-train/log.txt",
            "/console/jobs/alice-train/artifacts/model",
            "/console/api/jobs/alice-train",
            "/console/api/jobs/alice-train/logs",
        ):
            assert c.get(path).status_code == 404, path
        assert "alice-train" not in c.get("/console/api/jobs").text
        page.goto("/console/jobs/bob-train")
        csrf = page.locator("form[action$='/clone'] input[name=csrf]").input_value()
        for action in ("stop", "clone"):
            r = c.post(f"/console/jobs/alice-train/{action}", data={"csrf": csrf})
            assert r.status_code == 404 and "Training job not found" in r.text
    page.goto("/console/compare?job=alice-train&job=bob-train")
    expect(page.locator("main")).to_contain_text("Not found: alice-train")
    page.context.close()

    with site.api("admin") as admin:
        events = admin.get("/v1/audit", params={"UserName": "bob"}).json()["Events"]
    refused = {(e["Action"], e["Target"], e["Outcome"]) for e in events}
    assert {("StopTrainingJob", "alice-train", "404"), ("CloneTrainingJob", "alice-train", "404")} <= refused
    assert ("ConsoleSignIn", None, "ok") in refused


def test_an_admin_sees_every_job_and_trainforge_console_signs_in_the_clis_own_user(
    browser: Browser, site: Site
) -> None:
    admin = browser.new_context(base_url=site.srv.url).new_page()
    admin.goto(cli_login_link(site, "admin"))
    admin.wait_for_url("**/console/jobs")
    expect(admin.locator("#signed-in-as")).to_have_text("Signed in as admin (admin)")
    expect(admin.locator("#job-rows td.name")).to_have_text(["bob-train", "alice-train"])
    admin.goto("/console/jobs/alice-train")
    expect(admin.locator("#job-owner")).to_have_text("alice")
    admin.context.close()

    alice = browser.new_context(base_url=site.srv.url).new_page()
    alice.goto(cli_login_link(site, "alice"))
    alice.wait_for_url("**/console/jobs")
    expect(alice.locator("#signed-in-as")).to_have_text("Signed in as alice")
    expect(alice.locator("#job-rows td.name")).to_have_text(["alice-train"])
    alice.context.close()


def test_disabling_a_user_ends_their_session_at_the_next_page_load(browser: Browser, site: Site) -> None:
    page = sign_in_with_token(browser, site, "carol")
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as carol")
    expect(page.locator("#job-rows td.name")).to_have_count(0)
    with site.api("admin") as admin:
        assert admin.post("/v1/users/carol/disable").status_code == 200
    page.reload()
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.fill("#token", site.tokens["carol"])
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("user 'carol' is disabled")
    page.context.close()
