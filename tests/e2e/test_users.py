"""Users, tokens, ownership, secret masking and the audit log through the API and the CLI of one real server.

One server for the module: the admin (the home token) makes alice and bob with the CLI; each submits jobs with
their own token over HTTP, and each test checks one promise against those jobs.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import fresh_database
from tests.support.server import ServerProcess, kill_supervisors
from tests.support.wait import wait_for
from trainforge.errors import AuthError
from trainforge.service.principal import Principal
from trainforge.service.users import UserService, token_id_of
from trainforge.storage import LocalObjectStore
from trainforge.store import UserStore, make_engine, open_job_store

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
HF_TOKEN = "hf-very-secret-value"
DB_PASSWORD = "pw-123-secret"
QUICK = f"""import os
print("token ok" if os.environ.get("HF_TOKEN") == {HF_TOKEN!r} else "token WRONG", flush=True)
print("loss=0.25", flush=True)
"""
SLOW = """import time
for i in range(1200):
    print(f"step {i}", flush=True)
    time.sleep(0.1)
"""


@dataclass
class Team:
    """The module's server and the tokens of its three users."""

    srv: ServerProcess
    admin: str
    alice: str
    bob: str

    def api(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.srv.url, headers=headers, timeout=30)

    def cli(self, token: str, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """``python -m trainforge.cli ARGS`` as the user of ``token``; checks the exit code unless ``code`` is None."""
        env = {**self.srv.env, "TRAINFORGE_ENDPOINT": self.srv.url, "TRAINFORGE_TOKEN": token}
        out = subprocess.run(
            [sys.executable, "-m", "trainforge.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )
        if code is not None:
            assert out.returncode == code, (args, out.stdout, out.stderr)
        return out

    def cli_json(self, token: str, *args: str) -> Any:
        return json.loads(self.cli(token, *args, "--output", "json").stdout)


def job_body(srv: ServerProcess, name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A CreateTrainingJob body for a script job whose source is uploaded to the server's local store."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = script.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    source = f"s3://trainforge-default/{name}/source/sourcedir.tar.gz"
    LocalObjectStore(srv.home / "storage").put_bytes(source, buf.getvalue())
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": "trainforge/python:current",
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
        },
        "OutputDataConfig": {"S3OutputPath": "s3://trainforge-default/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(source),
            "epochs": "3",
            "db_password": json.dumps(DB_PASSWORD),
        },
        **fields,
    }


def status(team: Team, name: str) -> str:
    with team.api(team.admin) as c:
        return str(c.get(f"/v1/training-jobs/{name}").json()["SecondaryStatus"])


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[Team]:
    home = tmp_path_factory.mktemp("users") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    srv = ServerProcess(home, extra_env=env).start()
    try:
        admin = srv.token
        t = Team(srv, admin, "", "")
        t.alice = t.cli_json(admin, "users", "create", "alice")["Token"]
        t.bob = t.cli_json(admin, "users", "create", "bob")["Token"]
        for user in ("alice", "bob"):
            t.cli(admin, "roles", "grant", "TrainforgeExecutionRole", user)
        environment = {"HF_TOKEN": HF_TOKEN, "PLAIN": "visible-value"}
        with t.api(t.alice) as c:
            for name, script in (("alice-job", QUICK), ("alice-long", SLOW)):
                r = c.post("/v1/training-jobs", json=job_body(srv, name, script, Environment=environment))
                assert r.status_code == 200, r.text
        with t.api(t.bob) as c:
            assert c.post("/v1/training-jobs", json=job_body(srv, "bob-job", QUICK)).status_code == 200
        for name in ("alice-job", "bob-job"):
            wait_for(lambda n=name: status(t, n) == "Completed", timeout=120, what=f"{name} Completed")
        wait_for(lambda: status(t, "alice-long") == "Training", timeout=120, what="alice-long Training")
        yield t
    finally:
        srv.kill()
        kill_supervisors(home)


def not_found(name: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "ResourceNotFound",
            "message": f"Requested resource not found: training job {name!r} does not exist",
            "details": {},
        }
    }


# -- ownership ------------------------------------------------------------------------------------------------


def test_another_users_job_is_a_404_like_an_unknown_job_and_an_admin_sees_all(team: Team) -> None:
    with team.api(team.bob) as bob, team.api(team.alice) as alice, team.api(team.admin) as admin:
        listed = bob.get("/v1/training-jobs", params={"MaxResults": 100}).json()["TrainingJobSummaries"]
        assert [(s["TrainingJobName"], s["CreatedBy"]) for s in listed] == [("bob-job", {"UserProfileName": "bob"})]
        mine = {s["TrainingJobName"] for s in alice.get("/v1/training-jobs").json()["TrainingJobSummaries"]}
        assert mine == {"alice-job", "alice-long"}
        everyone = {s["TrainingJobName"] for s in admin.get("/v1/training-jobs").json()["TrainingJobSummaries"]}
        assert everyone == {"alice-job", "alice-long", "bob-job"}

        unknown = bob.get("/v1/training-jobs/no-such-job")
        assert unknown.status_code == 404 and unknown.json() == not_found("no-such-job")
        for path in (
            "/v1/training-jobs/alice-job",
            "/v1/training-jobs/alice-job/logs",
            "/v1/training-jobs/alice-job/logs?follow=true",
            "/v1/training-jobs/alice-job/metrics",
            "/v1/remote-function-keys/alice-job",
        ):
            r = bob.get(path)
            assert (r.status_code, r.json()) == (404, not_found("alice-job")), path
        stop = bob.post("/v1/training-jobs/alice-long/stop")
        assert (stop.status_code, stop.json()) == (404, not_found("alice-long"))
        assert status(team, "alice-long") == "Training"
        # Resubmitting alice's very spec does not hand bob her job.
        own = alice.get("/v1/training-jobs/alice-job", params={"ShowSecrets": "true"}).json()
        body = job_body(team.srv, "alice-job", QUICK, Environment=own["Environment"])
        assert alice.post("/v1/training-jobs", json=body).status_code == 200  # her retry is idempotent
        assert bob.post("/v1/training-jobs", json=body).status_code == 409

        d = admin.get("/v1/training-jobs/alice-job").json()
        assert d["CreatedBy"] == {"UserProfileName": "alice"} and d["TrainingJobStatus"] == "Completed"
        lines = [e["message"] for e in admin.get("/v1/training-jobs/alice-job/logs").json()["events"]]
        assert "token ok" in lines  # the code got the real value; only the display is masked
        points = alice.get("/v1/training-jobs/alice-job/metrics", params={"names": "loss"}).json()["points"]
        assert [p["value"] for p in points] == [0.25]
        assert admin.get("/v1/training-jobs/alice-job/metrics").status_code == 200
        assert admin.get("/v1/remote-function-keys/alice-job").status_code == 200
        assert bob.get("/v1/remote-function-keys/bob-new-job").status_code == 200  # a name no job has yet

        assert admin.post("/v1/training-jobs/alice-long/stop").status_code == 200
        wait_for(lambda: status(team, "alice-long") == "Stopped", timeout=60, what="alice-long Stopped")


def test_the_cli_shows_each_user_their_own_jobs(team: Team) -> None:
    listed = team.cli_json(team.bob, "jobs", "list")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in listed] == ["bob-job"]
    table = team.cli(team.admin, "jobs", "list", "--sort-by", "Name", "--sort-order", "Ascending").stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [(r[0], r[-1]) for r in rows] == [("alice-job", "alice"), ("alice-long", "alice"), ("bob-job", "bob")]
    for command in (("jobs", "describe"), ("jobs", "logs"), ("jobs", "stop"), ("jobs", "logs", "-f")):
        out = team.cli(team.bob, *command[:2], "alice-job", *command[2:], code=3)
        assert out.stderr == "error: Requested resource not found: training job 'alice-job' does not exist\n"
    described = team.cli(team.admin, "jobs", "describe", "alice-job").stdout
    assert "Created by:" in described and "alice" in described
    assert "token ok" in team.cli(team.alice, "jobs", "logs", "alice-job").stdout


