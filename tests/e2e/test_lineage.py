"""End to end: a job's lineage (environment, code, data, model content), ``rerun`` and ``diff`` -- a real server,
real supervisors, the SDK and the CLI as a user runs them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError
from trainforge.runtime.lineage import archive_content_sha256

# Seeded and deterministic: the same data and seed give byte-identical model files.
TRAIN_PY = """\
import glob, os
import numpy as np
seed = int(os.environ["SM_HP_SEED"])
rows = []
for path in sorted(glob.glob(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*.csv"))):
    rows += [[float(v) for v in line.split(",")] for line in open(path) if line.strip()]
x = np.array(rows)
w = np.random.default_rng(seed).normal(size=x.shape[1])
loss = float(((x @ w) ** 2).mean())
print(f"loss={loss:.6f}")
np.save(os.path.join(os.environ["SM_MODEL_DIR"], "weights.npy"), w)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write(f"{loss:.6f}\\n")
"""
ETAG_1 = hashlib.sha256(b"1\n").hexdigest()
REQUEST_FIELDS = (
    "TrainingJobName",
    "HyperParameters",
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
)
METRICS = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]


def cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**srv.env, "TRAINFORGE_ENDPOINT": srv.url, "TRAINFORGE_TOKEN": srv.token}
    return subprocess.run(
        [sys.executable, "-m", "trainforge.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def cli_json(srv: ServerProcess, *args: str) -> Any:
    done = cli(srv, *args, "--output", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def describe(srv: ServerProcess, name: str) -> dict[str, Any]:
    with srv.client() as c:
        r = c.get(f"/v1/training-jobs/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json())


def ended(srv: ServerProcess, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (d := describe(srv, name))["TrainingJobStatus"] in ("Completed", "Failed", "Stopped") and d,
        timeout=120,
        interval=0.2,
        what=f"{name} to end",
    )


def test_lineage_rerun_and_diff(
    server: ServerProcess, session: trainforge.Session, make_source, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store = session.object_store
    data = {"a.csv": b"1,2\n3,4\n", "b.csv": b"5,6\n"}
    for name, content in data.items():
        store.put_bytes(f"s3://trainforge-default/lineage/train/{name}", content)
    prefix = "s3://trainforge-default/lineage/train/"
    src = make_source({"train.py": TRAIN_PY})

    est = script_estimator(session, src, hyperparameters={"seed": 7}, metric_definitions=METRICS)
    est.fit({"train": prefix}, logs=False)
    first = est.latest_training_job.name
    d = describe(server, first)
    assert d["TrainingJobStatus"] == "Completed", d.get("FailureReason")

    # What it ran on: environment, the code object as uploaded, every channel object, the model's content.
    lineage = d["Lineage"]
    env = lineage["Environment"]
    assert env["Image"] == "trainforge/python:current"
    assert len(env["Fingerprint"]) == 64 and env["Python"].count(".") == 2
    assert env["Distributions"]["numpy"]
    code_uri = json.loads(d["HyperParameters"]["sagemaker_submit_directory"])
    code = store.get_bytes(code_uri)
    assert lineage["Code"] == {"Uri": code_uri, "Sha256": hashlib.sha256(code).hexdigest(), "Size": len(code)}
    assert lineage["Data"] == {
        "train": [
            {"Key": prefix + name, "Size": len(content), "ETag": hashlib.sha256(content).hexdigest()}
            for name, content in data.items()
        ]
    }
    assert lineage["Container"] is None
    (tmp_path / "first.tar.gz").write_bytes(store.get_bytes(d["ModelArtifacts"]["S3ModelArtifacts"]))
    assert lineage["Output"] == {"ModelContentSha256": archive_content_sha256(tmp_path / "first.tar.gz")}

    shown = cli(server, "jobs", "describe", first, "--lineage")
    assert shown.returncode == 0, shown.stderr
    for part in (env["Fingerprint"], lineage["Code"]["Sha256"], "train: 2 object(s), 12 bytes", "Distributions:"):
        assert part in shown.stdout
    assert cli_json(server, "jobs", "describe", first, "--lineage") == lineage

    # A rerun (CLI, waiting) repeats the environment and, the script being seeded, the model's content.
    rerun = cli(server, "jobs", "rerun", first, "--wait")
    assert rerun.returncode == 0, rerun.stderr
    second = rerun.stdout.strip()
    assert second == f"{first}-rerun-1" and "warning" not in rerun.stderr
    d2 = describe(server, second)
    assert d2["TrainingJobStatus"] == "Completed"
    assert d2["Lineage"]["Environment"]["Fingerprint"] == env["Fingerprint"]
    assert d2["Lineage"]["Code"] == lineage["Code"] and d2["Lineage"]["Data"] == lineage["Data"]
    assert d2["Lineage"]["Output"] == lineage["Output"]
    (tmp_path / "second.tar.gz").write_bytes(store.get_bytes(d2["ModelArtifacts"]["S3ModelArtifacts"]))
    assert archive_content_sha256(tmp_path / "second.tar.gz") == lineage["Output"]["ModelContentSha256"]
    same = cli_json(server, "jobs", "diff", first, second)
    assert same["Differences"] == {} and "Model" in same["Same"] and "Environment" in same["Same"]

    # A channel object changed since: the rerun warns naming the channel and the key (REST, named).
    store.put_bytes(prefix + "b.csv", b"5,7\n")
    with server.client() as c:
        r = c.post(f"/v1/training-jobs/{first}/rerun", json={"TrainingJobName": "lineage-changed"})
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["TrainingJobName"] == "lineage-changed"
    assert reply["TrainingJobArn"].endswith(":training-job/lineage-changed")
    [warning] = reply["Warnings"]
    assert warning.startswith(f"channel 'train': data changed since {first} ran: changed {prefix}b.csv")
    changed = ended(server, "lineage-changed")
    assert changed["Lineage"]["Output"] != lineage["Output"]

    # Different hyperparameters: diff shows them, the metric and the model; exit 0 either way.
    other = script_estimator(session, src, hyperparameters={"seed": 8}, metric_definitions=METRICS)
    other.fit({"train": prefix}, logs=False)
    third = other.latest_training_job.name
    diff = cli_json(server, "jobs", "diff", first, third)
    differences = diff["Differences"]
    assert differences["HyperParameters"]["Changed"]["seed"] == ["7", "8"]
    assert "loss" in differences["FinalMetrics"]["Changed"]
    assert set(differences["Model"]["ModelContentSha256"]) == {"A", "B"}
    old_etag, new_etag = hashlib.sha256(b"5,6\n").hexdigest(), hashlib.sha256(b"5,7\n").hexdigest()
    assert differences["Data"]["train"] == [f"changed {prefix}b.csv (ETag {old_etag} -> {new_etag})"]
    assert "Environment" in diff["Same"]
    text = cli(server, "jobs", "diff", first, third)
    assert text.returncode == 0 and "~ seed: 7 -> 8" in text.stdout


def test_rerun_errors_and_jobs_that_failed_early(
    server: ServerProcess, session: trainforge.Session, make_source
) -> None:  # type: ignore[no-untyped-def]
    src = make_source({"train.py": "print('never run')\n"})
    store = session.object_store
    store.put_bytes("s3://trainforge-default/early/train/x.csv", b"1\n")
    est = script_estimator(session, src)
    with pytest.raises(UnexpectedStatusError):
        est.fit(
            {"train": "s3://trainforge-default/early/train/", "empty": "s3://trainforge-default/early/none/"},
            logs=False,
        )
    name = est.latest_training_job.name
    d = ended(server, name)
    assert d["TrainingJobStatus"] == "Failed" and "channel 'empty': no objects found" in d["FailureReason"]
    # Failed before Training: its lineage has what was known then (the first channel; no code, no environment).
    assert d["Lineage"] == {
        "Environment": None,
        "Code": None,
        "Data": {"train": [{"Key": "s3://trainforge-default/early/train/x.csv", "Size": 2, "ETag": ETAG_1}]},
        "Container": None,
    }
    # A job that recorded nothing at all has no Lineage; its rerun says there is nothing to compare.
    with pytest.raises(UnexpectedStatusError):
        est.fit({"empty": "s3://trainforge-default/early/none/"}, logs=False)
    bare = est.latest_training_job.name
    assert "Lineage" not in ended(server, bare)

    with server.client() as c:
        assert c.post("/v1/training-jobs/no-such-job/rerun").status_code == 404
        bad = c.post(f"/v1/training-jobs/{name}/rerun", json={"TrainingJobName": "bad_name!"})
        assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "TrainingJobName"
        taken = c.post(f"/v1/training-jobs/{name}/rerun", json={"TrainingJobName": bare})
        assert taken.status_code == 409 and "already exists" in taken.json()["error"]["message"]
        first = c.post(f"/v1/training-jobs/{name}/rerun")
        again = c.post(f"/v1/training-jobs/{name}/rerun")
        assert first.status_code == again.status_code == 201
        assert [first.json()["TrainingJobName"], again.json()["TrainingJobName"]] == [
            f"{name}-rerun-1",
            f"{name}-rerun-2",
        ]
        # 'train' is as it was; the code and the 'empty' channel were never recorded, so nothing is compared there.
        code_warning, empty_warning = first.json()["Warnings"]
        assert code_warning.endswith(f"{name} recorded no code fingerprint; nothing to compare with")
        assert empty_warning == f"channel 'empty': {name} recorded no data manifest; nothing to compare with"
        nothing = c.post(f"/v1/training-jobs/{bare}/rerun").json()
        assert len(nothing["Warnings"]) == 1 and "recorded no lineage" in nothing["Warnings"][0]
        for rerun in (f"{name}-rerun-1", f"{name}-rerun-2", nothing["TrainingJobName"]):
            ended(server, rerun)
        # A @remote function's payload is signed for its job's name: a rerun could never verify it, so it is refused.
        spec = {**describe(server, bare), "TrainingJobName": "remote-like"}
        spec["HyperParameters"] = {**spec["HyperParameters"], "sagemaker_program": '"trainforge_remote_invoke.py"'}
        body = {key: spec[key] for key in REQUEST_FIELDS if key in spec}
        assert c.post("/v1/training-jobs", json=body).status_code == 200
        ended(server, "remote-like")
        remote = c.post("/v1/training-jobs/remote-like/rerun")
        assert remote.status_code == 400 and "@remote function" in remote.json()["error"]["message"]
