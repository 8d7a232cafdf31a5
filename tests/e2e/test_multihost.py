"""End to end: multi-host jobs on the local backend, every host a supervisor on this machine (``algo-1..N``).

The job is ``Training`` once every host runs its code and ``Completed`` once every host completed; one failing host
fails the job, naming itself, and the others are stopped; a stop reaches every host; ``model.tar.gz`` merges every
host's ``/opt/ml/model`` (a later host's file of the same name wins); each host's lines are kept apart.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.errors import UnexpectedStatusError, ValidationError
from trainforge.inputs import TrainingInput
from trainforge.pytorch import PyTorch

HOSTS_SCRIPT = """
import json, os, socket, sys, time
host = os.environ["SM_CURRENT_HOST"]
hosts = json.loads(os.environ["SM_HOSTS"])
with open("/opt/ml/input/config/resourceconfig.json".replace("/opt/ml", os.environ["SM_MODEL_DIR"][:-6])) as f:
    rc = json.load(f)
print(f"host={host} hosts={hosts} rc_current={rc['current_host']} rc_hosts={rc['hosts']}")
print("resolved", {h: socket.gethostbyname(h) for h in hosts})
print("master", os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
model = os.environ["SM_MODEL_DIR"]
open(os.path.join(model, f"from-{host}.txt"), "w").write(host)
open(os.path.join(model, "shared.txt"), "w").write(host)
os.makedirs(os.path.join(model, "sub"), exist_ok=True)
open(os.path.join(model, "sub", f"{host}.bin"), "wb").write(os.urandom(1000))
open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], f"out-{host}.txt"), "w").write(host)
time.sleep(0.5 if host == "algo-1" else 1.5)  # algo-1 finishes first and must wait for algo-2 to merge
print(f"done on {host}")
"""


def archive_members(server: ServerProcess, uri: str) -> dict[str, bytes]:
    data = trainforge.Session(settings=trainforge.settings.Settings(home=server.home)).object_store.get_bytes(uri)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_two_hosts_each_get_their_own_tree_resolve_each_other_and_merge_their_models(
    server: ServerProcess, session: trainforge.Session, make_source, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_source({"train.py": HOSTS_SCRIPT})
    est = script_estimator(session, src, encrypt_inter_container_traffic=True)
    est.instance_count = 2
    est.fit()
    out = capsys.readouterr().out
    # Accepted and recorded, and the log says plainly that the hosts' own traffic is not encrypted here.
    assert "EnableInterContainerTrafficEncryption is recorded, but the hosts of this job talk" in out
    for host in ("algo-1", "algo-2"):
        assert f"host={host} hosts=['algo-1', 'algo-2'] rc_current={host} rc_hosts=['algo-1', 'algo-2']" in out
        assert f"done on {host}" in out
    assert "resolved {'algo-1': '127.0.0.1', 'algo-2': '127.0.0.1'}" in out
    assert "\n[algo-2] done on algo-2\n" in out and "\ndone on algo-1\n" in out  # fit() names the other hosts
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses.count("Training") == 1 and statuses.count("Uploading") == 1 and statuses[-1] == "Completed"

    model = archive_members(server, est.model_data)
    assert model["from-algo-1.txt"] == b"algo-1" and model["from-algo-2.txt"] == b"algo-2"
    assert model["shared.txt"] == b"algo-2"  # merged as SageMaker does: the later host's file overwrites
    assert {"sub/algo-1.bin", "sub/algo-2.bin"} <= set(model)
    output = archive_members(server, est.model_data.replace("model.tar.gz", "output.tar.gz"))
    assert set(output) == {"out-algo-1.txt", "out-algo-2.txt"}
    # No staging parts are left next to the artifacts.
    prefix = est.model_data.rsplit("/", 1)[0] + "/"
    assert sorted(o.key.rsplit("/", 1)[1] for o in session.object_store.list(prefix)) == [
        "model.tar.gz", "output.tar.gz",
    ]  # fmt: skip

    # Each host's lines are kept apart.
    with server.client() as http:
        for host in ("algo-1", "algo-2"):
            lines = http.get(f"/v1/training-jobs/{job['TrainingJobName']}/logs", params={"host": host}).json()
            messages = [line["message"] for line in lines["events"]]
            assert any(f"done on {host}" in m for m in messages)
            other = "algo-2" if host == "algo-1" else "algo-1"
            assert not any(f"done on {other}" in m for m in messages)


FAIL_SCRIPT = """
import os, sys, time
host = os.environ["SM_CURRENT_HOST"]
print(f"{host} running", flush=True)
if host == os.environ["FAILING_HOST"]:
    time.sleep(1)
    raise SystemExit(f"{host} gives up")
