"""Cost accounting against one real server with a price file: real jobs on two instance types (a multi-host one, an
``@remote`` function, another user's job), a real endpoint, the CLI and the console.

The acceptance: the sum of the per-job ``Cost.Amount`` (describe and list agree) equals ``GET /v1/costs``'s total for
the same period, for every grouping, and each group's amount is the sum of its jobs'; a job that started before
``since`` is left out; an endpoint's instance time is counted, and still is after the endpoint is deleted.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.estimator import Estimator
from trainforge.remote_function import remote
from trainforge.settings import Settings
from trainforge.storage import LocalObjectStore

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
# Round figures, so a reader can check them: 0.0001 USD per second of ml.m5.large, 0.0002 of ml.c5.xlarge.
PRICES: dict[str, Any] = {"currency": "USD", "ml.m5.large": 0.36, "ml.c5.xlarge": 0.72, "ml.t2.medium": 3.6}
TRAIN = """
import time
time.sleep(1.3)
print("trained")
"""
INFERENCE = textwrap.dedent(
    """
    import json

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return data

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


@dataclass
class Site:
    """The module's server and bob's token."""

    srv: ServerProcess
    bob: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.srv.url, headers={"Authorization": f"Bearer {token or self.srv.token}"}, timeout=30
        )

    def session(self, token: str | None = None) -> trainforge.Session:
        return trainforge.Session(
            settings=Settings(home=self.srv.home, endpoint=self.srv.url, token=token or self.srv.token)
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.srv.env, "TRAINFORGE_ENDPOINT": self.srv.url, "TRAINFORGE_TOKEN": self.srv.token}
        return subprocess.run(
            [sys.executable, "-m", "trainforge.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("costs")
    prices = root / "prices.json"
    prices.write_text(json.dumps(PRICES))
    env = {
        "TRAINFORGE_STOP_GRACE_SECONDS": "3",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_PRICES_FILE": str(prices),
    }
    with running_server(root / "tfhome", env) as srv:
        site = Site(srv, "")
        made = site.cli("users", "create", "bob", "--output", "json")
        assert made.returncode == 0, made.stderr
        assert site.cli("roles", "grant", "TrainforgeExecutionRole", "bob").returncode == 0
        site.bob = json.loads(made.stdout)["Token"]
        yield site


def costs(site: Site, token: str | None = None, **params: Any) -> dict[str, Any]:
    with site.client(token) as c:
        r = c.get("/v1/costs", params=params)
        assert r.status_code == 200, r.text
        value: dict[str, Any] = r.json()
        return value


def all_jobs(site: Site) -> list[dict[str, Any]]:
    """Every training job's DescribeTrainingJob (as the admin), each checked against its ListTrainingJobs entry."""
    with site.client() as c:
        listed = c.get("/v1/training-jobs", params={"MaxResults": 100}).json()["TrainingJobSummaries"]
        described = []
        for summary in listed:
            d = c.get(f"/v1/training-jobs/{summary['TrainingJobName']}").json()
            assert summary.get("Cost") == d.get("Cost"), (summary, d)
            described.append(d)
        return described


def dec(value: float) -> Decimal:
    return Decimal(str(value))


def expected_amount(price: float, count: int, seconds: int) -> Decimal:
    return (dec(price) * count * seconds / 3600).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def group_key(by: str, d: dict[str, Any]) -> str:
    if by == "user":
        return str(d["CreatedBy"]["UserProfileName"])
    if by == "day":
        return datetime.fromtimestamp(d["TrainingStartTime"], UTC).date().isoformat()
    return str(d["ResourceConfig"]["InstanceType"])


def write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(textwrap.dedent(text))
    return root


# -- the acceptance -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(site: Site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """Four real jobs, one after the other: the admin's on ml.m5.large, then (after ``since``) the admin's on two
    ml.c5.xlarge hosts, bob's on ml.m5.large and an ``@remote`` function on ml.c5.xlarge. The period's marks."""
    marks = {"start": time.time() - 1}
    admin = site.session()
    src = write(tmp_path_factory.mktemp("src"), TRAIN)
    first = script_estimator(admin, src, instance_type="ml.m5.large")
    first.fit(job_name="cost-m5-first", wait=True, logs=False)
    marks["since"] = time.time()  # the first job started before this: a period from here leaves it out
    two_hosts = Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(src),
        role=ROLE,
        instance_type="ml.c5.xlarge",
        instance_count=2,
        sagemaker_session=admin,
    )
    two_hosts.fit(job_name="cost-c5-two-hosts", wait=True, logs=False)
    script_estimator(site.session(site.bob), src, instance_type="ml.m5.large").fit(
        job_name="cost-bob-m5", wait=True, logs=False
    )

    @remote(instance_type="ml.c5.xlarge", sagemaker_session=admin)
    def square(x: int) -> int:
        time.sleep(1.1)
        return x * x

    assert square(7) == 49  # an @remote function is a training job: it is counted like one
    marks["until"] = time.time() + 1
    return marks


def test_per_job_costs_add_up_to_the_totals_for_every_grouping(site: Site, ran: dict[str, float]) -> None:
    jobs = all_jobs(site)
    assert len(jobs) == 4
    for d in jobs:
        cost = d["Cost"]
        price = PRICES[d["ResourceConfig"]["InstanceType"]]
        assert cost["Currency"] == "USD" and cost["PricePerInstanceHour"] == price
        assert cost["InstanceCount"] == d["ResourceConfig"]["InstanceCount"]
        assert cost["BillableTimeInSeconds"] == d["BillableTimeInSeconds"] >= 1
        assert dec(cost["Amount"]) == expected_amount(price, cost["InstanceCount"], cost["BillableTimeInSeconds"])
    assert {d["ResourceConfig"]["InstanceCount"] for d in jobs} == {1, 2}

    period = {"since": str(ran["start"]), "until": str(ran["until"])}
    for by in ("user", "day", "instance-type"):
        report = costs(site, by=by, **period)
        assert report["By"] == by and report["Currency"] == "USD" and report["UnpricedInstanceTypes"] == []
        assert dec(report["Total"]) == sum(dec(d["Cost"]["Amount"]) for d in jobs) > 0
        assert dec(report["Total"]) == sum(dec(g["Amount"]) for g in report["Groups"])
        expected: dict[str, list[dict[str, Any]]] = {}
        for d in jobs:
            expected.setdefault(group_key(by, d), []).append(d)
        assert {g["Key"] for g in report["Groups"]} == set(expected)
        for g in report["Groups"]:
            members = expected[g["Key"]]
            assert dec(g["Amount"]) == sum(dec(d["Cost"]["Amount"]) for d in members), (by, g)
            assert g["TrainingJobs"] == len(members) and g["Endpoints"] == 0 and g["TransformJobs"] == 0
            seconds = sum(d["BillableTimeInSeconds"] * d["Cost"]["InstanceCount"] for d in members)
            assert g["InstanceSeconds"] == seconds
    by_user = {g["Key"]: g for g in costs(site, by="user", **period)["Groups"]}
    assert set(by_user) == {"admin", "bob"} and by_user["bob"]["TrainingJobs"] == 1

    # A period that starts after the first job's start leaves it out, whole.
    later = costs(site, by="instance-type", since=str(ran["since"]), until=period["until"])
    kept = [d for d in jobs if d["TrainingJobName"] != "cost-m5-first"]
    assert dec(later["Total"]) == sum(dec(d["Cost"]["Amount"]) for d in kept)
    first_cost = next(dec(d["Cost"]["Amount"]) for d in jobs if d["TrainingJobName"] == "cost-m5-first")
    assert dec(later["Total"]) == dec(costs(site, by="user", **period)["Total"]) - first_cost
    assert sum(g["TrainingJobs"] for g in later["Groups"]) == 3

    # bob sees his own costs only; the admin everyone's.
    mine = costs(site, site.bob, by="user", **period)
    bob_job = next(d for d in jobs if d["TrainingJobName"] == "cost-bob-m5")
    assert [g["Key"] for g in mine["Groups"]] == ["bob"]
    assert dec(mine["Total"]) == dec(bob_job["Cost"]["Amount"])


def test_the_cli_prints_the_same_totals(site: Site, ran: dict[str, float]) -> None:
    period = ["--since", str(ran["start"]), "--until", str(ran["until"])]
    out = site.cli("costs", "--by", "instance-type", *period, "--output", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    api = costs(site, by="instance-type", since=period[1], until=period[3])
    assert report["Total"] == api["Total"] and report["Groups"] == api["Groups"]
    text = site.cli("costs", "--by", "user", *period)
    assert text.returncode == 0, text.stderr
    assert f"Total: {api['Total']:.6f} USD" in text.stdout
    lines = {line.split()[0]: line.split() for line in text.stdout.splitlines() if line.startswith(("admin", "bob"))}
    by_user = {g["Key"]: g for g in costs(site, by="user", since=period[1], until=period[3])["Groups"]}
    for user, group in by_user.items():
        assert lines[user][1] == f"{group['Amount']:.6f}"
    bad = site.cli("costs", "--since", "last tuesday")
    assert bad.returncode == 2 and "since: 'last tuesday' is not a time" in bad.stderr


def test_bad_parameters_are_a_400_naming_them(site: Site) -> None:
    with site.client() as c:
        for params, field_name, says in [
            ({"by": "foo"}, "by", "'foo' is not one of user, day, instance-type"),
            ({"since": "yesterday"}, "since", "'yesterday' is not a time"),
            ({"until": "2026-02-30"}, "until", "is not a time"),
            ({"since": "2026-12-02", "until": "2026-12-01"}, "until", "must be later than since"),
        ]:
            r = c.get("/v1/costs", params=params)
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["details"]["field"] == field_name and says in err["message"], err
        prices = c.get("/v1/costs/prices").json()
        assert prices["Currency"] == "USD" and prices["Prices"]["ml.m5.large"] == 0.36
        assert prices["Prices"]["ml.m5.xlarge"] == 0.23  # a default the file does not replace


def test_an_endpoints_instance_time_is_counted_and_outlives_it(site: Site) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = INFERENCE.encode()
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    uri = "s3://trainforge-default/cost-echo/model.tar.gz"
    LocalObjectStore(site.srv.home / "storage").put_bytes(uri, buf.getvalue())
    since = str(time.time())
    container: dict[str, Any] = {"Image": "trainforge/python:current", "ModelDataUrl": uri}
    container["Environment"] = {"SAGEMAKER_PROGRAM": "inference.py"}
    variant = {"VariantName": "AllTraffic", "ModelName": "cost-echo", "InitialInstanceCount": 1}
    with site.client() as c:
        model = {"ModelName": "cost-echo", "PrimaryContainer": container, "ExecutionRoleArn": ROLE}
        assert c.post("/v1/models", json=model).status_code == 200
        config = {
            "EndpointConfigName": "cost-echo",
            "ProductionVariants": [{**variant, "InstanceType": "ml.t2.medium"}],
        }
        assert c.post("/v1/endpoint-configs", json=config).status_code == 200
        r = c.post("/v1/endpoints", json={"EndpointName": "cost-echo", "EndpointConfigName": "cost-echo"})
        assert r.status_code == 200, r.text

        def in_service() -> bool:
            status = c.get("/v1/endpoints/cost-echo").json()["EndpointStatus"]
            assert status != "Failed"
            return bool(status == "InService")

        wait_for(in_service, timeout=120, what="endpoint InService")

        def counted() -> dict[str, Any] | None:
            groups = {g["Key"]: g for g in costs(site, by="instance-type", since=since)["Groups"]}
            found = groups.get("ml.t2.medium")
            return found if found and found["InstanceSeconds"] > 0 else None

        running = wait_for(counted, timeout=30, what="the running endpoint in the totals")
        assert running["Endpoints"] == 1 and running["TrainingJobs"] == 0 and running["Amount"] > 0
        time.sleep(1.0)
        grown = counted()
        assert grown is not None and grown["InstanceSeconds"] > running["InstanceSeconds"]  # it accrues while up

        assert c.delete("/v1/endpoints/cost-echo").status_code == 200
        wait_for(lambda: c.get("/v1/endpoints/cost-echo").status_code == 404, timeout=60, what="endpoint deleted")
    report = costs(site, by="user", since=since)
    ended = {g["Key"]: g for g in costs(site, by="instance-type", since=since)["Groups"]}["ml.t2.medium"]
    assert ended["Endpoints"] == 1 and ended["InstanceSeconds"] >= grown["InstanceSeconds"]
    assert dec(ended["Amount"]) == dec(report["Total"]) > 0
    time.sleep(1.0)
    again = {g["Key"]: g for g in costs(site, by="instance-type", since=since)["Groups"]}["ml.t2.medium"]
    assert again == ended  # closed when its instances were gone: the deleted endpoint costs no more
    by_day = costs(site, by="day", since=since)
    assert dec(by_day["Total"]) == dec(report["Total"])
    assert costs(site, site.bob, by="user", since=since)["Groups"] == []  # the admin's endpoint, not bob's


# -- the console ----------------------------------------------------------------------------------------------------


@contextmanager
def signed_in(site: Site) -> Iterator[httpx.Client]:
    """An HTTP client holding the admin's console session (signed in with a one-time ticket)."""
    with site.client() as c:
        ticket = c.post("/v1/console/ticket").json()["Ticket"]
    with httpx.Client(base_url=site.srv.url, timeout=30) as browser:
        r = browser.get("/console/login", params={"ticket": ticket})
        assert r.status_code == 200, r.text
        yield browser


def test_the_console_shows_each_jobs_cost_and_the_same_totals(site: Site, ran: dict[str, float]) -> None:
    period = {"since": str(ran["start"]), "until": str(ran["until"])}
    api = costs(site, by="instance-type", **period)
    jobs = {d["TrainingJobName"]: d for d in all_jobs(site)}
    with signed_in(site) as browser:
        page = browser.get("/console/costs", params={"by": "instance-type", **period})
        assert page.status_code == 200
        total = re.search(r'id="cost-total">([^<]+)<', page.text)
        assert total is not None and total.group(1) == f"{api['Total']:.6f} USD"
        for g in api["Groups"]:
            row = re.search(rf'data-key="{re.escape(g["Key"])}">.*?class="nowrap amount">([^<]+)<', page.text, re.S)
            assert row is not None and row.group(1) == f"{g['Amount']:.6f} USD"
        assert 'id="nav-costs"' in page.text
        bad = browser.get("/console/costs", params={"since": "yesterday"})
        assert bad.status_code == 400 and "since: &#39;yesterday&#39; is not a time" in bad.text
        rows = browser.get("/console/api/jobs", params={"size": 100}).json()["rows"]
        assert {r["name"] for r in rows} == set(jobs)
        for r in rows:
            assert r["cost"] == f"{jobs[r['name']]['Cost']['Amount']:.6f} USD"
        job_page = browser.get("/console/jobs/cost-c5-two-hosts").text
        shown = re.search(r'id="job-cost">([^<]+)<', job_page)
        assert shown is not None and shown.group(1) == f"{jobs['cost-c5-two-hosts']['Cost']['Amount']:.6f} USD"


# -- a bad price file -----------------------------------------------------------------------------------------------


def test_a_bad_price_file_stops_the_server_naming_the_file_and_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"ml.m5.large": 0.1, "ml.m5.lage": 0.2}))
    env = ServerProcess(tmp_path / "home", extra_env={"TRAINFORGE_PRICES_FILE": str(bad)}).env
    proc = subprocess.run(
        [sys.executable, "-m", "trainforge.server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert f"TRAINFORGE_PRICES_FILE: {bad}: entry 'ml.m5.lage': unknown instance type; did you mean" in proc.stderr
    assert "Traceback" not in proc.stderr
