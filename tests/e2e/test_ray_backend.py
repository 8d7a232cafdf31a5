"""End to end on the Ray backend: a real server process (``TRAINFORGE_BACKEND=ray``) on the session's real local
Ray cluster (one node, 8 CPUs, placement ``PACK`` so several hosts share it). Each test runs in its own Ray
namespace, whose actors (and with them their supervisors) and placement groups are removed after the test.

Jobs run where the Ray actors start them: under the node's ``TRAINFORGE_HOME`` (``ray-jobs/<namespace>/<job>/
<host>``), not under the server's home, which is how these tests tell that a job ran on Ray.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.e2e.test_multihost import TORCH_SCRIPT  # the same script as on the local backend
from tests.support.docker import DockerEngine
from tests.support.ray_cluster import RAY_ENV, RayCluster, free_port
from tests.support.server import ServerProcess
from tests.support.wait import wait_for
from trainforge.backends.ray_resources import refuse_never_fitting
from trainforge.errors import NotFoundError, ValidationError
from trainforge.estimator import Estimator
from trainforge.pytorch import PyTorch
from trainforge.runtime.sandbox import probe
from trainforge.scheduler.instances import lookup, this_machine
from trainforge.settings import Settings
from trainforge.storage import LocalObjectStore


@pytest.fixture
def ray_ns() -> str:
    """A Ray namespace of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ray_server(tf_home: Path, envs_dir: Path, ray_cluster: RayCluster, ray_ns: str) -> Iterator[ServerProcess]:
    """A server whose jobs run on the session's Ray cluster, in ``ray_ns``."""
    env = {
        **ray_cluster.server_env(ray_ns, placement="PACK"),
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
    }
    srv = ServerProcess(tf_home, extra_env=env).start(timeout=60)
    try:
        yield srv
    finally:
        srv.kill()
        ray_cluster.cleanup(ray_ns)


@pytest.fixture
def ray_session(ray_server: ServerProcess) -> trainforge.Session:
    """An SDK session talking to the Ray-backed server."""
    return trainforge.Session(settings=Settings(home=ray_server.home))


def script_job(
    session: trainforge.Session, src: Path, *, instance_type: str = "ml.m5.large", instance_count: int = 1
) -> Estimator:
    return Estimator(
        image_uri="trainforge/python:current",
        entry_point="train.py",
        source_dir=str(src),
        role=trainforge.get_execution_role(),
        instance_type=instance_type,
        instance_count=instance_count,
        sagemaker_session=session,
    )


def model_files(server: ServerProcess, uri: str) -> dict[str, bytes]:
    data = LocalObjectStore(server.home / "storage").get_bytes(uri)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def log_lines(session: trainforge.Session, name: str, host: str | None = None) -> list[str]:
    return [e["message"] for e in session.client.logs(name, host=host, limit=10000)["events"]]


def supervisor_pid(cluster: RayCluster, namespace: str, job: str, host: str) -> int | None:
    """The pid of the running supervisor of ``host`` (found by its config path on its command line)."""
    config = str(cluster.job_root(namespace, job, host) / "supervisor.json").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if config in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                    return int(proc.name)
            except OSError:
                continue
    return None


def job_processes(cluster: RayCluster, namespace: str, job: str) -> list[int]:
    """Pids of processes still running for the job: its supervisors and any user code in its job roots."""
    root = str(cluster.job_root(namespace, job, "x").parent)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            where = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and (where.startswith(root) or root in cmd):
            found.append(int(proc.name))
    return found


def status_of(session: trainforge.Session, name: str, wanted: str) -> dict[str, Any] | None:
    d = session.describe_training_job(name)
    return d if d["TrainingJobStatus"] == wanted else None


STOPPABLE = """
import os, signal, sys, time
def on_term(signum, frame):
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "saved-on-sigterm.txt"), "w") as f:
        f.write("checkpoint")
    print("got SIGTERM, saved", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("looping on", os.environ["SM_CURRENT_HOST"], flush=True)
while True:
    time.sleep(0.1)
"""


