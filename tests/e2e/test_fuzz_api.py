"""Schemathesis over the real server's OpenAPI schema: every ``/v1`` route, as the admin, as a plain user and (the
agent routes) with a real job's agent token.

The server is a real subprocess (``ServerProcess``) whose ``GET /openapi.json`` is the schema under test. Each
operation gets the explicit examples, the coverage phase (boundary and schema-violating values, undeclared
methods) and a seeded, derandomized fuzzing phase of ``MAX_EXAMPLES`` cases. A case fails on a 5xx
(``not_a_server_error``), a status code the schema does not list, a body or content type that breaks the declared
response schema, a request that breaks the schema yet is accepted (``negative_data_rejection``), a route that
answers without a token (``ignored_auth``), or a 405 without ``Allow``.

Left out, on purpose: ``positive_data_acceptance`` (the schema cannot carry every rule the server checks in code,
e.g. a job name that no job has, a NextToken the server never issued, ``end_time`` before ``start_time``; such
requests are rightly answered 400) and the stateful phase (the schema declares no links between operations).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import BaseSchema
from schemathesis.engine import events

from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.service.agent import hash_token
from trainforge.store import open_job_store

MAX_EXAMPLES = 25
SEED = 20240610
AGENT_JOB = "fuzz-agent-job"
AGENT_TOKEN = "fuzz-agent-token-0123456789"
EXCLUDED_CHECKS = ["positive_data_acceptance"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    srv = ServerProcess(home, extra_env={"TRAINFORGE_STOP_GRACE_SECONDS": "1"}).start()
    yield srv
    srv.stop()
    kill_supervisors(home)


@pytest.fixture(scope="module")
def user_token(server: ServerProcess) -> str:
    """A plain (non-admin) user's token."""
    with server.client() as client:
        reply = client.post("/v1/users", json={"UserName": "fuzzer", "Admin": False})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["Token"])


def _spec(name: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/fuzz"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


@pytest.fixture(scope="module")
def agent_job(server: ServerProcess) -> str:
    """A real job, ended, whose agent token is then set to ``AGENT_TOKEN`` in the server's database (the token the
    scheduler handed its supervisor is never readable: only its hash is stored)."""
    with server.client() as client:
        reply = client.post("/v1/training-jobs", json=_spec(AGENT_JOB))
        assert reply.status_code == 200, reply.text
        client.post(f"/v1/training-jobs/{AGENT_JOB}/stop")

        def ended() -> bool:
            return client.get(f"/v1/training-jobs/{AGENT_JOB}").json()["TrainingJobStatus"] != "InProgress"

        wait_for(ended, timeout=60, what="the agent job to end")
    store = open_job_store(f"sqlite:///{server.home / 'trainforge.db'}")
    store.set_fields(AGENT_JOB, agent_token_hash=hash_token(AGENT_TOKEN))
    return AGENT_JOB


def _schema(server: ServerProcess, token: str, *, agent_only: bool = False) -> BaseSchema:
    """The server's schema, loaded from ``/openapi.json``, configured to send ``token`` (and, for the agent routes,
    the agent job's name as ``{name}``)."""
    settings: dict[str, Any] = {
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {name: {"enabled": False} for name in EXCLUDED_CHECKS},
        "phases": {"stateful": {"enabled": False}},
        "request-timeout": 30,
    }
    if agent_only:
        settings["parameters"] = {"path.name": AGENT_JOB}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=schemathesis.Config.from_dict(settings))
    # The job's token opens only its training-job routes (endpoint and transform agent routes answer it 401, as the
    # runs with user tokens cover).
    return schema.include(path_regex="^/v1/agent/training-jobs/") if agent_only else schema


@dataclass
class FuzzRun:
    """What one schemathesis run did: the operations it tested, how many requests it sent, what it found."""

    operations: set[str] = field(default_factory=set)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def report(self) -> str:
        return f"{len(self.operations)} operations, {self.requests} requests, statuses {sorted(self.statuses.items())}"


def fuzz(schema: BaseSchema) -> FuzzRun:
    """Run schemathesis's engine (examples, coverage and fuzzing phases) over ``schema``; collect every failed
    check and every error."""
    run = FuzzRun()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            run.operations.add(event.recorder.label)
            for interaction in event.recorder.interactions.values():
                run.requests += 1
                if interaction.response is not None:
                    code = interaction.response.status_code
                    run.statuses[code] = run.statuses.get(code, 0) + 1
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        run.problems.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}\n{failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            run.problems.append(f"{event.label}: error: {event.value!r}")
        elif isinstance(event, events.FatalError):
            run.problems.append(f"fatal: {event.exception!r}")
    return run


def test_schema_documents_errors_and_auth(server: ServerProcess) -> None:
    """Every ``/v1`` operation lists the error replies the server really sends (400, not FastAPI's 422) and needs
    a bearer token; the schema walks all routes the fuzz tests below cover."""
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    operations = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]
    assert len(operations) >= 25
    for path, op in operations:
        if path.startswith("/v1/"):
            assert {"400", "401", "403", "404"} <= set(op["responses"]), path
            assert "422" not in op["responses"], path
            assert op["security"] == [{"bearer": []}], path
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_api_as_admin(server: ServerProcess) -> None:
    """As the admin, every operation: no 5xx, nothing that breaks the schema."""
    run = fuzz(_schema(server, server.token))
    print("admin:", run.report())
    assert len(run.operations) >= 25
    assert not run.problems, "\n\n".join(run.problems[:10])


def test_api_as_user(server: ServerProcess, user_token: str) -> None:
    """As a plain user (admin routes answer 403, other users' jobs 404): no 5xx, nothing that breaks the schema."""
    run = fuzz(_schema(server, user_token))
    print("user:", run.report())
    assert run.statuses.get(403, 0) > 0
    assert not run.problems, "\n\n".join(run.problems[:10])


def test_agent_api_with_a_job_token(server: ServerProcess, agent_job: str) -> None:
    """The supervisors' routes with a real job's agent token and name, so requests get past the token check into
    the handlers (any other name answers 401, covered by the runs above)."""
    run = fuzz(_schema(server, AGENT_TOKEN, agent_only=True))
    print("agent:", run.report())
    assert len(run.operations) == 7  # status, logs, metrics, heartbeat, data key, environment lock get/put
    assert run.statuses.get(200, 0) > 0  # past the token check: heartbeats, logs and metrics stored
    assert not run.problems, "\n\n".join(run.problems[:10])


def test_server_still_serves_and_jobs_are_sane(server: ServerProcess, agent_job: str) -> None:
    """After the fuzzing the server answers, and the job the agent routes were fuzzed against is still terminal."""
    with server.client() as client:
        reply = client.get(f"/v1/training-jobs/{agent_job}")
        assert reply.status_code == 200
        assert reply.json()["TrainingJobStatus"] in {"Stopped", "Failed", "Completed"}
        assert client.get("/health").status_code == 200
