"""One contract suite for the model, endpoint-config and endpoint stores, run against SQLite and PostgreSQL; and
the check that the migrations create exactly the inference tables ``store/tables.py`` declares."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, inspect

from trainforge.errors import ConflictError, NotFoundError
from trainforge.service.invocations import InvocationMetrics, metric_totals
from trainforge.spec.endpoints import EndpointStatus as E
from trainforge.spec.endpoints import InstanceStatus as I
from trainforge.store import NewJob, open_job_store
from trainforge.store.inference import EndpointConfigStore, EndpointStore, ModelStore
from trainforge.store.inference_logs import InferenceLogStore, endpoint_log_owner
from trainforge.store.tables import metadata

INFERENCE_TABLES = (
    "models",
    "endpoint_configs",
    "endpoints",
    "endpoint_instances",
    "transform_jobs",
    "inference_log_lines",
    "endpoint_metric_points",
)


def new_endpoint(store: EndpointStore, name: str, now: float = 1000.0) -> int:
    spec = {"EndpointConfig": {"EndpointConfigName": "c", "ProductionVariants": []}, "Models": {}}
    record = store.create(
        name=name,
        arn=f"arn:{name}",
        config_name="c",
        spec=spec,
        created_by="alice",
        role_json=None,
        log_owner=endpoint_log_owner(name, now),
        now=now,
    )
    assert record.status == E.CREATING and record.attempt == 0 and record.handle == {}
    return record.id


def test_migrations_create_the_inference_tables_as_declared(engine: Engine) -> None:
    found = inspect(engine)
    for name in INFERENCE_TABLES:
        declared = metadata.tables[name]
        columns = {c["name"]: c for c in found.get_columns(name)}
        assert set(columns) == {c.name for c in declared.columns}, name
        for column in declared.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)
            migrated = columns[column.name]["type"].python_type
            assert migrated == column.type.python_type, (name, column.name, migrated)
        primary = found.get_pk_constraint(name)["constrained_columns"]
        assert set(primary) == {c.name for c in declared.primary_key.columns}, name
        indexes = {i["name"] for i in found.get_indexes(name)}
        assert {i.name for i in declared.indexes} <= indexes, name


def test_models_and_configs_are_unique_by_name_and_listed_newest_first(engine: Engine) -> None:
    models = ModelStore(engine)
    made = models.create(
        name="m1",
        arn="arn:m1",
        spec={"ModelName": "m1", "PrimaryContainer": {"Image": "i", "ModelDataUrl": "s3://b/k"}},
        training_job_name=None,
        created_by="alice",
        role_json='{"name": "r"}',
        now=1.0,
    )
    assert made.spec["PrimaryContainer"]["Image"] == "i" and made.role_json == '{"name": "r"}'
    models.create(name="m2", arn="arn:m2", spec={}, training_job_name="j", created_by="bob", role_json=None, now=2.0)
    with pytest.raises(ConflictError, match="already existing model"):
        models.create(name="m1", arn="arn:m1", spec={}, training_job_name=None, created_by="bob", role_json=None)
    assert [m.name for m in models.list_models()] == ["m2", "m1"]
    assert [m.name for m in models.list_models(created_by="alice")] == ["m1"]
    assert [m.name for m in models.list_models(name_contains="M2")] == ["m2"]
    models.delete("m1")
    with pytest.raises(NotFoundError, match='Could not find model "m1"'):
        models.get("m1")
    with pytest.raises(NotFoundError):
        models.delete("m1")
    configs = EndpointConfigStore(engine)
    configs.create(name="c1", arn="arn:c1", spec={"ProductionVariants": [{"ModelName": "m2"}]}, created_by="bob")
    with pytest.raises(ConflictError):
        configs.create(name="c1", arn="arn:c1", spec={}, created_by="bob")
    assert configs.get("c1").spec["ProductionVariants"][0]["ModelName"] == "m2"
    configs.delete("c1")
    assert configs.find("c1") is None


def test_the_training_job_of_a_model_is_found_by_its_artifacts(engine: Engine) -> None:
    jobs = open_job_store(str(engine.url.render_as_string(hide_password=False)))
    jobs.create(NewJob("job-a", "arn", "{}", "ml.m5.large", 1, "s3://b/job-a/output/model.tar.gz", created_by="alice"))
    models = ModelStore(engine)
    assert models.training_job_with_artifacts("s3://b/job-a/output/model.tar.gz") == ("job-a", "alice")
    assert models.training_job_with_artifacts("s3://b/other/model.tar.gz") is None


def test_endpoint_status_changes_are_compare_and_set(engine: Engine) -> None:
    store = EndpointStore(engine)
    new_endpoint(store, "ep")
    with pytest.raises(ConflictError, match="already existing endpoint"):
        new_endpoint(store, "ep")
    with pytest.raises(ConflictError, match="cannot move to Updating"):
        store.transition("ep", E.UPDATING)
    with pytest.raises(NotFoundError, match='Could not find endpoint "nope"'):
        store.transition("nope", E.DELETING)
    with pytest.raises(ConflictError):
        store.transition("ep", E.IN_SERVICE, conditions={"attempt": 1})  # not launched yet
    assert store.claim_attempt("ep", attempt=0, token_hash="h1", handle={"launches": {"1": {}}}, backend="local") == 1
    with pytest.raises(ConflictError):
        store.claim_attempt("ep", attempt=0, token_hash="h2", handle={}, backend="local")  # someone else's launch
    record = store.transition("ep", E.IN_SERVICE, conditions={"attempt": 1})
    assert (
        record.status == E.IN_SERVICE and record.agent_token_hash == "h1" and record.handle == {"launches": {"1": {}}}
    )
    store.transition("ep", E.FAILED, failure_reason="x" * 2000)
    assert len(store.get("ep").failure_reason or "") == 1024
    with pytest.raises(ConflictError):
        store.claim_attempt("ep", attempt=1, token_hash="h3", handle={}, backend="local")  # a Failed one stays down
    assert not store.delete("ep")  # only a Deleting endpoint is removed
    store.transition("ep", E.DELETING)
    assert store.delete("ep") and store.find("ep") is None


def test_only_one_of_concurrent_status_changes_wins(engine: Engine) -> None:
    store = EndpointStore(engine)
    new_endpoint(store, "race")
    store.claim_attempt("race", attempt=0, token_hash="h", handle={}, backend="local")
    store.transition("race", E.IN_SERVICE)
    wins: list[int] = []
    losses: list[int] = []

    def update(i: int) -> None:
        try:
            store.transition("race", E.UPDATING, expected_from={E.IN_SERVICE}, set_fields={"config_name": f"c{i}"})
            wins.append(i)
        except ConflictError:
            losses.append(i)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert store.get("race").config_name == f"c{wins[0]}"


def test_instances_keep_a_final_status_and_go_with_the_endpoint_while_lines_and_points_stay(engine: Engine) -> None:
    store = EndpointStore(engine)
    endpoint_id = new_endpoint(store, "ep")
    store.record_instance(endpoint_id, 1, "algo-1", I.PENDING, now=5.0)
    up = store.record_instance(endpoint_id, 1, "algo-1", I.IN_SERVICE, address="http://127.0.0.1:9", now=6.0)
    assert (up.status, up.address, up.heartbeat_time) == ("InService", "http://127.0.0.1:9", 6.0)
    store.heartbeat(endpoint_id, 1, "algo-1", now=7.0)
    store.record_instance(endpoint_id, 1, "algo-2", I.FAILED, failure_reason="ClientError: no model", now=8.0)
    again = store.record_instance(endpoint_id, 1, "algo-2", I.IN_SERVICE, address="http://x:1")
    assert again.status == "Failed" and again.failure_reason == "ClientError: no model"  # a final status stays
    store.record_instance(endpoint_id, 2, "algo-1", I.PENDING)
    assert [(i.attempt, i.host, i.heartbeat_time) for i in store.instances(endpoint_id, 1)] == [
        (1, "algo-1", 7.0),
        (1, "algo-2", 8.0),
    ]
    store.forget_instances(endpoint_id, 1)
    assert [(i.attempt, i.host) for i in store.instances(endpoint_id)] == [(2, "algo-1")]
    owner = store.get("ep").log_owner
    InferenceLogStore(engine).append(owner, 2, "algo-1", [{"seq": 0, "timestamp": 1.0, "message": "hi"}])
    store.replace_points(owner, 60.0, {"Invocations": 2.0, "ModelLatency": 100.0})
    store.replace_points(owner, 60.0, {"Invocations": 3.0, "ModelLatency": 90.0})  # the minute's new totals
    store.replace_points(owner, 120.0, {"Invocations": 1.0})
    assert store.points_at(owner, 60.0) == {"Invocations": 3.0, "ModelLatency": 90.0}
    store.transition("ep", E.DELETING)
    assert store.delete("ep")
    assert store.instances(endpoint_id) == []
    assert [p.value for p in store.read_points(owner) if p.name == "Invocations"] == [3.0, 1.0]
    assert store.owners_with_points("endpoint/ep/") == [owner]
    assert [r.message for r in InferenceLogStore(engine).read("endpoint/ep/", prefix=True)] == ["hi"]


def test_invocation_metrics_add_up_per_minute_across_server_processes(engine: Engine) -> None:
    store = EndpointStore(engine)
    owner = endpoint_log_owner("ep", 1.0)
    first = InvocationMetrics(store)
    for status, model_us in ((200, 100.0), (200, 300.0), (424, 200.0)):
        first.record(owner, status=status, model_us=model_us, overhead_us=10.0)
    first.flush()
    first.record(owner, status=None, model_us=None, overhead_us=40.0)  # no instance answered
    first.flush()
    # A restarted server counts on in the same minute: its flush adds to what the first one stored.
    second = InvocationMetrics(store)
    second.record(owner, status=500, model_us=400.0, overhead_us=10.0)
    second.flush()
    totals = metric_totals(store.read_points(owner))
    assert totals["Invocations"] == 5.0
    assert (totals["Invocation4XXErrors"], totals["Invocation5XXErrors"]) == (1.0, 2.0)
    assert totals["ModelLatency"] == pytest.approx(250.0)  # (100 + 300 + 200 + 400) / 4 answered
    assert totals["OverheadLatency"] == pytest.approx(16.0)
    assert len([p for p in store.read_points(owner) if p.name == "Invocations"]) == 1  # one point per minute
