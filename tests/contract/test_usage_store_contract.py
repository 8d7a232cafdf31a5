"""The usage store and the cost report over it, run against SQLite and PostgreSQL.

Jobs are made and moved with the real stores (so their start and end times are the stores' own); endpoint launches
are recorded as the endpoint reconciler records them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, inspect

from trainforge.errors import ValidationError
from trainforge.service.costs import CostService, charge, job_cost, parse_prices
from trainforge.service.principal import Principal
from trainforge.spec.status import SecondaryStatus as S
from trainforge.spec.transforms import InstanceStatus, TransformJobStatus
from trainforge.store import JobStore, NewJob
from trainforge.store.inference import EndpointRecord, EndpointStore
from trainforge.store.tables import usage_intervals
from trainforge.store.transforms import NewTransformJob, TransformJobStore
from trainforge.store.usage import UsageStore

DAY1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
DAY2 = DAY1 + 86400
ADMIN = Principal("admin", admin=True)
PRICES = parse_prices({"ml.m5.large": 0.36, "ml.c5.xlarge": 0.72, "ml.t2.medium": 3.6}, source="test")


def run_job(jobs: JobStore, name: str, owner: str | None, kind: str, count: int, start: float, seconds: float) -> None:
    """A training job that trains from ``start`` for ``seconds`` and completes."""
    spec = {"TrainingJobName": name, "ResourceConfig": {"InstanceType": kind, "InstanceCount": count}}
    jobs.create(
        NewJob(
            name=name,
            arn=f"arn:{name}",
            spec_json=json.dumps(spec),
            instance_type=kind,
            instance_count=count,
            model_artifacts=f"s3://b/{name}/output/model.tar.gz",
            created_by=owner,
        ),
        now=start - 5,
    )
    jobs.transition(name, S.DOWNLOADING, now=start)
    jobs.transition(name, S.TRAINING, now=start + 1)
    jobs.transition(name, S.UPLOADING, now=start + seconds - 1)
    jobs.transition(name, S.COMPLETED, now=start + seconds)


def endpoint(engine: Engine, name: str, owner: str, created: float) -> EndpointRecord:
    spec = {"EndpointConfig": {"EndpointConfigName": "c", "ProductionVariants": []}, "Models": {}}
    return EndpointStore(engine).create(
        name=name,
        arn=f"arn:{name}",
        config_name="c",
        spec=spec,
        created_by=owner,
        role_json=None,
        log_owner=f"endpoint/{name}/{int(created * 1000)}",
        now=created,
    )


def test_the_migration_makes_the_table_the_store_uses(engine: Engine) -> None:
    columns = {c["name"] for c in inspect(engine).get_columns("usage_intervals")}
    assert columns == {c.name for c in usage_intervals.columns}


def test_an_endpoint_launch_is_opened_once_and_closed_once(engine: Engine) -> None:
    usage = UsageStore(engine)
    ep = endpoint(engine, "ep", "alice", DAY1)
    launch = {"instance_type": "ml.t2.medium", "count": 2, "started": DAY1 + 10}
    usage.endpoint_launch(ep, 1, launch)
    usage.endpoint_launch(ep, 1, {**launch, "started": DAY1 + 99})  # a repeated pass: nothing changes
    (open_,) = usage.endpoint_usage(since=None, until=None, owner=None)
    assert (open_.name, open_.owner, open_.instance_count, open_.start, open_.end) == (
        "ep",
        "alice",
        2,
        DAY1 + 10,
        None,
    )
    usage.endpoint_launch(ep, 1, launch, ended=DAY1 + 70)
    usage.endpoint_launch(ep, 1, launch, ended=DAY1 + 500)  # closed once: the first close stands
    (closed,) = usage.endpoint_usage(since=None, until=None, owner=None)
    assert (closed.start, closed.end) == (DAY1 + 10, DAY1 + 70)
    # A launch never opened (the server died between the launch and its record) is recorded whole when it ends.
    usage.endpoint_launch(ep, 2, {**launch, "started": DAY1 + 80}, ended=DAY1 + 50)
    second = usage.endpoint_usage(since=None, until=None, owner=None)[1]
    assert (second.start, second.end) == (DAY1 + 80, DAY1 + 80)  # never before its start
    assert usage.endpoint_usage(since=None, until=None, owner="bob") == []
    assert usage.endpoint_usage(since=DAY1 + 70, until=None, owner=None) == [second]  # ended at since: outside
    assert usage.endpoint_usage(since=None, until=DAY1 + 10, owner=None) == []  # started at until: outside


def test_totals_add_up_to_the_per_job_costs_for_every_grouping(engine: Engine) -> None:
    jobs = JobStore(engine)
    run_job(jobs, "a", "alice", "ml.m5.large", 1, DAY1 + 100, 12.4)
    run_job(jobs, "b", "bob", "ml.c5.xlarge", 2, DAY1 + 3600, 61)
    run_job(jobs, "c", None, "ml.m5.large", 3, DAY2 + 60, 7)  # older than users: the admin's
    costs = CostService(usage=UsageStore(engine), prices=PRICES)
    per_job = {n: job_cost(jobs.get(n), PRICES) for n in ("a", "b", "c")}
    assert per_job["a"] == {
        "Currency": "USD",
        "PricePerInstanceHour": 0.36,
        "InstanceCount": 1,
        "BillableTimeInSeconds": 12,
        "Amount": 0.0012,
    }
    amounts = {n: Decimal(str(c["Amount"])) for n, c in per_job.items() if c}
    expected = {
        "user": {"alice": ["a"], "bob": ["b"], "admin": ["c"]},
        "day": {"2026-12-01": ["a", "b"], "2026-12-02": ["c"]},
        "instance-type": {"ml.m5.large": ["a", "c"], "ml.c5.xlarge": ["b"]},
    }
    for by, groups in expected.items():
        report = costs.report(ADMIN, by=by, now=DAY2 + 86400)
        assert Decimal(str(report["Total"])) == sum(amounts.values())
        got = {g["Key"]: g for g in report["Groups"]}
        assert set(got) == set(groups)
        for key, names in groups.items():
            assert Decimal(str(got[key]["Amount"])) == sum(amounts[n] for n in names), (by, key)
            assert got[key]["TrainingJobs"] == len(names)
    assert [g["Key"] for g in costs.report(ADMIN, by="day", now=DAY2 + 86400)["Groups"]] == ["2026-12-01", "2026-12-02"]
    assert [g["Key"] for g in costs.report(ADMIN, by="user", now=DAY2 + 86400)["Groups"]] == ["bob", "admin", "alice"]
    # A period: whole jobs by their training start, [since, until).
    only_b = costs.report(ADMIN, by="user", since=str(DAY1 + 101), until="2026-12-02", now=DAY2 + 86400)
    assert [g["Key"] for g in only_b["Groups"]] == ["bob"] and Decimal(str(only_b["Total"])) == amounts["b"]
    # A user sees their own costs only, whatever they ask.
    alice = costs.report(Principal("alice", admin=False), by="instance-type", now=DAY2 + 86400)
    assert [(g["Key"], g["Amount"]) for g in alice["Groups"]] == [("ml.m5.large", per_job["a"]["Amount"])]


def test_running_jobs_are_not_counted_and_unpriced_types_are_named(engine: Engine) -> None:
    jobs = JobStore(engine)
    run_job(jobs, "done", "alice", "ml.g5.xlarge", 1, DAY1, 100)
    jobs.create(
        NewJob(
            name="running",
            arn="arn:running",
            spec_json="{}",
            instance_type="ml.m5.large",
            instance_count=1,
            model_artifacts="s3://b/r",
        ),
        now=DAY1,
    )
    jobs.transition("running", S.DOWNLOADING, now=DAY1 + 1)
    eur = parse_prices({"currency": "EUR", "ml.m5.large": 0.1}, source="eur.json")
    report = CostService(usage=UsageStore(engine), prices=eur).report(ADMIN, by="instance-type", now=DAY1 + 500)
    assert report["Currency"] == "EUR" and report["UnpricedInstanceTypes"] == ["ml.g5.xlarge"]
    assert report["Groups"] == [
        {
            "Key": "ml.g5.xlarge",
            "Amount": 0.0,
            "TrainingJobs": 1,
            "TransformJobs": 0,
            "Endpoints": 0,
            "InstanceSeconds": 100,
        }
    ]
    assert job_cost(jobs.get("running"), eur) is None
    assert job_cost(jobs.get("done"), eur) is not None and job_cost(jobs.get("done"), eur)["Amount"] is None  # type: ignore[index]


def test_transform_jobs_and_endpoints_count_and_an_endpoint_is_cut_at_midnight(engine: Engine) -> None:
    transforms = TransformJobStore(engine)
    spec = {"TransformJobName": "t", "TransformResources": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2}}
    job = transforms.create(
        NewTransformJob(name="t", arn="arn:t", spec_json=json.dumps(spec), model_spec_json="{}", created_by="bob"),
        now=DAY1,
    )
    transforms.record_instance(job.id, 1, "algo-1", InstanceStatus.IN_PROGRESS, now=DAY1 + 10)
    transforms.transition("t", TransformJobStatus.COMPLETED, now=DAY1 + 40)
    usage = UsageStore(engine)
    ep = endpoint(engine, "ep", "alice", DAY1)
    # Up from 1 hour before midnight until 2 hours after it, then a second launch still up.
    usage.endpoint_launch(ep, 1, {"instance_type": "ml.t2.medium", "count": 1, "started": DAY2 - 3600})
    usage.endpoint_launch(ep, 1, {"instance_type": "ml.t2.medium", "count": 1}, ended=DAY2 + 7200)
    usage.endpoint_launch(ep, 2, {"instance_type": "ml.t2.medium", "count": 2, "started": DAY2 + 7200})
    costs = CostService(usage=usage, prices=PRICES)
    now = DAY2 + 7200 + 30
    by_day = {g["Key"]: g for g in costs.report(ADMIN, by="day", now=now)["Groups"]}
    assert by_day["2026-12-01"]["InstanceSeconds"] == 30 * 2 + 3600  # the transform (2 x 30 s) and 1 h of endpoint
    assert by_day["2026-12-01"]["TransformJobs"] == 1 and by_day["2026-12-01"]["Endpoints"] == 1
    assert by_day["2026-12-02"]["InstanceSeconds"] == 7200 + 30 * 2  # still running: counted until now
    assert Decimal(str(by_day["2026-12-02"]["Amount"])) == charge(3.6, 1, 7200) + charge(3.6, 2, 30)
    by_user = {g["Key"]: g for g in costs.report(ADMIN, by="user", now=now)["Groups"]}
    assert Decimal(str(by_user["bob"]["Amount"])) == charge(0.72, 2, 30)
    assert sum(Decimal(str(g["Amount"])) for g in by_user.values()) == sum(
        Decimal(str(g["Amount"])) for g in by_day.values()
    )
    # A period clips an endpoint's time: one hour from 30 minutes before midnight.
    clipped = costs.report(ADMIN, by="instance-type", since=str(DAY2 - 1800), until=str(DAY2 + 1800), now=now)
    assert clipped["Groups"][0]["Key"] == "ml.t2.medium" and clipped["Groups"][0]["InstanceSeconds"] == 3600
    with pytest.raises(ValidationError, match="by: 'week' is not one of user, day, instance-type"):
        costs.report(ADMIN, by="week")