# -- tokens -----------------------------------------------------------------------------------------------------


def test_disabled_expired_and_revoked_tokens_are_refused_at_once(team: Team) -> None:
    carol = team.cli_json(team.admin, "users", "create", "carol")["Token"]
    with team.api(carol) as c:
        assert c.get("/v1/users/me").json() == {"UserName": "carol", "Admin": False, "DefaultRole": None}
        team.cli(team.admin, "users", "disable", "carol")
        r = c.get("/v1/users/me")
        assert r.status_code == 401 and "user 'carol' is disabled" in r.json()["error"]["message"]
        assert c.post("/v1/training-jobs/bob-job/stop").status_code == 401

    short = team.cli_json(team.admin, "tokens", "create", "bob", "--expires-in", "2s", "--description", "short")
    with team.api(short["Token"]) as c:
        assert c.get("/v1/users/me").status_code == 200
        wait_for(lambda: c.get("/v1/users/me").status_code == 401, timeout=10, what="the token to expire")
        assert f"API token {short['TokenId']} expired at" in c.get("/v1/users/me").json()["error"]["message"]

    extra = team.cli_json(team.admin, "tokens", "create", "bob")
    with team.api(extra["Token"]) as c:
        assert c.get("/v1/users/me").json()["UserName"] == "bob"
        assert (
            f"Revoked token {extra['TokenId']} of bob."
            in team.cli(team.admin, "tokens", "revoke", extra["TokenId"]).stdout
        )
        r = c.get("/v1/users/me")
        assert r.status_code == 401 and "was revoked" in r.json()["error"]["message"]
    with team.api("tf_0123456789abcdef_" + "x" * 43) as c:
        assert "unknown token" in c.get("/v1/users/me").json()["error"]["message"]
    with team.api(None) as c:
        assert "missing credentials" in c.get("/v1/training-jobs").json()["error"]["message"]

    listed = {t["TokenId"]: t for t in team.cli_json(team.admin, "tokens", "list", "--user", "bob")["Tokens"]}
    assert listed[short["TokenId"]]["Status"] == "Expired" and listed[extra["TokenId"]]["Status"] == "Revoked"
    assert all("Token" not in t for t in listed.values())
    assert team.cli(team.bob, "users", "me").stdout.startswith("bob")  # bob's own token still works


