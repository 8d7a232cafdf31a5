"""What a job's code gets to reach the object store: STS-scoped credentials where the endpoint has STS, else none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.s3 import S3Server, free_port
from tests.support.wait import wait_for
from trainforge.runtime.launch import InstanceInfo, SupervisorConfig
from trainforge.runtime.objects import code_storage_environment, session_policy
from trainforge.storage.scoped import Grants

ROLE = {"name": "Team", "read": ["s3://data/in/"], "write": ["s3://data/out/"]}


def config(storage: dict[str, Any], role: dict[str, Any] | None, runtime: int = 3600) -> SupervisorConfig:
    return SupervisorConfig(
        job_name="job-1",
        host="algo-1",
        hosts=["algo-1"],
        spec={"StoppingCondition": {"MaxRuntimeInSeconds": runtime}},
        server_url="http://127.0.0.1:9",
        agent_token="t",
        storage=storage,
        instance=InstanceInfo(type="ml.m5.large", vcpus=2, memory_gib=8, effective_vcpus=2),
        python=sys.executable,
        role=role,
    )


def s3_storage(endpoint: str, key: str = "AKIDEXAMPLE", secret: str = "secret") -> dict[str, Any]:
    return {
        "kind": "s3",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "credentials": {"access_key_id": key, "secret_access_key": secret, "session_token": None},
    }


@pytest.fixture(scope="module")
def open_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server without IAM enforcement: its STS answers AssumeRole as an endpoint with STS does."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_local_store_gives_the_code_nothing() -> None:
    result = code_storage_environment(config({"kind": "local", "root": "/srv/objects"}, ROLE))
    assert result.env == {} and result.notice is None


def test_an_unrestricted_role_gets_the_stores_credentials() -> None:
    storage = s3_storage("http://127.0.0.1:9")
    full = {"name": "TrainforgeExecutionRole", "read": ["s3://"], "write": ["s3://"]}
    for role in (None, full):
        result = code_storage_environment(config(storage, role))
        assert result.env["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE" and result.notice is None


def test_a_restricted_role_gets_short_lived_scoped_credentials_where_sts_answers(open_moto: str) -> None:
    result = code_storage_environment(config(s3_storage(open_moto), ROLE, runtime=60))
    env = result.env
    assert env["AWS_ACCESS_KEY_ID"] not in ("", "AKIDEXAMPLE") and env["AWS_SESSION_TOKEN"]
    assert env["AWS_ENDPOINT_URL_S3"] == open_moto
    assert result.notice is not None and "short-lived (up to 900 s)" in result.notice and "'Team'" in result.notice


def test_a_restricted_role_gets_no_credentials_where_sts_refuses(s3_server: S3Server) -> None:
    # The test endpoint's user may use S3 only: AssumeRole is denied, as on an endpoint without STS.
    storage = s3_storage(s3_server.endpoint, s3_server.access_key_id, s3_server.secret_access_key)
    result = code_storage_environment(config(storage, ROLE))
    assert result.env["AWS_ACCESS_KEY_ID"] == "" and result.env["AWS_SECRET_ACCESS_KEY"] == ""
    assert result.env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert result.notice is not None and "none for the job's code" in result.notice


def test_the_session_policy_allows_exactly_the_roles_prefixes() -> None:
    policy = session_policy(Grants.from_role(ROLE))
    text = json.dumps(policy)
    gets = next(s for s in policy["Statement"] if s["Action"] == ["s3:GetObject"])
    puts = next(s for s in policy["Statement"] if "s3:PutObject" in s["Action"])
    assert gets["Resource"] == ["arn:aws:s3:::data/in/*", "arn:aws:s3:::data/out/*"]
    assert puts["Resource"] == ["arn:aws:s3:::data/out/*"]
    assert '"s3:prefix": ["in/*"]' in text and "Deny" not in text
