"""Models, endpoint configs and endpoints through the REST API of one real server, with real serving processes.

One server for the module. The admin (the home token) owns the models and endpoints; bob (made with the CLI) is
another user. The lifecycle tests share one endpoint and run in order: InService -> invocations and model errors
-> a server restart keeps it serving -> a killed instance is relaunched -> delete leaves nothing running.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.storage import LocalObjectStore

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
IMAGE = "trainforge/python:current"
WHO = textwrap.dedent(
    """
    import json
    import uuid

    def model_fn(model_dir):
        return uuid.uuid4().hex  # one per model server (pids look alike in sandboxes)

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return {"server": model, "echo": data}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
INFERENCE = textwrap.dedent(
    """
    import json

    def model_fn(model_dir):
        with open(f"{model_dir}/weights.json") as f:
            return json.load(f)

    def input_fn(body, content_type):
        return json.loads(body)

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"

    def predict_fn(data, model):
        if data == "boom":
            raise ValueError("the model cannot handle boom")
        return [x * model["scale"] for x in data]
    """
)


@dataclass
class Api:
    """The module's server and its users' tokens."""

    srv: ServerProcess
    admin: str
    bob: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.srv.url, headers={"Authorization": f"Bearer {token or self.admin}"}, timeout=30
        )

    def put_model(self, key: str, files: dict[str, str]) -> str:
        """Write a model.tar.gz holding ``files`` to the server's object store; its s3:// URI."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        uri = f"s3://trainforge-default/{key}/model.tar.gz"
        LocalObjectStore(self.srv.home / "storage").put_bytes(uri, buf.getvalue())
        return uri


def model_body(name: str, uri: str, **fields: Any) -> dict[str, Any]:
    return {
        "ModelName": name,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": uri, "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}},
        "ExecutionRoleArn": ROLE,
        **fields,
    }


def config_body(name: str, model: str, **variant: Any) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
                **variant,
            }
        ],
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("endpoints") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "3", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as srv:
        cli_env = {**srv.env, "TRAINFORGE_ENDPOINT": srv.url, "TRAINFORGE_TOKEN": srv.token}
        out = subprocess.run(
            [sys.executable, "-m", "trainforge.cli", "users", "create", "bob", "--output", "json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "trainforge.cli", "roles", "grant", "TrainforgeExecutionRole", "bob"],
            env=cli_env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        yield Api(srv, srv.token, json.loads(out.stdout)["Token"])


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    err: dict[str, Any] = response.json()["error"]
    return err


def serving_processes(api: Api, name: str) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process of an instance of endpoint ``name`` (supervisors, model servers,
    sandboxes): those whose command line or working directory is under its job roots."""
    marker = str(api.srv.home / "jobs" / f"endpoint.{name}")
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if marker in cmdline or marker in (proc.info.get("cwd") or ""):
            found.append((int(proc.info["pid"]), cmdline))
    return found


def describe(api: Api, name: str) -> dict[str, Any]:
    with api.client() as c:
        r = c.get(f"/v1/endpoints/{name}")
        assert r.status_code == 200, r.text
        value: dict[str, Any] = r.json()
        return value


