"""The web console in a real browser: Playwright drives Debian's Chromium against a real server process.

Most tests share one server whose store is seeded (before it starts) with finished jobs, metrics and log lines
through the real :class:`JobStore`; the tests that need a running job, Stop or Clone get their own server.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.server import ServerProcess
from trainforge.errors import AuthError, ServerUnavailableError
from trainforge.server.app import create_app
from trainforge.server.console.links import console_login_url
from trainforge.server.console.session import COOKIE, SESSION_MAX_AGE_S, TICKET_MAX_AGE_S, Sessions
from trainforge.settings import Settings
from trainforge.spec.contract import job_arn, model_artifacts_uri
from trainforge.spec.job import parse_create_request
from trainforge.spec.status import SecondaryStatus as S
from trainforge.storage import LocalObjectStore
from trainforge.store import NewJob, open_job_store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
XSS_TAG = "<script>alert(1)</script>"
BULK = 30
T0 = 1_700_000_000.0


# -- seeding the store (the real JobStore on the server's SQLite file) -------------------------------------


def job_spec(name: str, **fields: Any) -> dict[str, Any]:
    """A valid CreateTrainingJob body for ``name`` with ``fields`` merged in, as the API would store it."""
    body: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "trainforge/python:current",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:auc", "Regex": "auc=([0-9.]+)"}],
        },
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": {"epochs": "10"},
        **fields,
    }
    return parse_create_request(body).to_wire()


def seed_job(store: Any, spec: dict[str, Any], t: float, path: list[tuple[S, str]], **kw: Any) -> int:
    """Insert ``spec`` created at ``t`` and walk it through ``path`` (one status every 7 s); its id."""
    name = spec["TrainingJobName"]
    rc = spec["ResourceConfig"]
    new = NewJob(
        name=name,
        arn=job_arn("local", "000000000000", name),
        spec_json=json.dumps(spec),
        instance_type=rc["InstanceType"],
        instance_count=rc["InstanceCount"],
        model_artifacts=model_artifacts_uri(spec["OutputDataConfig"]["S3OutputPath"], name),
    )
    job, _ = store.create(new, now=t)
    for i, (status, message) in enumerate(path, start=1):
        last = i == len(path)
        store.transition(name, status, message, now=t + 7 * i, **(kw if last else {}))
    return int(job.id)


DONE = [
    (S.DOWNLOADING, "Downloading input data"),
    (S.TRAINING, "Training image download completed"),
    (S.UPLOADING, "Uploading generated training model"),
    (S.COMPLETED, "Training job completed"),
]


def seed(home: Path) -> None:
    """The shared server's jobs: tuned xgboost runs with metrics, a failed, a stopped, a multi-host, an
    adversarial and many bulk jobs."""
    home.mkdir(parents=True, exist_ok=True)
    store = open_job_store(f"sqlite:///{home / 'trainforge.db'}")
    objects = LocalObjectStore(home / "storage")
    channels = [
        {
            "ChannelName": "train",
            "ContentType": "text/csv",
            "InputMode": "FastFile",
            "DataSource": {
                "S3DataSource": {
                    "S3Uri": "s3://trainforge-default/data/train/",
                    "S3DataDistributionType": "ShardedByS3Key",
                }
            },
        },
        {
            "ChannelName": "validation",
            "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3Uri": "s3://trainforge-default/data/validation/"}},
        },
    ]
    for i in range(BULK):
        seed_job(store, job_spec(f"bulk-{i:02d}"), T0 + i, DONE)
    for i, depth in enumerate((3, 5, 7)):
        name = f"xgb-tune-{i + 1:02d}"
        spec = job_spec(
            name,
            HyperParameters={"max_depth": str(depth), "eta": "0.2", "num_round": "50"},
            InputDataConfig=channels,
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            StoppingCondition={"MaxRuntimeInSeconds": 7200},
            Environment={"WANDB_API_KEY": "sk-very-secret-value", "OMP_NUM_THREADS": "4"},
            CheckpointConfig={"S3Uri": f"s3://trainforge-default/checkpoints/{name}/"},
            Tags=[{"Key": "team", "Value": "search"}],
        )
        job_id = seed_job(store, spec, T0 + 1000 + i, DONE)
        points = []
        for step in range(20):
            ts = T0 + 1000 + i + 14 + step * 3
            points.append({"name": "validation:auc", "value": 0.6 + 0.015 * step + 0.02 * i, "timestamp": ts})
            points.append({"name": "train:loss", "value": 1.0 / (step + 1 + i), "timestamp": ts})
            points.append({"name": "system/cpu_percent", "value": 50 + step, "timestamp": ts})
        store.append_metrics(job_id, "algo-1", points)
        store.append_logs(
            job_id,
            "algo-1",
            [
                {
                    "seq": n,
                    "timestamp": T0 + 1020 + n,
                    "stream": "stdout",
                    "message": f"[{n}] auc={0.6 + 0.015 * n:.3f}",
                }
                for n in range(20)
            ],
        )
    objects.put_bytes(model_artifacts_uri("s3://trainforge-default/", "xgb-tune-01"), b"model-archive-bytes")
    seed_job(
        store,
        job_spec("bert-finetune"),
        T0 + 2000,
        [(S.DOWNLOADING, "Downloading"), (S.TRAINING, "Training"), (S.FAILED, "Training job failed")],
        failure_reason="AlgorithmError: CUDA out of memory at step 12",
    )
    seed_job(
        store,
        job_spec("sweep-stopped"),
        T0 + 2100,
        [(S.TRAINING, "Training"), (S.STOPPING, "Stopping"), (S.STOPPED, "Training job stopped")],
    )
    dist = job_spec("xgb-dist", ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2})
    dist_id = seed_job(store, dist, T0 + 2200, DONE)
    for host in ("algo-1", "algo-2"):
        store.append_logs(
            dist_id,
            host,
            [
                {"seq": n, "timestamp": T0 + 2210 + n, "stream": "stdout", "message": f"{host} says line {n}"}
                for n in range(5)
            ],
        )
    evil = job_spec(
        "xss-job",
        HyperParameters={"note": "<img src=x onerror=alert(2)>"},
        Environment={"GREETING": "<svg onload=alert(3)>"},
    )
    evil["Tags"] = [{"Key": "note", "Value": XSS_TAG}]  # the API refuses such a tag; an old record may hold one
    evil_id = seed_job(
        store,
        evil,
        T0 + 2300,
        [(S.TRAINING, "<i>training</i>"), (S.FAILED, "failed")],
        failure_reason="<script>alert(4)</script>",
    )
    store.append_logs(evil_id, "algo-1", [{"seq": 0, "timestamp": T0 + 2310, "message": "<script>alert(5)</script>"}])
    store.append_metrics(evil_id, "algo-1", [{"name": "<b>m</b>", "value": 1.0, "timestamp": T0 + 2310}])
    store.engine.dispose()


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("console") / "tfhome"
    seed(home)
    srv = ServerProcess(home).start()
    try:
        yield srv
    finally:
        srv.kill()


def signed_in(browser: Browser, srv: ServerProcess) -> Page:
    """A fresh browser context signed into ``srv``'s console through a one-time login link."""
    context = browser.new_context(base_url=srv.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(console_login_url(Settings(home=srv.home)))
    page.wait_for_url("**/console/jobs")
    return page


@pytest.fixture
def page(browser: Browser, seeded: ServerProcess) -> Iterator[Page]:
    p = signed_in(browser, seeded)
    yield p
    p.context.close()


def session_client(srv: ServerProcess, page: Page) -> httpx.Client:
    """An HTTP client carrying the browser's session cookie (to read raw HTML as the server sent it)."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return httpx.Client(base_url=srv.url, cookies=cookies, timeout=10)


# -- sign in ----------------------------------------------------------------------------------------------


def test_sessions_and_tickets_are_signed_single_use_and_expire() -> None:
    sessions = Sessions(b"the-secret")
    cookie = sessions.issue("alice", "0123456789abcdef", now=T0)
    session = sessions.verify(cookie, now=T0 + 60)
    assert session is not None and (session.user, session.token_id) == ("alice", "0123456789abcdef")
    assert sessions.verify(cookie, now=T0 + SESSION_MAX_AGE_S + 1) is None
    issued, _user, token_id, nonce, _mac = cookie.split(".")
    assert sessions.verify(f"{issued}.bob.{token_id}.{nonce}.{_mac}", now=T0) is None  # the user is signed
    assert sessions.verify(f"{issued}.alice.{token_id}.{nonce}.forged", now=T0) is None
    assert Sessions(b"another-secret").verify(cookie, now=T0) is None
    assert sessions.csrf_ok(session, session.csrf) and not sessions.csrf_ok(session, "x")
    sessions.revoke(session, now=T0 + 60)
    assert sessions.verify(cookie, now=T0 + 60) is None
    ticket, _expires = sessions.make_ticket("alice", "0123456789abcdef", now=T0)
    assert sessions.redeem_ticket(ticket, now=T0 + TICKET_MAX_AGE_S + 1) is None
    assert Sessions(b"another-secret").redeem_ticket(ticket, now=T0) is None
    assert sessions.redeem_ticket(ticket, now=T0) == ("alice", "0123456789abcdef")
    assert sessions.redeem_ticket(ticket, now=T0) is None


def test_the_cookie_is_secure_over_https_and_a_login_link_needs_a_server(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    app = create_app(settings, start_scheduler=False)
    with TestClient(app, base_url="https://127.0.0.1") as c:
        r = c.post("/console/login", data={"token": app.state.token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console/jobs"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie and app.state.token not in cookie
        api = c.get("/console/api/jobs", cookies={COOKIE: "forged"})
        assert api.status_code == 401 and api.json()["error"]["code"] == "AccessDenied"
    with pytest.raises(ServerUnavailableError, match="no trainforge server is running"):
        console_login_url(settings)
    with pytest.raises(AuthError):
        console_login_url(Settings(home=tmp_path / "empty", endpoint="http://127.0.0.1:9"))


def test_a_wrong_token_shows_an_error_and_the_right_one_signs_in(browser: Browser, seeded: ServerProcess) -> None:
    context = browser.new_context(base_url=seeded.url)
    page = context.new_page()
    page.goto("/console/jobs/xgb-tune-01")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    page.fill("#token", seeded.token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/jobs/xgb-tune-01$"))
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http on 127.0.0.1; set on https requests
    assert seeded.token not in cookie["value"]
    page.click("header button:text('Sign out')")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto("/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    context.close()


def test_a_login_link_signs_in_once(browser: Browser, seeded: ServerProcess) -> None:
    link = console_login_url(Settings(home=seeded.home))
    assert seeded.token not in link
    first = browser.new_context(base_url=seeded.url).new_page()
    first.goto(link)
    expect(first.locator("#job-rows tr")).to_have_count(25)
    again = browser.new_context(base_url=seeded.url).new_page()
    again.goto(link)
    expect(again.locator("#login-error")).to_contain_text("expired or was already used")
    first.context.close()
    again.context.close()


# -- jobs list --------------------------------------------------------------------------------------------


def test_the_list_shows_jobs_and_filters_searches_sorts_and_pages(page: Page) -> None:
    total = BULK + 7
    expect(page.locator("#job-count")).to_have_text(f"{total} jobs")
    rows = page.locator("#job-rows tr")
    expect(rows).to_have_count(25)
    first = rows.first  # newest first
    expect(first.locator("td.name")).to_have_text("xss-job")
    expect(first.locator(".status")).to_have_text("Failed")
    expect(first.locator(".status")).to_have_class(re.compile("status-Failed"))
    tuned = page.locator("#job-rows tr[data-name=xgb-tune-01]")
    expect(tuned.locator("td").nth(3)).to_have_text("ml.m5.xlarge \u00d7 1")
    expect(tuned.locator("td.duration")).to_have_text("28s")
    expect(tuned.locator("td.metrics")).to_contain_text("validation:auc 0.885")

    page.select_option("#filter-status", "Failed")  # applies at once
    expect(page.locator("#job-rows td.name")).to_have_text(["xss-job", "bert-finetune"])
    page.select_option("#filter-status", "")
    page.fill("#filter-q", "XGB-TUNE")
    page.press("#filter-q", "Enter")
    expect(page.locator("#job-rows td.name")).to_have_text(["xgb-tune-03", "xgb-tune-02", "xgb-tune-01"])
    page.click("#jobs thead a:text('Name')")
    expect(page.locator("#job-rows td.name")).to_have_text(["xgb-tune-01", "xgb-tune-02", "xgb-tune-03"])

    page.goto("/console/jobs?sort=Name&order=Ascending&size=10")
    expect(page.locator("#job-rows td.name").first).to_have_text("bert-finetune")
    page.click("#next-page")
    expect(page.locator("#page-info")).to_have_text(f"11\u201320 of {total} \u00b7 page 2 of 4")
    expect(page.locator("#job-rows td.name").first).to_have_text("bulk-09")


# -- job page ---------------------------------------------------------------------------------------------


def test_the_job_page_shows_the_whole_record(page: Page, seeded: ServerProcess) -> None:
    page.goto("/console/jobs/xgb-tune-01")
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-image")).to_have_text("trainforge/python:current")
    expect(page.locator("#hyperparameters")).to_contain_text("max_depth")
    channels = page.locator("#channels")
    for text in ("s3://trainforge-default/data/train/", "text/csv", "FastFile", "ShardedByS3Key", "File (job default)"):
        expect(channels).to_contain_text(text)
    expect(page.locator("#resources")).to_contain_text("ml.m5.xlarge")
    expect(page.locator("#stopping")).to_contain_text("7200")
    expect(page.locator("#checkpoints")).to_contain_text("s3://trainforge-default/checkpoints/xgb-tune-01/")
    expect(page.locator("#tags")).to_contain_text("search")
    env = page.locator("#environment")
    expect(env).to_contain_text("OMP_NUM_THREADS")
    expect(env).to_contain_text("****")
    assert "sk-very-secret-value" not in page.content()
    expect(page.locator("#timeline-rows td:first-child")).to_have_text(
        ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    )
    expect(page.locator("#timeline-rows tr").nth(2).locator("td").nth(2)).to_have_text("7s")
    expect(page.locator("#final-metrics")).to_contain_text("validation:auc")
    expect(page.locator("#log .line")).to_have_count(20)
    with page.expect_download() as download:
        page.click("#artifacts a:text('model.tar.gz')")
    assert Path(download.value.path()).read_bytes() == b"model-archive-bytes"
    with session_client(seeded, page) as c:
        assert c.get("/console/jobs/xgb-tune-01/artifacts/output").status_code == 404
        assert c.get("/console/jobs/xgb-tune-01/artifacts/..%2F..%2Ftoken").status_code == 404


def test_a_failed_job_shows_its_failure_reason_at_the_top(page: Page) -> None:
    page.goto("/console/jobs/bert-finetune")
    failure = page.locator("#failure")
    expect(failure).to_be_visible()
    expect(failure).to_contain_text("AlgorithmError: CUDA out of memory at step 12")
    failure_box, summary_box = failure.bounding_box(), page.locator("h2:text('Summary')").bounding_box()
    assert failure_box and summary_box and failure_box["y"] < summary_box["y"]
    expect(page.locator("#stop-button")).to_have_count(0)


def test_metric_and_system_metric_charts_are_drawn(page: Page) -> None:
    page.goto("/console/jobs/xgb-tune-02")
    charts = page.locator("#metric-charts figure.chart")
    expect(charts.locator("figcaption")).to_have_text(["train:loss", "validation:auc"])
    path = charts.first.locator("path.series")
    expect(path).to_have_attribute("d", re.compile(r"^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+){19}$"))
    expect(page.locator("#system-charts figcaption")).to_have_text(["system/cpu_percent"])
    charts.first.locator("rect").hover()
    expect(charts.first.locator(".chart-tip")).to_contain_text("train:loss")


def test_a_multi_host_log_has_a_host_selector(page: Page) -> None:
    page.goto("/console/jobs/xgb-dist")
    lines = page.locator("#log .line")
    expect(lines).to_have_count(10)
    expect(page.locator("#log .host").first).to_have_text("algo-1")
    page.select_option("#log-host", "algo-2")
    expect(lines).to_have_count(5)
    expect(lines.first).to_have_text("algo-2 says line 0")


def test_compare_puts_jobs_side_by_side_and_overlays_a_metric(page: Page) -> None:
    page.goto("/console/jobs?q=xgb-tune")
    expect(page.locator("#compare-button")).to_be_disabled()
    for name in ("xgb-tune-01", "xgb-tune-02", "xgb-tune-03"):
        page.check(f"#job-rows tr[data-name={name}] input[type=checkbox]")
    page.click("#compare-button")
    expect(page).to_have_url(re.compile(r"/console/compare\?job=xgb-tune-03&job=xgb-tune-02&job=xgb-tune-01"))
    table = page.locator("#compare-table")
    expect(table.locator("thead th[scope=col]")).to_have_text(["xgb-tune-03", "xgb-tune-02", "xgb-tune-01"])
    depth = table.locator("tr", has=page.locator("th:text-is('max_depth')"))
    expect(depth).to_have_class("differs")
    expect(depth.locator("td")).to_have_text(["7", "5", "3"])
    expect(table.locator("tr", has=page.locator("th:text-is('eta')"))).not_to_have_class("differs")
    page.select_option("#compare-metric", "validation:auc")
    expect(page.locator("#compare-chart path.series")).to_have_count(3)
    expect(page.locator("#compare-chart .legend")).to_contain_text("xgb-tune-01")


# -- bad input --------------------------------------------------------------------------------------------


def test_an_unknown_job_or_page_is_a_404_page(page: Page) -> None:
    response = page.goto("/console/jobs/no-such-job")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_contain_text("Training job not found")
    expect(page.locator("main")).to_contain_text("no-such-job")
    response = page.goto("/console/no/such/page")
    assert response is not None and response.status == 404


def test_no_page_renders_user_controlled_text_unescaped(page: Page, seeded: ServerProcess) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("/console/jobs/xss-job")
    expect(page.locator("#tags")).to_contain_text(XSS_TAG)
    expect(page.locator("#failure-reason")).to_have_text("<script>alert(4)</script>")
    expect(page.locator("#hyperparameters")).to_contain_text("<img src=x onerror=alert(2)>")
    expect(page.locator("#log .line")).to_have_text(["<script>alert(5)</script>"])
    expect(page.locator("#metric-charts figcaption")).to_have_text(["<b>m</b>"])
    page.goto("/console/jobs?q=" + "<script>alert(6)</script>")
    expect(page.locator("#filter-q")).to_have_value("<script>alert(6)</script>")
    page.goto("/console/compare?job=xss-job&job=<script>alert(7)</script>")
    expect(page.locator("main")).to_contain_text("Not found: <script>alert(7)</script>")
    assert dialogs == []
    with session_client(seeded, page) as c:
        for url in (
            "/console/jobs/xss-job",
            "/console/jobs?q=<script>alert(6)</script>",
            "/console/compare?job=xss-job&job=<script>alert(7)</script>",
            "/console/jobs/<script>x",
        ):
            html = c.get(url).text
            assert "<script>alert" not in html and "<img src=x" not in html and "<svg onload" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/console/jobs/xss-job").text


# -- a real running job: live log, Stop, Clone --------------------------------------------------------------

TRAIN_PY = b"""import time
for i in range(2400):
    print(f"step {i} loss={1 / (i + 1):.4f}", flush=True)
    time.sleep(0.05)
"""


def submit_running_job(srv: ServerProcess, name: str) -> None:
    """Submit a job whose ``train.py`` prints a line every 50 ms for two minutes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN_PY)
        tar.addfile(info, io.BytesIO(TRAIN_PY))
    source = f"s3://trainforge-default/{name}/source/sourcedir.tar.gz"
    LocalObjectStore(srv.home / "storage").put_bytes(source, buf.getvalue())
    body = job_spec(
        name,
        AlgorithmSpecification={"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)},
    )
    with srv.client() as c:
        assert c.post("/v1/training-jobs", json=body).status_code == 200


def test_a_running_jobs_log_grows_live_and_stop_stops_it(browser: Browser, server: ServerProcess) -> None:
    submit_running_job(server, "live-job")
    page = signed_in(browser, server)
    listing = page.context.new_page()
    listing.goto("/console/jobs")
    row_status = listing.locator("#job-rows tr[data-name=live-job] .status")
    expect(row_status).to_have_text("InProgress")
    page.goto("/console/jobs/live-job")
    expect(page.locator("#job-secondary")).to_have_text("Training")
    lines = page.locator("#log .line")
    expect(lines.filter(has_text="step 3 ")).to_have_count(1)
    seen = lines.count()
    expect(lines.nth(seen + 10)).to_be_attached()  # ten more lines arrived without a reload
    page.once("dialog", lambda d: d.accept())
    page.click("#stop-button")
    expect(page.locator(".notice")).to_contain_text("Stop requested")
    expect(page.locator("#job-status")).to_have_text("Stopped", timeout=30_000)
    with server.client() as c:
        d = c.get("/v1/training-jobs/live-job").json()
    assert (d["TrainingJobStatus"], d["SecondaryStatus"]) == ("Stopped", "Stopped")
    expect(page.locator("#timeline-rows td:first-child").last).to_have_text("Stopped")
    expect(page.locator("#stop-button")).to_have_count(0)
    expect(row_status).to_have_text("Stopped")  # the list page refreshed itself
    page.context.close()


def test_clone_reruns_the_same_spec_under_a_new_name(browser: Browser, server: ServerProcess) -> None:
    submit_running_job(server, "clone-me")
    page = signed_in(browser, server)
    page.goto("/console/jobs/clone-me")
    page.once("dialog", lambda d: d.accept())
    page.click("#clone-button")
    expect(page).to_have_url(re.compile(r"/console/jobs/clone-me-rerun-1\?cloned_from=clone-me(&warning=[^&]*)*$"))
    expect(page.locator("#cloned-notice")).to_contain_text("clone-me")
    new_name = page.locator("#job-name").inner_text()
    with server.client() as c:
        original = c.get("/v1/training-jobs/clone-me").json()
        clone = c.get(f"/v1/training-jobs/{new_name}").json()
        names = [s["TrainingJobName"] for s in c.get("/v1/training-jobs").json()["TrainingJobSummaries"]]
        for name in (new_name, "clone-me"):
            c.post(f"/v1/training-jobs/{name}/stop")
    assert sorted(names) == sorted(["clone-me", new_name])
    for key in ("HyperParameters", "AlgorithmSpecification", "ResourceConfig", "OutputDataConfig"):
        assert clone[key] == original[key]
    page.context.close()


def test_trainforge_console_prints_a_link_that_signs_in(server: ServerProcess) -> None:
    """``trainforge console --print`` gives a one-time link; following it lands on the signed-in jobs list."""
    import json as _json
    import subprocess as _subprocess
    import sys as _sys

    import httpx as _httpx

    out = _subprocess.run(
        [_sys.executable, "-m", "trainforge.cli", "console", "--print", "--output", "json"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    link = _json.loads(out.stdout)["url"]
    assert link.startswith(server.url + "/console/login?ticket=") and server.token not in link
    with _httpx.Client(follow_redirects=True, timeout=10) as browser:
        assert "Signed in" in browser.get(link).text
        jobs_page = browser.get(server.url + "/console/jobs")
        assert jobs_page.status_code == 200 and str(jobs_page.url).endswith("/console/jobs")
    with _httpx.Client(follow_redirects=True, timeout=10) as stranger:
        assert "Signed in" not in stranger.get(link).text  # the link works once