time.sleep(600)
"""


@pytest.mark.parametrize(("failing", "survivor"), [("algo-2", "algo-1"), ("algo-1", "algo-2")])
def test_one_failing_host_fails_the_job_naming_it_and_the_other_host_is_stopped(
    server: ServerProcess, session: trainforge.Session, make_source, tmp_path: Path, failing: str, survivor: str
) -> None:
    src = make_source({"train.py": FAIL_SCRIPT})
    est = script_estimator(session, src, environment={"RUN_MARK": str(tmp_path), "FAILING_HOST": failing})
    est.instance_count = 2
    with pytest.raises(UnexpectedStatusError) as failed:
        est.fit(logs=False)
    reason = est.latest_training_job.describe()["FailureReason"]
    assert reason.startswith(f"AlgorithmError: host {failing}: "), reason
    assert f"{failing} gives up" in reason
    assert failing in str(failed.value)
    # The other host got SIGTERM (grace 5 s in tests), not left running (its code runs sandboxed, in a PID
    # namespace of its own: it is found from here by its environment).
    wait_for(lambda: not _running(str(tmp_path), survivor), timeout=20, what=f"{survivor}'s user code to be stopped")
    with server.client() as http:
        logs = http.get(f"/v1/training-jobs/{est.latest_training_job.name}/logs", params={"host": survivor}).json()
    assert any(f"{survivor} running" in event["message"] for event in logs["events"])  # it did run


def _running(mark: str, host: str) -> bool:
    """Whether a live process has ``RUN_MARK=<mark>`` and ``SM_CURRENT_HOST=<host>`` in its environment."""
    wanted = {f"RUN_MARK={mark}".encode(), f"SM_CURRENT_HOST={host}".encode()}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    return True
        except OSError:
            continue
    return False


STOP_SCRIPT = """
import os, signal, sys, time
host = os.environ["SM_CURRENT_HOST"]
def on_term(*_):
    open(os.path.join(os.environ["SM_MODEL_DIR"], f"stopped-{host}.txt"), "w").write(host)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print(f"{host} running", flush=True)
while True:
    time.sleep(0.1)
"""


def test_stop_reaches_every_host_and_what_they_saved_is_merged(
    server: ServerProcess, session: trainforge.Session, make_source
) -> None:
    src = make_source({"train.py": STOP_SCRIPT})
    est = script_estimator(session, src)
    est.instance_count = 2
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: session.describe_training_job(name)["SecondaryStatus"] == "Training", timeout=60, what="Training")
    session.stop_training_job(name)
    job = wait_for(
        lambda: (d := session.describe_training_job(name))["TrainingJobStatus"] == "Stopped" and d,
        timeout=60,
        what="Stopped",
    )
    assert job["SecondaryStatus"] == "Stopped"
    model = archive_members(server, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert set(model) == {"stopped-algo-1.txt", "stopped-algo-2.txt"}


def test_a_host_whose_supervisor_vanishes_fails_the_job_naming_it(
    server: ServerProcess, session: trainforge.Session, make_source
) -> None:
    src = make_source({"train.py": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    est = script_estimator(session, src)
    est.instance_count = 2
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: session.describe_training_job(name)["SecondaryStatus"] == "Training", timeout=60, what="Training")
    config = server.home / "jobs" / name / "algo-2" / "supervisor.json"
    pid = next(
        int(p.name) for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(config).encode() in _cmdline(p)
    )  # fmt: skip
    os.killpg(pid, 9)
    job = wait_for(
        lambda: (d := session.describe_training_job(name))["TrainingJobStatus"] == "Failed" and d,
        timeout=60,
        what="Failed",
    )
    assert "supervisor of host algo-2" in job["FailureReason"], job["FailureReason"]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


TORCH_SCRIPT = """
import argparse, json, os, socket
import torch
import torch.distributed as dist
parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
args, _ = parser.parse_known_args()
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
host = os.environ["SM_CURRENT_HOST"]
print(f"rank {rank}/{world} on {host}: all_reduce={value.item()} master={os.environ['MASTER_ADDR']}", flush=True)
if rank == 0:
    torch.save({"sum": value}, os.path.join(args.model_dir, "model.pth"))
    with open(os.path.join(args.model_dir, "rank0.json"), "w") as f:
        json.dump({"host": host, "sum": value.item(), "world": world}, f)