def test_tokens_are_stored_only_as_hashes(team: Team) -> None:
    db = team.srv.home / "trainforge.db"
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT token_id, secret_hash FROM api_tokens").fetchall())
    alice_id = team.alice.split("_")[1]
    assert stored[alice_id] == hashlib.sha256(team.alice.encode()).hexdigest()
    raw = b"".join(p.read_bytes() for p in team.srv.home.glob("trainforge.db*"))
    for token in (team.alice, team.bob):
        assert token.encode() not in raw and token.split("_", 2)[2].encode() not in raw


def test_only_admins_manage_users_and_tokens(team: Team) -> None:
    out = team.cli(team.bob, "users", "create", "mallory", code=1)
    assert out.stderr == "error: user 'bob' is not an admin; ask an admin to do this\n"
    with team.api(team.bob) as c:
        for method, path, body in (
            ("POST", "/v1/users", {"UserName": "mallory"}),
            ("GET", "/v1/users", None),
            ("POST", "/v1/tokens", {"UserName": "alice"}),
            ("GET", "/v1/tokens", None),
            ("POST", "/v1/users/alice/disable", None),
            ("GET", "/v1/audit", None),
        ):
            r = c.request(method, path, json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "PermissionDenied"), path
    names = [u["UserName"] for u in team.cli_json(team.admin, "users", "list")["Users"]]
    assert "mallory" not in names and {"admin", "alice", "bob"} <= set(names)
    bad = team.cli(team.admin, "users", "create", "Not A Name", code=2)
    assert "not a valid user name" in bad.stderr
    assert "ExpiresIn" in team.cli(team.admin, "tokens", "create", "bob", "--expires-in", "soon", code=2).stderr


# -- secrets ----------------------------------------------------------------------------------------------------


def test_secret_looking_values_are_masked_except_for_the_owners_show_secrets(team: Team) -> None:
    with team.api(team.alice) as alice, team.api(team.admin) as admin:
        d = alice.get("/v1/training-jobs/alice-job").json()
        assert d["Environment"] == {"HF_TOKEN": "****", "PLAIN": "visible-value"}
        assert d["HyperParameters"]["db_password"] == "****" and d["HyperParameters"]["epochs"] == "3"
        shown = alice.get("/v1/training-jobs/alice-job", params={"ShowSecrets": "true"}).json()
        assert shown["Environment"]["HF_TOKEN"] == HF_TOKEN
        assert shown["HyperParameters"]["db_password"] == json.dumps(DB_PASSWORD)
        by_admin = admin.get("/v1/training-jobs/alice-job", params={"ShowSecrets": "true"}).json()
        assert by_admin["Environment"]["HF_TOKEN"] == "****"
    text = team.cli(team.alice, "jobs", "describe", "alice-job").stdout
    assert "HF_TOKEN = ****" in text and "db_password = ****" in text and HF_TOKEN not in text
    assert "PLAIN = visible-value" in text
    assert f"HF_TOKEN = {HF_TOKEN}" in team.cli(team.alice, "jobs", "describe", "alice-job", "--show-secrets").stdout
    for args in (("jobs", "describe", "alice-job", "--show-secrets"), ("jobs", "list")):
        out = team.cli(team.admin, *args, "--output", "json").stdout
        assert HF_TOKEN not in out and DB_PASSWORD not in out