def wait_status(api: Api, name: str, status: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        d = describe(api, name)
        assert d["EndpointStatus"] not in ({"Failed"} - {status}), d
        return d if d["EndpointStatus"] == status else None

    return wait_for(check, timeout=timeout, what=f"endpoint {name} {status}")


def invoke(api: Api, name: str, payload: Any, token: str | None = None) -> httpx.Response:
    with api.client(token) as c:
        return c.post(
            f"/v1/endpoints/{name}/invocations",
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )


# -- validation -------------------------------------------------------------------------------------------------


def test_bad_requests_name_the_field_and_nothing_is_stored(api: Api) -> None:
    uri = api.put_model("valid", {"weights.json": "{}"})
    with api.client() as c:
        cases = [
            ("/v1/models", model_body("bad_name", uri), "ModelName"),
            (
                "/v1/models",
                model_body("m-image", uri) | {"PrimaryContainer": {"Image": "nope:1", "ModelDataUrl": uri}},
                "PrimaryContainer.Image",
            ),
            ("/v1/models", model_body("m-url", "/tmp/model.tar.gz"), "PrimaryContainer.ModelDataUrl"),
            ("/v1/models", model_body("m-role", uri, ExecutionRoleArn="not-a-role"), "ExecutionRoleArn"),
            ("/v1/endpoint-configs", config_body("c-model", "no-such-model"), "ProductionVariants[0].ModelName"),
        ]
        for path, body, field in cases:
            err = error(c.post(path, json=body), 400)
            assert err["details"]["field"] == field and err["message"].startswith(field), err
        assert c.post("/v1/models", json=model_body("m-ok", uri)).status_code == 200
        err = error(c.post("/v1/endpoint-configs", json=config_body("c-type", "m-ok", InstanceType="ml.x9.huge")), 400)
        assert err["details"]["field"] == "ProductionVariants[0].InstanceType" and "ml.x9.huge" in err["message"]
        two = config_body("c-two", "m-ok")
        two["ProductionVariants"].append({**two["ProductionVariants"][0], "VariantName": "Other"})
        err = error(c.post("/v1/endpoint-configs", json=two), 400)
        assert err["details"]["field"] == "ProductionVariants" and "exactly one" in err["message"]
        err = error(c.post("/v1/endpoint-configs", json=config_body("c-zero", "m-ok", InitialInstanceCount=0)), 400)
        assert err["details"]["field"] == "ProductionVariants[0].InitialInstanceCount"
        err = error(c.post("/v1/endpoints", json={"EndpointName": "e-none", "EndpointConfigName": "nope"}), 400)
        assert err["details"]["field"] == "EndpointConfigName"
        err = error(c.post("/v1/endpoints", json={"EndpointName": "e_bad", "EndpointConfigName": "nope"}), 400)
        assert err["details"]["field"] == "EndpointName"
        # Duplicates are conflicts.
        assert error(c.post("/v1/models", json=model_body("m-ok", uri)), 409)["code"] == "ResourceInUse"
        assert c.post("/v1/endpoint-configs", json=config_body("c-ok", "m-ok")).status_code == 200
        assert error(c.post("/v1/endpoint-configs", json=config_body("c-ok", "m-ok")), 409)
        # Unknown endpoints answer with SageMaker's words, on every route.
        for method, path in (
            ("GET", "/v1/endpoints/nope"),
            ("DELETE", "/v1/endpoints/nope"),
            ("POST", "/v1/endpoints/nope/invocations"),
            ("GET", "/v1/endpoints/nope/metrics"),
        ):
            err = error(c.request(method, path, content=b"{}"), 404)
            assert err["message"] == 'Could not find endpoint "nope".', (method, path, err)
        models = [m["ModelName"] for m in c.get("/v1/models").json()["Models"]]
        assert "m-ok" in models and not {"bad_name", "m-image", "m-url", "m-role"} & set(models)
        described = c.get("/v1/models/m-ok").json()
        assert described["PrimaryContainer"]["ModelDataUrl"] == uri and described["ExecutionRoleArn"] == ROLE
        assert c.get("/v1/endpoint-configs/c-ok").json()["ProductionVariants"][0]["InstanceType"] == "ml.t2.medium"


def test_another_users_models_and_endpoints_read_as_unknown(api: Api) -> None:
    uri = api.put_model("owned", {"weights.json": "{}"})
    with api.client() as admin, api.client(api.bob) as bob:
        assert admin.post("/v1/models", json=model_body("admins-model", uri)).status_code == 200
        assert admin.post("/v1/endpoint-configs", json=config_body("admins-config", "admins-model")).status_code == 200
        assert bob.get("/v1/models").json()["Models"] == []
        assert error(bob.get("/v1/models/admins-model"), 404)["message"] == 'Could not find model "admins-model".'
        err = error(bob.post("/v1/endpoint-configs", json=config_body("bobs-config", "admins-model")), 400)
        assert err["details"]["field"] == "ProductionVariants[0].ModelName"
        body = {"EndpointName": "bobs-endpoint", "EndpointConfigName": "admins-config"}
        assert error(bob.post("/v1/endpoints", json=body), 400)["details"]["field"] == "EndpointConfigName"
        assert bob.post("/v1/models", json=model_body("bobs-model", uri)).status_code == 200
        assert [m["ModelName"] for m in bob.get("/v1/models").json()["Models"]] == ["bobs-model"]
        assert "bobs-model" in {m["ModelName"] for m in admin.get("/v1/models").json()["Models"]}


# -- lifecycle with real serving processes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(api: Api) -> str:
    """An InService endpoint of the admin serving a plain-Python model (``code/inference.py``)."""
    uri = api.put_model("scaler", {"weights.json": json.dumps({"scale": 3}), "code/inference.py": INFERENCE})
    with api.client() as c:
        tags = [{"Key": "trainforge:training-job-name", "Value": "scaler-training"}]
        assert c.post("/v1/models", json=model_body("scaler", uri, Tags=tags)).status_code == 200
        assert c.get("/v1/models/scaler").json()["TrainingJobName"] == "scaler-training"
        assert c.post("/v1/endpoint-configs", json=config_body("scaler-config", "scaler")).status_code == 200
        r = c.post("/v1/endpoints", json={"EndpointName": "scaler", "EndpointConfigName": "scaler-config"})
        assert r.status_code == 200, r.text
        assert r.json()["EndpointArn"].endswith(":endpoint/scaler")
        assert describe(api, "scaler")["EndpointStatus"] in ("Creating", "InService")
    wait_status(api, "scaler", "InService")
    return "scaler"


def test_an_endpoint_serves_and_a_model_error_keeps_it_in_service(api: Api, endpoint: str) -> None:
    d = describe(api, endpoint)
    assert d["ModelName"] == "scaler" and d["EndpointConfigName"] == "scaler-config"
    assert d["TrainingJobName"] == "scaler-training"
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert [(i["Host"], i["Status"]) for i in d["Instances"]] == [("algo-1", "InService")]
    r = invoke(api, endpoint, [1, 2, 3])
    assert r.status_code == 200, r.text
    assert r.json() == [3, 6, 9]
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    err = error(invoke(api, endpoint, "boom"), 424)
    assert err["code"] == "ModelError" and err["details"]["OriginalStatusCode"] >= 400
    assert "the model cannot handle boom" in err["message"] and "from algo-1" in err["message"]
    assert f"trainforge endpoints logs {endpoint}" in err["message"]
    assert describe(api, endpoint)["EndpointStatus"] == "InService"
    # Another user cannot invoke it; a payload over 6 MB is refused before it reaches the model.
    assert error(invoke(api, endpoint, [1], token=api.bob), 404)["message"] == f'Could not find endpoint "{endpoint}".'
    with api.client() as c:
        big = c.post(f"/v1/endpoints/{endpoint}/invocations", content=b"1" * (6 * 1024 * 1024 + 1))
        err = error(big, 400)
        assert err["details"]["field"] == "Body" and "batch transform" in err["message"]
        metrics = c.get(f"/v1/endpoints/{endpoint}/metrics").json()
        assert metrics["totals"]["Invocations"] >= 2
        assert metrics["totals"]["Invocation4XXErrors"] + metrics["totals"]["Invocation5XXErrors"] >= 1
        assert metrics["totals"]["ModelLatency"] > 0
        names = {p["name"] for p in metrics["points"]}
        assert {"Invocations", "ModelLatency", "OverheadLatency"} <= names <= set(metrics["totals"])
        logs = wait_for(
            lambda: c.get(f"/v1/endpoints/{endpoint}/logs").json()["events"], timeout=30, what="endpoint log lines"
        )
        assert all(e["host"] == "algo-1" for e in logs)
        assert [e["EndpointName"] for e in c.get("/v1/endpoints").json()["Endpoints"]] == [endpoint]
        assert c.get("/v1/endpoints", params={"StatusEquals": "Creating"}).json()["Endpoints"] == []


def test_the_agent_routes_take_only_the_launchs_token(api: Api, endpoint: str) -> None:
    config = json.loads(next((api.srv.home / "jobs").glob(f"endpoint.{endpoint}*/algo-1/supervisor.json")).read_text())
    prefix = f"/v1/agent/endpoints/{endpoint}"
    with httpx.Client(base_url=api.srv.url, headers={"Authorization": f"Bearer {config['agent_token']}"}) as agent:
        reply = agent.post(f"{prefix}/heartbeat", json={"host": "algo-1"}).json()
        assert reply["EndpointStatus"] == "InService" and reply["stop_requested"] is False
        err = error(agent.post(f"{prefix}/status", json={"host": "algo-1", "status": "Dancing"}), 400)
        assert err["details"]["field"] == "status"
        err = error(agent.post(f"{prefix}/status", json={"host": "algo-1", "status": "InService"}), 400)
        assert err["details"]["field"] == "address"
        lines = [{"seq": 10**9, "timestamp": 1.0, "message": "from the test"}]
        assert agent.post(f"{prefix}/logs", json={"host": "algo-9", "lines": lines}).json() == {"accepted": 1}
        assert agent.post(f"{prefix}/logs", json={"host": "algo-9", "lines": lines}).json() == {"accepted": 0}
        assert agent.post("/v1/agent/endpoints/missing/heartbeat", json={}).status_code == 401
    with api.client() as user:  # a user's token is not an agent token
        assert user.post(f"{prefix}/heartbeat", json={"host": "algo-1"}).status_code == 401
        assert user.get(f"/v1/endpoints/{endpoint}/logs", params={"host": "algo-9"}).json()["events"][0]["message"] == (
            "from the test"
        )


def test_an_in_service_endpoint_keeps_serving_across_a_server_restart(api: Api, endpoint: str) -> None:
    before = describe(api, endpoint)["Instances"]
    api.srv.kill(signal.SIGKILL)
    assert invoke_directly(before[0]["Address"], [2]) == [6]  # the instance outlives the server
    api.srv.start()
    assert invoke(api, endpoint, [5]).json() == [15]
    after = describe(api, endpoint)
    assert after["EndpointStatus"] == "InService" and after["Instances"] == before  # no relaunch


def invoke_directly(address: str, payload: Any) -> Any:
    r = httpx.post(f"{address}/invocations", json=payload, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_killed_instance_is_relaunched(api: Api, endpoint: str) -> None:
    before = describe(api, endpoint)["Instances"][0]["Address"]
    supervisors = [pid for pid, cmd in serving_processes(api, endpoint) if "trainforge.runtime.supervisor" in cmd]
    assert len(supervisors) == 1, supervisors
    os.killpg(os.getpgid(supervisors[0]), signal.SIGKILL)

    def relaunched() -> bool:
        d = describe(api, endpoint)
        instances = d["Instances"]
        return d["EndpointStatus"] == "InService" and len(instances) == 1 and instances[0]["Address"] != before

    wait_for(relaunched, timeout=120, what="a relaunched instance in service")
    assert invoke(api, endpoint, [1]).json() == [3]


def test_an_update_switches_to_the_new_config_then_stops_the_old_instance(api: Api, endpoint: str) -> None:
    old = describe(api, endpoint)["Instances"][0]["Address"]
    uri = api.put_model("scaler-5", {"weights.json": json.dumps({"scale": 5}), "code/inference.py": INFERENCE})
    with api.client() as c:
        assert c.post("/v1/models", json=model_body("scaler-5", uri)).status_code == 200
        assert c.post("/v1/endpoint-configs", json=config_body("scaler-config-5", "scaler-5")).status_code == 200
        r = c.post(f"/v1/endpoints/{endpoint}/update", json={"EndpointConfigName": "scaler-config-5"})
        assert r.status_code == 200, r.text
        assert describe(api, endpoint)["EndpointStatus"] in ("Updating", "InService")
        again = c.post(f"/v1/endpoints/{endpoint}/update", json={"EndpointConfigName": "scaler-config-5"})
        assert again.status_code == 400 or describe(api, endpoint)["EndpointStatus"] == "InService"
    assert invoke(api, endpoint, [1]).json() in ([3], [5])  # the old instance serves until the new one is ready
    d = wait_status(api, endpoint, "InService")
    assert d["EndpointConfigName"] == "scaler-config-5" and d["ModelName"] == "scaler-5"
    assert invoke(api, endpoint, [1]).json() == [5]

    def old_gone() -> bool:
        try:
            httpx.get(f"{old}/ping", timeout=1)
        except httpx.HTTPError:
            return True
        return False

    wait_for(old_gone, timeout=60, what="the old instance stopped")

    def supervisors() -> int:
        return len([pid for pid, cmd in serving_processes(api, endpoint) if "supervisor.json" in cmd])

    wait_for(lambda: supervisors() == 1, timeout=60, what="the old instance's supervisor gone")


def test_delete_stops_every_instance_and_keeps_the_lines(api: Api, endpoint: str) -> None:
    assert serving_processes(api, endpoint)
    with api.client() as c:
        assert c.delete(f"/v1/endpoints/{endpoint}").status_code == 200
        wait_for(lambda: c.get(f"/v1/endpoints/{endpoint}").status_code == 404, timeout=60, what="endpoint deleted")
        err = error(invoke(api, endpoint, [1]), 404)
        assert err["message"] == f'Could not find endpoint "{endpoint}".'
        assert c.get(f"/v1/endpoints/{endpoint}/logs").json()["events"]  # lines outlive the endpoint
    wait_for(lambda: not serving_processes(api, endpoint), timeout=30, what="no process of the endpoint left")


def test_a_missing_model_archive_fails_the_endpoint_and_leaves_nothing_running(api: Api) -> None:
    uri = "s3://trainforge-default/missing/model.tar.gz"
    with api.client() as c:
        assert c.post("/v1/models", json=model_body("missing", uri)).status_code == 200
        assert c.post("/v1/endpoint-configs", json=config_body("missing-config", "missing")).status_code == 200
        body = {"EndpointName": "missing", "EndpointConfigName": "missing-config"}
        assert c.post("/v1/endpoints", json=body).status_code == 200
    failed = wait_status(api, "missing", "Failed")
    assert uri in failed["FailureReason"], failed
    wait_for(lambda: not serving_processes(api, "missing"), timeout=30, what="no process of the failed endpoint")
    err = error(invoke(api, "missing", [1]), 400)
    assert err["details"]["EndpointStatus"] == "Failed" and "FailureReason" in err["message"]


def test_two_instances_take_the_invocations_in_turn(api: Api) -> None:
    uri = api.put_model("who", {"code/inference.py": WHO})
    with api.client() as c:
        assert c.post("/v1/models", json=model_body("who", uri)).status_code == 200
        body = config_body("who-config", "who", InitialInstanceCount=2, InstanceType="ml.c5.large")
        assert c.post("/v1/endpoint-configs", json=body).status_code == 200
        assert (
            c.post("/v1/endpoints", json={"EndpointName": "who", "EndpointConfigName": "who-config"}).status_code == 200
        )
    d = wait_status(api, "who", "InService")
    assert sorted(i["Host"] for i in d["Instances"]) == ["algo-1", "algo-2"]
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    answers = [invoke(api, "who", i).json() for i in range(4)]
    assert [a["echo"] for a in answers] == [0, 1, 2, 3]
    assert len({a["server"] for a in answers}) == 2  # round robin over both instances
    with api.client() as c:
        assert c.delete("/v1/endpoints/who").status_code == 200
    wait_for(lambda: not serving_processes(api, "who"), timeout=60, what="no process of the endpoint left")


def test_the_lines_of_a_deleted_endpoint_stay_readable_by_its_owner_only(api: Api) -> None:
    with api.client(api.bob) as bob, api.client() as admin:
        uri = "s3://trainforge-default/bob-missing/model.tar.gz"
        assert bob.post("/v1/models", json=model_body("bobs-missing", uri)).status_code == 200
        assert bob.post("/v1/endpoint-configs", json=config_body("bobs-missing", "bobs-missing")).status_code == 200
        body = {"EndpointName": "bobs-missing", "EndpointConfigName": "bobs-missing"}
        assert bob.post("/v1/endpoints", json=body).status_code == 200
        wait_for(
            lambda: bob.get("/v1/endpoints/bobs-missing").json()["EndpointStatus"] == "Failed",
            timeout=120,
            what="bob's endpoint Failed",
        )
        assert bob.delete("/v1/endpoints/bobs-missing").status_code == 200
        wait_for(lambda: bob.get("/v1/endpoints/bobs-missing").status_code == 404, timeout=60, what="deleted")
        lines = bob.get("/v1/endpoints/bobs-missing/logs").json()["events"]
        assert lines and all(e["host"] == "algo-1" for e in lines), lines
        assert admin.get("/v1/endpoints/bobs-missing/logs").json()["events"] == lines
        # The admin's deleted endpoint (the lifecycle tests') is not bob's to read.
        assert admin.get("/v1/endpoints/scaler/logs").json()["events"]
        err = error(bob.get("/v1/endpoints/scaler/logs"), 404)
        assert err["message"] == 'Could not find endpoint "scaler".'
    events = {(e.get("UserName"), e["Action"], e["Target"]) for e in audit_events(api)}
    assert {("bob", "CreateEndpoint", "bobs-missing"), ("bob", "DeleteEndpoint", "bobs-missing")} <= events
    assert ("admin", "CreateModel", "scaler") in events


def audit_events(api: Api) -> list[dict[str, Any]]:
    env = {**api.srv.env, "TRAINFORGE_ENDPOINT": api.srv.url, "TRAINFORGE_TOKEN": api.admin}
    out = subprocess.run(
        [sys.executable, "-m", "trainforge.cli", "audit", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events: list[dict[str, Any]] = json.loads(out.stdout)["Events"]
    return events


def test_an_endpoint_deleted_while_creating_leaves_nothing_running(api: Api) -> None:
    uri = api.put_model("hasty", {"weights.json": json.dumps({"scale": 1}), "code/inference.py": INFERENCE})
    with api.client() as c:
        assert c.post("/v1/models", json=model_body("hasty", uri)).status_code == 200
        assert c.post("/v1/endpoint-configs", json=config_body("hasty", "hasty")).status_code == 200
        assert c.post("/v1/endpoints", json={"EndpointName": "hasty", "EndpointConfigName": "hasty"}).status_code == 200
        assert c.delete("/v1/endpoints/hasty").status_code == 200
        assert c.get("/v1/endpoints/hasty").json().get("EndpointStatus", "Deleting") == "Deleting"
        assert c.delete("/v1/endpoints/hasty").status_code in (200, 404)  # again: a no-op (or already gone)
        wait_for(lambda: c.get("/v1/endpoints/hasty").status_code == 404, timeout=60, what="endpoint deleted")
    wait_for(lambda: not serving_processes(api, "hasty"), timeout=30, what="no process of the endpoint left")