dist.destroy_process_group()
"""


def test_two_host_pytorch_job_all_reduces_over_gloo_and_keeps_the_rank0_model(
    server: ServerProcess, session: trainforge.Session, make_source, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_source({"train.py": TORCH_SCRIPT})
    est = PyTorch(
        entry_point="train.py",
        source_dir=str(src),
        framework_version="2.1",
        py_version="py310",
        role=trainforge.get_execution_role(),
        instance_count=2,
        instance_type="ml.m5.large",
        distribution={"torch_distributed": {"enabled": True}},
        sagemaker_session=session,
    )
    est.fit()
    out = capsys.readouterr().out
    assert "rank 0/2 on algo-1: all_reduce=3.0" in out
    assert "rank 1/2 on algo-2: all_reduce=3.0" in out
    model = archive_members(server, est.model_data)
    assert set(model) == {"model.pth", "rank0.json"}
    assert b'"host": "algo-1"' in model["rank0.json"] and b'"world": 2' in model["rank0.json"]


SHARD_SCRIPT = """
import json, os
print(os.environ["SM_CURRENT_HOST"], "sees", json.dumps(sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))))
"""


def test_sharded_by_s3_key_gives_each_host_a_disjoint_share(
    server: ServerProcess,
    session: trainforge.Session,
    make_source,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "shards"
    data.mkdir()
    for i in range(6):
        (data / f"part-{i}.csv").write_text(f"{i}\n")
    uri = session.upload_data(str(data), key_prefix="sharded/data")
    src = make_source({"train.py": SHARD_SCRIPT})
    est = script_estimator(session, src)
    est.instance_count = 2
    est.fit({"train": TrainingInput(uri, distribution="ShardedByS3Key")})
    out = capsys.readouterr().out
    seen: dict[str, set[str]] = {}
    for line in out.splitlines():
        for host in ("algo-1", "algo-2"):
            if f"{host} sees [" in line:
                seen[host] = set(json.loads(line.split(" sees ", 1)[1]))
    assert len(seen["algo-1"]) == 3 and len(seen["algo-2"]) == 3
    assert not seen["algo-1"] & seen["algo-2"]
    assert seen["algo-1"] | seen["algo-2"] == {f"part-{i}.csv" for i in range(6)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "instance_count: must be at least 1, got 0"),
        (-1, "instance_count: must be at least 1, got -1"),
        ("two", "instance_count: must be a positive integer, got 'two'"),
    ],
)
def test_bad_instance_counts_say_what_is_wrong_with_the_value(
    session: trainforge.Session, make_source, value: object, message: str
) -> None:
    src = make_source({"train.py": "print('hi')\n"})
    with pytest.raises(ValidationError, match=message):
        trainforge.estimator.Estimator(
            image_uri="trainforge/python:current",
            entry_point="train.py",
            source_dir=str(src),
            role="r",
            instance_type="ml.m5.large",
            instance_count=value,
            sagemaker_session=session,  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError, match=message):
        PyTorch(
            entry_point="train.py",
            source_dir=str(src),
            framework_version="2.1",
            py_version="py310",
            role="r",
            instance_type="ml.m5.large",
            instance_count=value,
            sagemaker_session=session,  # type: ignore[arg-type]
        )


def test_max_runtime_reaches_every_host(server: ServerProcess, session: trainforge.Session, make_source) -> None:
    src = make_source({"train.py": "import time\nprint('up', flush=True)\ntime.sleep(600)\n"})
    est = script_estimator(session, src, max_run=3)
    est.instance_count = 2
    est.fit(wait=False)
    name = est.latest_training_job.name
    job = wait_for(
        lambda: (d := session.describe_training_job(name))["TrainingJobStatus"] == "Stopped" and d,
        timeout=60,
        what="Stopped",
    )
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    with server.client() as http:
        for host in ("algo-1", "algo-2"):
            lines = http.get(f"/v1/training-jobs/{name}/logs", params={"host": host}).json()["events"]
            assert any("Stopping the job: SIGTERM" in line["message"] for line in lines), host
