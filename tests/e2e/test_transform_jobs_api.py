"""Batch transform jobs through the API of one real server, with real serving supervisors and model servers.

One server for the module. The admin makes a model on ``trainforge/python:current`` (no environment build) from a
``model.tar.gz`` whose ``code/inference.py`` is plain Python (``model_fn``/``input_fn``/``predict_fn``/
``output_fn``): it multiplies each CSV row's sum by the ``scale`` in ``weights.json``, refuses rows starting with a
negative number (the model's own error message), and takes a second per row starting with 999 (a long job).
"""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.storage import LocalObjectStore

BUCKET = "s3://trainforge-default"
ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
MODEL_DATA = f"{BUCKET}/models/scaler/model.tar.gz"
INFERENCE = textwrap.dedent(
    """
    import json
    import os
    import time


    def model_fn(model_dir):
        with open(os.path.join(model_dir, "weights.json")) as f:
            return json.load(f)


    def input_fn(body, content_type):
        text = body.decode() if isinstance(body, (bytes, bytearray)) else str(body)
        return [[float(x) for x in line.split(",")] for line in text.splitlines() if line.strip()]


    def predict_fn(rows, model):
        out = []
        for row in rows:
            if row[0] < 0:
                raise ValueError(f"scaler refuses negative features: {row}")
            if row[0] == 999:
                time.sleep(1)
            out.append(model["scale"] * sum(row))
        return out


    def output_fn(predictions, accept):
        return "\\n".join(f"{p:g}" for p in predictions), "text/csv"
    """
)


@dataclass
class Deployment:
    """The module's server, its object store and a non-admin user's token."""

    srv: ServerProcess
    objects: LocalObjectStore
    alice: str

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.srv.token}"}
        return httpx.Client(base_url=self.srv.url, headers=headers, timeout=30)

    def status(self, name: str) -> str:
        with self.api() as c:
            return str(c.get(f"/v1/transform-jobs/{name}").json()["TransformJobStatus"])

    def wait_status(self, name: str, want: str, timeout: float = 120) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            with self.api() as c:
                job: dict[str, Any] = c.get(f"/v1/transform-jobs/{name}").json()
            return job if job["TransformJobStatus"] in ("Completed", "Failed", "Stopped") else None

        job = wait_for(ended, timeout=timeout, what=f"{name} to end")
        assert job["TransformJobStatus"] == want, (job, self.logs(name))
        return job

    def logs_events(self, name: str) -> list[dict[str, Any]]:
        with self.api() as c:
            events: list[dict[str, Any]] = c.get(f"/v1/transform-jobs/{name}/logs").json()["events"]
        return events

    def logs(self, name: str) -> list[str]:
        return [e["message"] for e in self.logs_events(name)]


def model_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("weights.json", '{"scale": 2}'), ("code/inference.py", INFERENCE)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def job_body(name: str, input_prefix: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": "scaler",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_prefix}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"{BUCKET}/preds/{name}/", "AssembleWith": "Line", "Accept": "text/csv"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[Deployment]:
    home = tmp_path_factory.mktemp("transforms") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "5", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as srv:
        objects = LocalObjectStore(home / "storage")
        objects.put_bytes(MODEL_DATA, model_archive())
        headers = {"Authorization": f"Bearer {srv.token}"}
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as c:
            model = {
                "ModelName": "scaler",
                "PrimaryContainer": {
                    "Image": "trainforge/python:current",
                    "ModelDataUrl": MODEL_DATA,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                },
                "ExecutionRoleArn": ROLE,
            }
            r = c.post("/v1/models", json=model)
            assert r.status_code == 200, r.text
            r = c.post("/v1/users", json={"UserName": "alice"})
            assert r.status_code == 200, r.text
            alice = r.json()["Token"]
        yield Deployment(srv, objects, alice)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def processes_of(home: Path, name: str) -> list[str]:
    """Command lines of live processes that belong to the transform job ``name`` (its root in their command line,
    working directory or environment: a model server run without the sandbox has only the latter)."""
    root = str(home / "jobs" / f"transform.{name}")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (root in cmd or cwd.startswith(root) or root in environ):
            found.append(cmd)
    return found


# -- validation and ownership (no instance runs) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"TransformJobName": "no_underscores"}, "TransformJobName", "letters, digits and hyphens"),
        ({"ModelName": "missing-model"}, "ModelName", 'Could not find model "missing-model"'),
        (
            {"TransformResources": {"InstanceType": "ml.m5.huge", "InstanceCount": 1}},
            "TransformResources.InstanceType",
            "unknown instance type",
        ),
        (
            {"TransformResources": {"InstanceType": "ml.p3.16xlarge", "InstanceCount": 1}},
            "TransformResources.InstanceType",
            "GPU",
        ),
        ({"BatchStrategy": "All"}, "BatchStrategy", "'SingleRecord' or 'MultiRecord'"),
        ({"MaxPayloadInMB": 500}, "MaxPayloadInMB", "100"),
        ({"DataProcessing": {"JoinSource": "Input"}}, "DataProcessing", "only the default"),
    ],
)
def test_bad_requests_name_the_field_and_record_nothing(
    dep: Deployment, change: dict[str, Any], field: str, words: str
) -> None:
    with dep.api() as c:
        error = error_of(c.post("/v1/transform-jobs", json=job_body("bad-one", f"{BUCKET}/in/", **change)), 400)
        assert error["code"] == "ValidationException" and error["details"]["field"] == field
        assert error["message"].startswith(f"{field}: ") and words in error["message"], error["message"]
        error_of(c.get("/v1/transform-jobs/bad-one"), 404)