def test_a_one_host_job_completes_on_ray_with_its_log_and_model(
    ray_server: ServerProcess,
    ray_session: trainforge.Session,
    ray_cluster: RayCluster,
    ray_ns: str,
    make_source: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = make_source(
        {
            "train.py": """
        import os
        print("hello from", os.environ["SM_CURRENT_HOST"], "model dir", os.environ["SM_MODEL_DIR"], flush=True)
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
            f.write("trained on ray")
    """
        }
    )
    est = script_job(ray_session, src)
    est.fit()
    out = capsys.readouterr().out
    name = est.latest_training_job.name
    root = ray_cluster.job_root(ray_ns, name, "algo-1")
    model_dir = "/opt/ml/model" if probe().available else f"{root}/opt/ml/model"
    assert f"hello from algo-1 model dir {model_dir}" in out
    assert (root / "opt/ml/model/model.txt").is_file()  # it ran in the job root the host's Ray actor made
    assert "Completed - Training job completed" in out
    lines = log_lines(ray_session, name)
    assert any(line.startswith("hello from algo-1") for line in lines)
    sandbox = "bubblewrap (mount, pid, ipc namespaces; network: host)" if probe().available else "not available"
    assert lines[0].startswith(f"[trainforge] sandbox: {sandbox}"), lines[0]  # on Ray as on the local backend
    assert model_files(ray_server, str(est.model_data)) == {"model.txt": b"trained on ray"}
    assert not (ray_server.home / "jobs" / name).exists()


def test_stop_reaches_a_job_on_ray(
    ray_server: ServerProcess, ray_session: trainforge.Session, ray_cluster: RayCluster, ray_ns: str, make_source: Any
) -> None:
    est = script_job(ray_session, make_source({"train.py": STOPPABLE}))
    est.fit(wait=False)
    name = est.latest_training_job.name
    wait_for(lambda: "looping on algo-1" in log_lines(ray_session, name), timeout=60, what="the script to start")
    est.latest_training_job.stop()
    job = wait_for(lambda: status_of(ray_session, name, "Stopped"), timeout=60, what="Stopped")
    assert job["SecondaryStatus"] == "Stopped"
    assert "got SIGTERM, saved" in log_lines(ray_session, name)
    assert model_files(ray_server, str(est.model_data)) == {"saved-on-sigterm.txt": b"checkpoint"}
    wait_for(lambda: not job_processes(ray_cluster, ray_ns, name), timeout=30, what="the job's processes to end")


def test_a_ray_cluster_that_cannot_be_reached_stops_the_server_naming_the_setting(tf_home: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update(RAY_ENV, TRAINFORGE_HOME=str(tf_home), TRAINFORGE_BACKEND="ray", TRAINFORGE_RAY_ADDRESS=address)
    done = subprocess.run(
        [sys.executable, "-m", "trainforge.server"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"TRAINFORGE_RAY_ADDRESS={address}: cannot reach the Ray cluster" in done.stderr


def test_a_job_the_cluster_can_never_hold_is_refused_at_submit(
    ray_session: trainforge.Session, make_source: Any
) -> None:
    src = make_source({"train.py": "print('never runs')\n"})
    with pytest.raises(ValidationError) as info:
        script_job(ray_session, src, instance_count=5).fit()  # 5 x 2 CPUs on a cluster of 8
    assert info.value.field == "ResourceConfig.InstanceCount"
    assert "5 x ml.m5.large (CPU 2 each) can never run" in info.value.message
    assert "room for 4 such host(s)" in info.value.message

    with pytest.raises(ValidationError) as info:
        script_job(ray_session, src, instance_type="ml.m5.4xlarge").fit()  # 16 CPUs, nodes have 8
    assert info.value.field == "ResourceConfig.InstanceType"
    assert "needs CPU 16 but no node of the Ray cluster" in info.value.message

    with pytest.raises(ValidationError) as info:
        script_job(ray_session, src, instance_type="ml.g4dn.xlarge").fit()
    assert info.value.field == "ResourceConfig.InstanceType"
    assert "needs 1 GPU(s) but the Ray cluster" in info.value.message and "has no GPUs" in info.value.message
    assert ray_session.list_training_jobs()["TrainingJobSummaries"] == []


def test_what_a_cluster_of_several_nodes_could_never_hold_under_each_placement() -> None:
    # No cluster needed: the rule the Ray backend applies to its nodes' totals (a one-node test cluster cannot
    # show STRICT_SPREAD refusing what PACK would place).
    nodes = [{"CPU": 8.0}, {"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}]
    m5_2xl, m5_xl, g4 = (lookup(t, this_machine()) for t in ("ml.m5.2xlarge", "ml.m5.xlarge", "ml.g4dn.xlarge"))
    refuse_never_fitting(nodes, m5_xl, 3, "STRICT_SPREAD", where="c")  # one 4-CPU host on each node
    with pytest.raises(ValidationError) as info:
        refuse_never_fitting(nodes, m5_2xl, 3, "STRICT_SPREAD", where="c")  # only two nodes have 8 CPUs
    assert info.value.field == "ResourceConfig.InstanceCount"
    assert "has 2 node(s) with CPU 8" in info.value.message and "TRAINFORGE_RAY_PLACEMENT=PACK" in info.value.message
    refuse_never_fitting(nodes, m5_xl, 5, "PACK", where="c")  # 2 + 2 + 1 hosts of 4 CPUs
    with pytest.raises(ValidationError, match="room for 5 such host"):
        refuse_never_fitting(nodes, m5_xl, 6, "PACK", where="c")
    with pytest.raises(ValidationError, match="largest node of c holds 2"):
        refuse_never_fitting(nodes, m5_xl, 3, "STRICT_PACK", where="c")
    refuse_never_fitting(nodes, g4, 1, "STRICT_SPREAD", where="c")  # the GPU node holds one
    with pytest.raises(ValidationError, match="needs CPU 4, GPU 1 but no node"):
        refuse_never_fitting([{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}], g4, 1, "PACK", where="c")


def test_a_job_that_does_not_fit_now_waits_pending_and_starts_when_room_frees(
    ray_server: ServerProcess, ray_session: trainforge.Session, make_source: Any
) -> None:
    big = script_job(ray_session, make_source({"train.py": STOPPABLE}), instance_type="ml.m5.2xlarge")  # all 8 CPUs
    big.fit(wait=False)
    big_name = big.latest_training_job.name
    wait_for(lambda: "looping on algo-1" in log_lines(ray_session, big_name), timeout=60, what="the big job to run")

    small = script_job(ray_session, make_source({"train.py": "print('small job ran', flush=True)\n"}))
    small.fit(wait=False)
    small_name = small.latest_training_job.name
    pending = wait_for(
        lambda: (d := ray_session.describe_training_job(small_name))["SecondaryStatus"] == "Pending" and d,
        timeout=30,
        what="Pending",
    )
    assert pending["StatusMessage"].startswith("Waiting for capacity on the Ray cluster: 1 x ml.m5.large"), pending
    assert "CPU 2 needed, 0 of 8 free" in pending["StatusMessage"]

    big.latest_training_job.stop()
    wait_for(lambda: status_of(ray_session, big_name, "Stopped"), timeout=60, what="the big job to stop")
    wait_for(lambda: status_of(ray_session, small_name, "Completed"), timeout=60, what="the small job to complete")
    assert "small job ran" in log_lines(ray_session, small_name)


def test_the_room_a_finished_job_held_is_given_back(ray_session: trainforge.Session, make_source: Any) -> None:
    src = make_source({"train.py": "print('took the whole cluster', flush=True)\n"})
    for _ in range(2):  # each job takes all 8 CPUs: the second runs only if the first one's bundle was freed
        est = script_job(ray_session, src, instance_type="ml.m5.2xlarge")
        est.fit(logs="None")
        assert est.latest_training_job.describe()["TrainingJobStatus"] == "Completed"


def test_a_server_restart_reconciles_ray_jobs(
    ray_server: ServerProcess,
    ray_session: trainforge.Session,
    ray_cluster: RayCluster,
    ray_ns: str,
    make_source: Any,
) -> None:
    waits = make_source(
        {
            # The go file is dropped into the job's own /opt/ml (the only host directory its sandbox shares).
            "train.py": """
        import os, time
        go = os.path.join(os.path.dirname(os.environ["SM_MODEL_DIR"]), "go")
        print("waiting for go", flush=True)
        while not os.path.exists(go):
            time.sleep(0.1)
        print("went on after the restart", flush=True)
    """
        }
    )
    carries_on = script_job(ray_session, waits)
    carries_on.fit(wait=False)
    vanishes = script_job(ray_session, make_source({"train.py": STOPPABLE}))
    vanishes.fit(wait=False)
    a, b = carries_on.latest_training_job.name, vanishes.latest_training_job.name
    wait_for(lambda: "waiting for go" in log_lines(ray_session, a), timeout=60, what="job a to run")
    wait_for(lambda: "looping on algo-1" in log_lines(ray_session, b), timeout=60, what="job b to run")

    old_url = ray_server.url
    ray_server.stop()  # SIGTERM: the server (a Ray driver) exits; its detached actors and their jobs do not
    pid = supervisor_pid(ray_cluster, ray_ns, b, "algo-1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # job b's supervisor dies while no server runs
    with socket.socket() as taken:  # hold the old port: the new server listens elsewhere, and job a must find it
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", int(old_url.rsplit(":", 1)[1])))
        taken.listen(1)
        ray_server.start(timeout=60)
    assert ray_server.url != old_url
    (ray_cluster.job_root(ray_ns, a, "algo-1") / "opt" / "ml" / "go").touch()
    session = trainforge.Session(settings=Settings(home=ray_server.home))

    done = wait_for(lambda: status_of(session, a, "Completed"), timeout=60, what="job a to complete")
    assert done["SecondaryStatus"] == "Completed"
    told = json.loads((ray_cluster.job_root(ray_ns, a, "algo-1") / "server.json").read_text())
    assert told == {"url": ray_server.url}  # the new server told job a's actor where it is now
    assert "went on after the restart" in log_lines(session, a)
    failed = wait_for(lambda: status_of(session, b, "Failed"), timeout=60, what="job b to fail")
    assert f"supervisor process (pid {pid}) is gone" in failed["FailureReason"], failed["FailureReason"]
    wait_for(lambda: not job_processes(ray_cluster, ray_ns, b), timeout=30, what="job b's user code to be killed")


def test_a_two_host_pytorch_job_all_reduces_across_its_ray_hosts(
    ray_server: ServerProcess,
    ray_session: trainforge.Session,
    ray_cluster: RayCluster,
    ray_ns: str,
    make_source: Any,
) -> None:
    est = PyTorch(
        entry_point="train.py",
        source_dir=str(make_source({"train.py": TORCH_SCRIPT})),
        framework_version="2.1",
        py_version="py310",
        role=trainforge.get_execution_role(),
        instance_count=2,
        instance_type="ml.m5.large",
        distribution={"torch_distributed": {"enabled": True}},
        sagemaker_session=ray_session,
    )
    est.fit(logs="None")
    name = est.latest_training_job.name
    for rank, host in enumerate(("algo-1", "algo-2")):
        lines = log_lines(ray_session, name, host)
        assert any(line.startswith(f"rank {rank}/2 on {host}: all_reduce=3.0 master=") for line in lines), lines
    for host in ("algo-1", "algo-2"):
        assert (ray_cluster.job_root(ray_ns, name, host) / "supervisor.json").exists()
    model = model_files(ray_server, str(est.model_data))
    assert set(model) == {"model.pth", "rank0.json"}
    assert b'"host": "algo-1"' in model["rank0.json"] and b'"world": 2' in model["rank0.json"]


def test_killing_one_ray_host_fails_the_job_naming_it_and_nothing_hangs(
    ray_server: ServerProcess,
    ray_session: trainforge.Session,
    ray_cluster: RayCluster,
    ray_ns: str,
    make_source: Any,
) -> None:
    est = script_job(ray_session, make_source({"train.py": STOPPABLE}), instance_count=2)
    est.fit(wait=False)
    name = est.latest_training_job.name
    for host in ("algo-1", "algo-2"):
        wait_for(lambda h=host: f"looping on {h}" in log_lines(ray_session, name, h), timeout=60, what=f"{host}")
    pid = supervisor_pid(ray_cluster, ray_ns, name, "algo-2")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    failed = wait_for(lambda: status_of(ray_session, name, "Failed"), timeout=60, what="the job to fail")
    assert "supervisor of host algo-2" in failed["FailureReason"], failed["FailureReason"]
    # The other host was stopped: its supervisor (the leader, which merges the hosts' artifacts) must not wait
    # for a peer that is known gone, and the killed host's user code must not live on.
    wait_for(lambda: not job_processes(ray_cluster, ray_ns, name), timeout=30, what="every host of the job to end")


INFERENCE = """
import json

def model_fn(model_dir):
    with open(f"{model_dir}/factor.txt") as f:
        return int(f.read())

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    return [x * model for x in data]

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def test_an_endpoint_serves_from_a_ray_node_and_its_delete_leaves_nothing_running(
    ray_session: trainforge.Session, ray_cluster: RayCluster, ray_ns: str, tmp_path: Path
) -> None:
    from trainforge.deserializers import JSONDeserializer
    from trainforge.model import Model
    from trainforge.serializers import JSONSerializer

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("factor.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"3"))
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(INFERENCE)
    model = Model(
        image_uri="trainforge/python:current",
        model_data=ray_session.upload_data(str(archive), key_prefix="ray-endpoint"),
        entry_point="inference.py",
        source_dir=str(code),
        role=trainforge.get_execution_role(ray_session),
        sagemaker_session=ray_session,
    )
    predictor = model.deploy(1, "ml.m5.large", serializer=JSONSerializer(), deserializer=JSONDeserializer())
    assert predictor.predict([1, 2]) == [3, 6]
    name = predictor.endpoint_name
    [root] = list(ray_cluster.job_root(ray_ns, f"endpoint.{name}", "algo-1").parent.parent.glob(f"endpoint.{name}*"))
    assert (root / "algo-1" / "supervisor.json").is_file()  # its instance ran where the node's Ray actor put it
    [instance] = ray_session.describe_endpoint(name)["Instances"]
    assert instance["Status"] == "InService" and instance["Address"].startswith("http://")

    predictor.delete_endpoint()
    wait_for(
        lambda: not job_processes(ray_cluster, ray_ns, root.name), timeout=60, what="the endpoint's processes to end"
    )
    with pytest.raises(NotFoundError):
        predictor.predict([1])


def test_a_container_job_runs_with_the_ray_nodes_own_engine(
    ray_server: ServerProcess,
    ray_session: trainforge.Session,
    docker_engine: DockerEngine,
    test_images: dict[str, str],
) -> None:
    """A container image on the Ray backend runs with the engine of the node its host lands on (the node's
    ``DOCKER_HOST``; the server's environment names none)."""
    assert "DOCKER_HOST" not in ray_server.env
    image = test_images["busybox"]
    script = 'echo "in a container on $SM_CURRENT_HOST"; echo ray > /opt/ml/model/model.txt'
    est = Estimator(
        image_uri=image,
        container_entry_point=["sh", "-c", script],
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        sagemaker_session=ray_session,
    )
    est.fit(wait=True, logs=False)
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = log_lines(ray_session, job["TrainingJobName"])
    assert lines[0].startswith(f"[trainforge] executor: container {image} (docker "), lines[0]
    assert "in a container on algo-1" in lines
    image_id = docker_engine.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    assert job["Lineage"]["Container"] == {"Image": image, "Digest": image_id}
    assert model_files(ray_server, str(est.model_data)) == {"model.txt": b"ray\n"}