# -- audit ------------------------------------------------------------------------------------------------------


def test_writes_and_refusals_are_in_the_audit_log(team: Team) -> None:
    since = time.time()
    with team.api(team.bob) as bob, team.api(team.admin) as admin:
        assert bob.post("/v1/training-jobs/alice-job/stop").status_code == 404
        assert bob.post("/v1/users", json={"UserName": "eve"}).status_code == 403
        assert bob.post("/v1/training-jobs", json={"TrainingJobName": "x"}).status_code == 400
        assert admin.post("/v1/training-jobs/bob-job/stop").status_code == 400  # already Completed
    with team.api("tf_0123456789abcdef_" + "y" * 43) as stranger:
        assert stranger.post("/v1/training-jobs/alice-job/stop").status_code == 401

    events = team.cli_json(team.admin, "audit", "--since", str(since))["Events"]
    seen = {(e["UserName"], e["Action"], e["Target"], e["Outcome"]) for e in events}
    assert {
        ("bob", "StopTrainingJob", "alice-job", "404"),
        ("bob", "CreateUser", "eve", "403"),
        ("bob", "CreateTrainingJob", "x", "400"),
        ("admin", "StopTrainingJob", "bob-job", "400"),
        (None, "StopTrainingJob", "alice-job", "401"),
    } <= seen
    assert all(e["Source"] == "127.0.0.1" for e in events)
    refused = next(e for e in events if e["Outcome"] == "401")
    assert "token 0123456789abcdef" in refused["Detail"]

    created = team.cli_json(team.admin, "audit", "--action", "CreateTrainingJob", "--user", "alice")["Events"]
    assert {e["Target"] for e in created} == {"alice-job", "alice-long"} and {e["Outcome"] for e in created} == {"ok"}
    about = team.cli_json(team.admin, "audit", "--job", "alice-job")["Events"]
    assert {("alice", "CreateTrainingJob", "ok"), ("bob", "StopTrainingJob", "404")} <= {
        (e["UserName"], e["Action"], e["Outcome"]) for e in about
    }
    table = team.cli(team.admin, "audit", "--action", "CreateUser", "--user", "admin").stdout.splitlines()
    assert table[0].split() == ["TIME", "USER", "ACTION", "TARGET", "SOURCE", "OUTCOME", "DETAIL"]
    assert [line.split()[2:7] for line in table[1:] if " alice " in line] == [
        ["admin", "CreateUser", "alice", "127.0.0.1", "ok"]
    ]
    assert team.cli(team.bob, "audit", code=1).stderr.startswith("error: user 'bob' is not an admin")


# -- the store on both databases ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind the server supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'users.db'}"
        return
    yield fresh_database(request.getfixturevalue("postgres_url"))


def test_servers_starting_together_on_one_database_make_one_admin_owning_each_server_token(db_url: str) -> None:
    open_job_store(db_url).engine.dispose()  # migrated once, as the first server would
    server_tokens = [f"server-token-{i}-{'z' * 20}" for i in range(4)]
    services = [UserService(store=UserStore(make_engine(db_url))) for _ in server_tokens]
    start = threading.Barrier(len(services))

    def boot(i: int) -> None:
        start.wait()
        services[i].register_server_token(server_tokens[i])
        services[i].register_server_token(server_tokens[i])  # a restart changes nothing

    with ThreadPoolExecutor(len(services)) as pool:
        list(pool.map(boot, range(len(services))))
    users = services[0].list_users()
    assert [(u.name, u.admin) for u in users] == [("admin", True)]
    for token in server_tokens:
        assert services[0].authenticate(token).principal == Principal(user="admin", admin=True)
    assert len(services[0].list_tokens("admin")) == len(server_tokens)
    services[0].revoke_token(token_id_of(server_tokens[0]))
    services[1].register_server_token(server_tokens[0])  # a revoked server token stays revoked after a restart
    with pytest.raises(AuthError, match="was revoked"):
        services[2].authenticate(server_tokens[0])
    for svc in services:
        svc.store.engine.dispose()