def test_unsupported_split_types_say_which_are_supported(dep: Deployment) -> None:
    body = job_body("bad-split", f"{BUCKET}/in/")
    body["TransformInput"]["SplitType"] = "RecordIO"
    with dep.api() as c:
        error = error_of(c.post("/v1/transform-jobs", json=body), 400)
    assert error["details"]["field"] == "TransformInput.SplitType"
    assert "'RecordIO' is not supported here; use one of None, Line" in error["message"]


def test_another_users_job_is_a_404_and_their_model_is_unknown_to_them(dep: Deployment) -> None:
    dep.objects.put_bytes(f"{BUCKET}/own/a.csv", b"1,2\n")
    with dep.api() as admin, dep.api(dep.alice) as alice:
        assert admin.post("/v1/transform-jobs", json=job_body("admins-job", f"{BUCKET}/own/")).status_code == 200
        for method, path in (
            ("GET", "/v1/transform-jobs/admins-job"),
            ("GET", "/v1/transform-jobs/admins-job/logs"),
            ("POST", "/v1/transform-jobs/admins-job/stop"),
        ):
            error = error_of(alice.request(method, path), 404)
            assert error["message"] == "Requested resource not found: transform job 'admins-job' does not exist"
        assert alice.get("/v1/transform-jobs").json() == {"TransformJobSummaries": []}
        mine = alice.post("/v1/transform-jobs", json=job_body("alices-job", f"{BUCKET}/own/"))
        assert error_of(mine, 400)["details"]["field"] == "ModelName"  # the admin's model is not hers to use
        listed = admin.get("/v1/transform-jobs", params={"NameContains": "admins"}).json()["TransformJobSummaries"]
        assert [s["TransformJobName"] for s in listed] == ["admins-job"]
    dep.wait_status("admins-job", "Completed")
    with dep.api() as admin:
        again = admin.post("/v1/transform-jobs", json=job_body("admins-job", f"{BUCKET}/own/"))
        error = error_of(again, 409)  # names are never reused, even of a finished job
    assert error["details"]["field"] == "TransformJobName" and "already exists" in error["message"]


# -- runs ---------------------------------------------------------------------------------------------------


def test_three_files_of_csv_lines_become_three_out_files_with_one_prediction_per_line(dep: Deployment) -> None:
    rows = {"a.csv": ["1,2", "3,4"], "b.csv": ["0.5,0.5", "10,0", "1,1"], "sub/c.csv": ["7,1"]}
    for key, lines in rows.items():
        dep.objects.put_bytes(f"{BUCKET}/batch/{key}", ("\n".join(lines) + "\n").encode())
    with dep.api() as c:
        r = c.post("/v1/transform-jobs", json=job_body("scale-3", f"{BUCKET}/batch/"))
        arn = r.json()["TransformJobArn"]
        assert arn.startswith("arn:aws:sagemaker:") and arn.endswith(":000000000000:transform-job/scale-3")
        assert c.get("/v1/transform-jobs/scale-3").json()["TransformJobStatus"] == "InProgress"
    job = dep.wait_status("scale-3", "Completed")
    assert job["TransformStartTime"] <= job["TransformEndTime"] and "FailureReason" not in job
    assert job["ModelName"] == "scaler" and job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert job["MaxPayloadInMB"] == 6 and "TrainingJobName" not in job
    out = f"{BUCKET}/preds/scale-3/"
    written = sorted(o.uri[len(out) :] for o in dep.objects.list(out))
    assert written == ["a.csv.out", "b.csv.out", "sub/c.csv.out"]
    for key, lines in rows.items():
        want = [f"{2 * sum(float(x) for x in line.split(',')):g}" for line in lines]
        assert dep.objects.get_bytes(f"{out}{key}.out").decode().splitlines() == want
    assert dep.logs("scale-3"), "the instance's lines are kept"
    with dep.api() as c:
        listed = c.get("/v1/transform-jobs", params={"StatusEquals": "Completed"}).json()["TransformJobSummaries"]
        assert "scale-3" in {s["TransformJobName"] for s in listed}
        error = error_of(c.post("/v1/transform-jobs/scale-3/stop"), 400)
        assert "already Completed" in error["message"]
        audit = c.get("/v1/audit", params={"Action": "CreateTransformJob", "Target": "scale-3"}).json()["Events"]
        assert [(e["UserName"], e["Outcome"]) for e in audit] == [("admin", "ok")]


def test_instances_share_the_files_and_the_job_completes_when_every_one_did(dep: Deployment) -> None:
    for key in ("a.csv", "b.csv", "c.csv"):
        dep.objects.put_bytes(f"{BUCKET}/pair/{key}", b"1,1\n2,2\n")
    body = job_body("pair", f"{BUCKET}/pair/", TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2})
    with dep.api() as c:
        assert c.post("/v1/transform-jobs", json=body).status_code == 200
    dep.wait_status("pair", "Completed")
    hosts = {e["host"] for e in dep.logs_events("pair")}
    assert hosts == {"algo-1", "algo-2"}
    for key in ("a.csv", "b.csv", "c.csv"):
        assert dep.objects.get_bytes(f"{BUCKET}/preds/pair/{key}.out") == b"4\n8\n"


def test_one_failing_instance_fails_the_job_at_once_naming_it_and_stops_the_other(dep: Deployment) -> None:
    dep.objects.put_bytes(f"{BUCKET}/split/a.csv", b"999,1\n" * 600)  # algo-1: ten minutes of work
    dep.objects.put_bytes(f"{BUCKET}/split/b.csv", b"-1,1\n")  # algo-2: refused at once
    body = job_body("split", f"{BUCKET}/split/", TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2})
    with dep.api() as c:
        assert c.post("/v1/transform-jobs", json=body).status_code == 200
    job = dep.wait_status("split", "Failed", timeout=60)
    assert job["FailureReason"].startswith("ClientError: host algo-2: "), job["FailureReason"]
    assert "scaler refuses negative features" in job["FailureReason"]
    wait_for(lambda: not processes_of(dep.srv.home, "split"), timeout=60, what="the other instance to stop")
    assert list(dep.objects.list(f"{BUCKET}/preds/split/")) == []


def test_a_handler_that_raises_fails_the_job_with_the_models_message(dep: Deployment) -> None:
    dep.objects.put_bytes(f"{BUCKET}/refused/x.csv", b"1,1\n-5,2\n")
    with dep.api() as c:
        assert c.post("/v1/transform-jobs", json=job_body("refused", f"{BUCKET}/refused/")).status_code == 200
    job = dep.wait_status("refused", "Failed")
    assert "scaler refuses negative features" in job["FailureReason"], job["FailureReason"]
    assert job["FailureReason"].startswith("ClientError: ") and "x.csv" in job["FailureReason"]
    wait_for(lambda: not processes_of(dep.srv.home, "refused"), timeout=30, what="the job's processes to end")


def test_a_long_job_survives_a_server_restart_and_stops_with_nothing_left_running(dep: Deployment) -> None:
    dep.objects.put_bytes(f"{BUCKET}/slow/rows.csv", b"999,1\n" * 600)
    with dep.api() as c:
        assert c.post("/v1/transform-jobs", json=job_body("slow", f"{BUCKET}/slow/")).status_code == 200
    wait_for(lambda: processes_of(dep.srv.home, "slow") and dep.logs("slow"), timeout=60, what="slow to run")
    dep.srv.kill()
    dep.srv.start()  # the job's supervisor runs on, reconciled by the new server
    assert dep.status("slow") == "InProgress" and processes_of(dep.srv.home, "slow")
    with dep.api() as c:
        assert c.post("/v1/transform-jobs/slow/stop").status_code == 200
        assert c.get("/v1/transform-jobs/slow").json()["TransformJobStatus"] in ("Stopping", "Stopped")
        assert c.post("/v1/transform-jobs/slow/stop").status_code == 200  # stopping again is a no-op
    job = dep.wait_status("slow", "Stopped", timeout=60)
    assert job["TransformEndTime"] >= job["TransformStartTime"]
    wait_for(lambda: not processes_of(dep.srv.home, "slow"), timeout=30, what="the job's processes to end")
    assert list(dep.objects.list(f"{BUCKET}/preds/slow/")) == []


def test_an_instance_whose_supervisor_dies_fails_the_job_naming_the_host(dep: Deployment) -> None:
    dep.objects.put_bytes(f"{BUCKET}/doomed/rows.csv", b"999,1\n" * 600)
    with dep.api() as c:
        assert c.post("/v1/transform-jobs", json=job_body("doomed", f"{BUCKET}/doomed/")).status_code == 200
    wait_for(lambda: dep.logs("doomed"), timeout=60, what="doomed to run")
    config = str(dep.srv.home / "jobs" / "transform.doomed" / "algo-1" / "supervisor.json")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if config in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    os.kill(int(proc.name), 9)
            except OSError:
                continue
    job = dep.wait_status("doomed", "Failed", timeout=60)
    assert "transform instance algo-1" in job["FailureReason"] and "is gone" in job["FailureReason"]
    wait_for(lambda: not processes_of(dep.srv.home, "doomed"), timeout=90, what="the job's processes to end")
