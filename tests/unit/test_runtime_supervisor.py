"""The reporter and whole supervisor runs (real processes) against a real trainforge server behind a fault proxy.

The server is the real app (``create_app``, SQLite store, scheduler off) served by uvicorn in this process; the
tests launch the supervisors themselves, so each job is registered as the scheduler would (an agent token hash
and a backend handle). Supervisors and reporters reach the server only through a :class:`FaultProxy`, which
refuses connections, answers 503, drops connections, delays requests or forwards a batch and loses the reply.
"""

from __future__ import annotations

import ast
import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import uvicorn

import trainforge
from tests.support.faultproxy import FaultProxy
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.runtime.launch import InstanceInfo, SupervisorConfig, read_result, write_config
from trainforge.runtime.reporter import Reporter
from trainforge.runtime.sandbox import probe
from trainforge.server.app import create_app
from trainforge.service.agent import hash_token
from trainforge.settings import Settings
from trainforge.spec.status import SecondaryStatus
from trainforge.storage import LocalObjectStore
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

TOKEN = "agent-secret"
ADMIN_TOKEN = "supervisor-tests-admin-token"


@dataclass
class JobView:
    """What the server stored for one job: its transitions, failure reason and log lines by ``(host, seq)``."""

    record: JobRecord
    lines: dict[tuple[str, int], dict[str, Any]]

    @property
    def transitions(self) -> list[tuple[str, str]]:
        """``(status, message)`` of each secondary-status transition after the one the server made at submission
        (``Starting``), oldest first: what the supervisor (or a stop request) did."""
        return [(t.status, t.message or "") for t in self.record.transitions[1:]]

    @property
    def failure_reason(self) -> str | None:
        return self.record.failure_reason


class TrainforgeServer:
    """The real server app in this process (scheduler off), on a loopback port."""

    def __init__(self, home: Path) -> None:
        settings = Settings(home=home, token=ADMIN_TOKEN, stop_grace_seconds=5)
        self.app = create_app(settings, start_scheduler=False)
        self.store: JobStore = self.app.state.store
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server.started)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def close(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def register(self, spec: dict[str, Any]) -> None:
        """Submit ``spec`` (CreateTrainingJob) and mark it launched with agent token ``TOKEN``, as the scheduler
        would before starting its supervisor."""
        reply = self.http.post("/v1/training-jobs", json=spec)
        assert reply.status_code == 200, reply.text
        handle = json.dumps({"backend": "test", "hosts": [], "gpu_ids": []})
        self.store.set_fields(
            spec["TrainingJobName"], agent_token_hash=hash_token(TOKEN), backend="test", backend_handle=handle
        )

    def request_stop(self, name: str) -> None:
        """StopTrainingJob through the API."""
        reply = self.http.post(f"/v1/training-jobs/{name}/stop")
        assert reply.status_code == 200, reply.text

    def job(self, name: str) -> JobView:
        record = self.store.get(name)
        logs = self.store.read_logs(record.id, limit=100_000)
        lines = {
            (r.host, r.seq): {"seq": r.seq, "stream": r.stream, "message": r.message, "cursor": r.cursor} for r in logs
        }
        return JobView(record, lines)

    def messages(self, name: str) -> list[str]:
        """The job's stored log lines in (host, seq) order."""
        job = self.job(name)
        return [job.lines[key]["message"] for key in sorted(job.lines)]


@pytest.fixture(scope="module")
def tf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainforgeServer]:
    server = TrainforgeServer(tmp_path_factory.mktemp("supervisor-server") / "home")
    yield server
    server.close()


@pytest.fixture
def proxy(tf_server: TrainforgeServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(tf_server.url)
    yield fault_proxy
    fault_proxy.close()


def client_for(url: str, name: str, server_file: Path | None = None, *, timeout: float = 10.0) -> AgentClient:
    locator = ServerLocator(url, server_file)
    return AgentClient(locator=locator, token=TOKEN, job_name=name, host="algo-1", timeout=timeout)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- reporter


def test_reporter_delivers_every_line_once_in_order_despite_failures(
    tf_server: TrainforgeServer, proxy: FaultProxy
) -> None:
    tf_server.register(make_spec("rep", {}))
    proxy.fail(2)  # 503 before the server sees anything
    proxy.drop(1, path="/logs")  # connection closed, nothing forwarded
    proxy.lose_replies(2, path="/logs")  # two batches stored but their replies lost: resent, never doubled
    proxy.delay(1.5, 1, path="/logs")  # slower than the client's timeout: stored late, resent meanwhile
    reporter = Reporter(client_for(proxy.url, "rep", timeout=1.0), max_lines=50)
    reporter.start()

    def produce(stream: str) -> None:
        for i in range(500):
            reporter.line(stream, f"{stream} {i}")

    threads = [threading.Thread(target=produce, args=(s,)) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ticket = reporter.status("Downloading", "Downloading input data")
    reporter.line("stdout", "after status")
    assert reporter.close(timeout=60)
    assert ticket.delivered
    assert proxy.pending() == 0  # every fault happened
    job = tf_server.job("rep")
    seqs = sorted(seq for _, seq in job.lines)
    assert seqs == list(range(1001))
    assert job.lines[("algo-1", 1000)]["message"] == "after status"
    # per stream, lines keep their order
    for stream in ("stdout", "stderr"):
        got = [job.lines[k]["message"] for k in sorted(job.lines) if job.lines[k]["stream"] == stream]
        assert got[:500] == [f"{stream} {i}" for i in range(500)]
    # the status arrived after all 1000 lines queued before it, and before the line queued after it
    downloading = next(t for t in job.record.transitions if t.status == "Downloading")
    assert job.lines[("algo-1", 999)]["cursor"] <= downloading.log_cursor < job.lines[("algo-1", 1000)]["cursor"]
    posts = [path for path, outcome in proxy.outcomes if path.endswith("/logs") and outcome != "drop"]
    assert len(posts) > 1000 // 50


def test_reporter_finds_a_moved_server(tmp_path: Path, tf_server: TrainforgeServer) -> None:
    tf_server.register(make_spec("mv", {}))
    first = FaultProxy(tf_server.url)
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps({"url": first.url, "pid": 1}))
    reporter = Reporter(client_for(first.url, "mv", server_file), flush_interval=0.01)
    reporter.start()
    reporter.line("stdout", "one")
    wait_for(lambda: len(tf_server.job("mv").lines) == 1)
    first.close()  # the server is gone from that address: connections refused
    reporter.line("stdout", "two")
    time.sleep(0.5)  # let a few attempts fail against the dead address
    second = FaultProxy(tf_server.url)  # the server is back on another port
    try:
        server_file.write_text(json.dumps({"url": second.url, "pid": 2}))
        assert reporter.close(timeout=30)
        job = tf_server.job("mv")
        assert [job.lines[k]["message"] for k in sorted(job.lines)] == ["one", "two"]
        assert job.lines[("algo-1", 1)]["message"] == "two"
        assert any(path.endswith("/logs") for path, _ in second.outcomes)
    finally:
        second.close()


def test_reporter_conflict_and_gone(tf_server: TrainforgeServer, proxy: FaultProxy) -> None:
    tf_server.register(make_spec("c", {}))
    reporter = Reporter(client_for(proxy.url, "c"))
    reporter.start()
    bad = reporter.status("Completed", "skipping steps")  # Starting -> Completed is illegal: 409
    good = reporter.status("Downloading", "ok")
    assert good.wait(10) and bad.outcome is ReplyKind.CONFLICT and good.delivered
    # the server ends the job (as its scheduler does when a host is lost): the supervisor's next report is a 409
    tf_server.store.transition("c", SecondaryStatus.FAILED, "Training job failed", failure_reason="host lost")
    ended = reporter.status("Training", "x")
    assert ended.wait(10) and ended.outcome is ReplyKind.CONFLICT
    assert statuses(tf_server.job("c"))[-1] == "Failed"
    # a job the server no longer knows (a 404 from the agent routes) stops all sending
    proxy.fail(1, status=404, path="/status")
    gone_ticket = reporter.status("Uploading", "y")
    reporter.line("stdout", "dropped")
    assert reporter.close(timeout=10)
    assert gone_ticket.outcome is ReplyKind.GONE
    assert reporter.gone
    assert "dropped" not in tf_server.messages("c")


# ------------------------------------------------------------------------------------------- supervisor


def make_spec(name: str, hps: dict[str, str], **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/TrainforgeExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": "trainforge/python:current", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "HyperParameters": hps,
    }
    spec.update(extra)
    return spec


def upload_source(store: LocalObjectStore, name: str, files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    uri = f"s3://bkt/{name}/source/sourcedir.tar.gz"
    store.put_bytes(uri, buf.getvalue())
    return uri


class Launcher:
    def __init__(self, tmp_path: Path, server: TrainforgeServer, proxy: FaultProxy) -> None:
        self.tmp = tmp_path
        self.server = server
        self.proxy = proxy
        self.store = LocalObjectStore(tmp_path / "storage")

    def root(self, name: str) -> Path:
        return self.tmp / "jobs" / name

    def start(
        self,
        spec: dict[str, Any],
        *,
        grace: float = 5.0,
        notice: str | None = None,
        sandbox: Literal["auto", "off"] = "auto",
        memory_gib: float | None = None,
    ) -> subprocess.Popen[bytes]:
        name = spec["TrainingJobName"]
        self.server.register(spec)
        cfg = SupervisorConfig(
            job_name=name,
            host="algo-1",
            hosts=["algo-1"],
            spec=spec,
            server_url=self.proxy.url,
            agent_token=TOKEN,
            storage={"kind": "local", "root": str(self.store.root)},
            stop_grace_seconds=grace,
            instance=InstanceInfo(type="ml.m5.large", vcpus=2, memory_gib=8, gpus=0, effective_vcpus=2, notice=notice),
            python=sys.executable,
            sandbox=sandbox,
            memory_limit_gib=memory_gib,
        )
        path = write_config(self.root(name), cfg)
        log = open(self.root(name) / "supervisor.log", "wb")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(
            [sys.executable, "-m", "trainforge.runtime.supervisor", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, spec: dict[str, Any], **kwargs: Any) -> JobView:
        proc = self.start(spec, **kwargs)
        rc = proc.wait(timeout=240)
        log = (self.root(spec["TrainingJobName"]) / "supervisor.log").read_text()
        assert rc == 0, log
        return self.server.job(spec["TrainingJobName"])


@pytest.fixture
def launcher(tmp_path: Path, tf_server: TrainforgeServer, proxy: FaultProxy) -> Launcher:
    return Launcher(tmp_path, tf_server, proxy)


TRAIN_PY = """
import json, os, sys
print("args", json.dumps(sys.argv[1:]))
print("cwd", os.getcwd() == os.environ["SM_MODULE_DIR"] or os.getcwd())
for key in ("SM_CHANNEL_TRAIN", "SM_MODEL_DIR", "SM_NUM_CPUS", "SM_HP_EPOCHS", "TRAINING_JOB_NAME", "CUSTOM"):
    print(key, os.environ.get(key))
print("leak", [k for k in os.environ if k.startswith("TRAINFORGE_")])
data = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv")).read()
print("data", data.strip())
open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv"), "w").write("scribbled")
os.makedirs(os.path.join(os.environ["SM_MODEL_DIR"], "sub"), exist_ok=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("weights")
open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "extra.txt"), "w").write("extra")
print("to stderr", file=sys.stderr)
"""


def statuses(job: JobView) -> list[str]:
    return [status for status, _ in job.transitions]


def test_successful_job(launcher: Launcher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_SECRET_THING", "x")
    store = launcher.store
    store.put_bytes("s3://bkt/data/train/data.csv", b"1,2,3\n")
    source = upload_source(store, "ok-job", {"train.py": TRAIN_PY})
    hps = {
        "epochs": "10",
        "name": '"abc"',
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": json.dumps(source),
    }
    channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/data/train"}}}]
    spec = make_spec("ok-job", hps, InputDataConfig=channels, Environment={"CUSTOM": "yes"})
    job = launcher.run(spec, notice="note: ml.m5.large runs capped here", sandbox="off")

    assert statuses(job) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job.transitions[2][1] == "Training image download completed. Training in progress."
    root = launcher.root("ok-job").resolve()
    messages = launcher.server.messages("ok-job")
    assert messages[0].startswith("[trainforge] sandbox: off (TRAINFORGE_SANDBOX=off); the code runs unsandboxed")
    assert messages[1] == "note: ml.m5.large runs capped here"
    assert 'args ["--epochs", "10", "--name", "abc"]' in messages
    assert f"SM_CHANNEL_TRAIN {root}/opt/ml/input/data/train" in messages
    assert "SM_NUM_CPUS 2" in messages and "SM_HP_EPOCHS 10" in messages
    assert "TRAINING_JOB_NAME ok-job" in messages and "CUSTOM yes" in messages
    assert "leak []" in messages and "data 1,2,3" in messages and "to stderr" in messages
    assert "Invoking script with the following command:" in messages
    assert any(m.endswith("train.py --epochs 10 --name abc") for m in messages)
    assert sorted(seq for _, seq in job.lines) == list(range(len(job.lines)))
    # the job log mirrors what was sent
    assert (root / "job.log").read_text().splitlines() == messages
    # the stored input object is unchanged although the script overwrote its copy
    assert store.get_bytes("s3://bkt/data/train/data.csv") == b"1,2,3\n"
    archive = root / "tmp" / "check.tar.gz"
    store.download_file("s3://bkt/out/ok-job/output/model.tar.gz", archive)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.txt", "sub"]
    assert store.exists("s3://bkt/out/ok-job/output/output.tar.gz")
    assert (root / "opt/ml/output/success").exists()
    result = read_result(root)
    assert result is not None and result.status == "Completed" and result.delivered


def test_failing_script_reports_algorithm_error(launcher: Launcher) -> None:
    script = "import sys\nprint('starting')\nsys.stdout.flush()\nraise ValueError('bad value for lr')\n"
    source = upload_source(launcher.store, "bad-job", {"train.py": script})
    hps = {"lr": "-1", "sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    job = launcher.run(make_spec("bad-job", hps))
    assert statuses(job) == ["Starting", "Downloading", "Training", "Failed"]
    reason = job.failure_reason
    assert reason is not None
    assert reason.startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback')
    assert "ValueError: bad value for lr" in reason
    assert reason.endswith('train.py --lr -1"')
    # Its model directory stayed empty: no model.tar.gz, and the job records no model artifacts (SageMaker's
    # DescribeTrainingJob has no ModelArtifacts then); the output data is still uploaded.
    assert not launcher.store.exists("s3://bkt/out/bad-job/output/model.tar.gz")
    assert launcher.store.exists("s3://bkt/out/bad-job/output/output.tar.gz")
    assert job.record.model_artifacts == ""


def test_failure_file_wins(launcher: Launcher) -> None:
    script = (
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('custom failure text')\n"
        "sys.exit(3)\n"
    )
    source = upload_source(launcher.store, "ff-job", {"train.py": script})
    hps = {"sagemaker_program": "train.py", "sagemaker_submit_directory": source}  # unencoded values work too
    job = launcher.run(make_spec("ff-job", hps))
    assert job.transitions[-1] == ("Failed", "Training job failed")
    assert job.failure_reason == "AlgorithmError: custom failure text"


def test_missing_channel_data_fails_before_training(launcher: Launcher) -> None:
    hps = {"sagemaker_program": '"train.py"'}
    channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/nothing/"}}}]
    job = launcher.run(make_spec("empty-ch", hps, InputDataConfig=channels))
    assert statuses(job) == ["Starting", "Downloading", "Failed"]
    assert job.failure_reason == "ClientError: channel 'train': no objects found under s3://bkt/nothing/"
    assert not launcher.store.exists("s3://bkt/out/empty-ch/output/model.tar.gz")  # nothing ran, nothing to upload


def test_unsafe_source_archive_fails(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "evil", {"train.py": "print(1)", "../evil.py": "x"})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    job = launcher.run(make_spec("evil", hps))
    reason = job.failure_reason
    assert reason == f"ClientError: source archive {source}: member '../evil.py' has a '..' path component"
    assert list((launcher.root("evil") / "opt/ml/code").iterdir()) == []
    assert not (launcher.root("evil") / "opt/ml/evil.py").exists()


def test_no_entry_point(launcher: Launcher) -> None:
    job = launcher.run(make_spec("no-ep", {"num_round": "10"}))
    assert statuses(job) == ["Starting", "Failed"]
    reason = job.failure_reason or ""
    assert reason.startswith("ClientError: no entry point to run: image 'trainforge/python:current' has no built-in")
    assert "entry_point" in reason


def test_shell_entry_point_and_container_entrypoint(launcher: Launcher, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "run.sh").write_text('echo "sh got: $@"\necho model > "$SM_MODEL_DIR/m"\n')
    hps = {"msg": '"a b"', "sagemaker_program": '"run.sh"', "sagemaker_submit_directory": json.dumps(f"file://{src}")}
    launcher.run(make_spec("sh-job", hps))
    assert "sh got: --msg a b" in launcher.server.messages("sh-job")

    algo = {
        "TrainingImage": "trainforge/python:current",
        "ContainerEntrypoint": ["python3", "-c"],
        "ContainerArguments": ["import os, sys; print('ce', os.getcwd(), sys.argv[1:])", "/opt/ml/model"],
    }
    job = launcher.run(make_spec("ce-job", {}, AlgorithmSpecification=algo), sandbox="off")
    assert statuses(job)[-1] == "Completed"
    root = launcher.root("ce-job").resolve()
    assert f"ce {root}/opt/ml/code ['{root}/opt/ml/model']" in launcher.server.messages("ce-job")
    # in the sandbox the code sees SageMaker's own paths, unmapped
    job = launcher.run(make_spec("ce-sbx", {}, AlgorithmSpecification=algo))
    assert statuses(job)[-1] == "Completed"
    if probe().available:
        assert "ce /opt/ml/code ['/opt/ml/model']" in launcher.server.messages("ce-sbx")


def tmp_mount_points(*paths: Path) -> set[str]:
    """The first component under ``/tmp`` of each of ``paths`` that lies there."""
    return {p.resolve().parts[2] for p in paths if p.resolve().parts[:2] == ("/", "tmp") and len(p.resolve().parts) > 2}


SANDBOXED_PY = """
import json, os
print("paths", os.environ["SM_CHANNEL_TRAIN"], os.environ["SM_MODEL_DIR"], os.getcwd())
print("inode", os.stat("/opt/ml/input/data/train/data.csv").st_ino)
try:
    open("/opt/ml/input/data/train/data.csv", "w").write("scribbled")
    print("wrote the channel")
except OSError as exc:
    print("channel write refused", exc.errno)
open("/opt/ml/model/hard.txt", "w").write("hard-coded path")
print("tmp", sorted(os.listdir("/tmp")))
print("config", json.load(open("/opt/ml/input/config/resourceconfig.json"))["current_host"])
print("home visible", os.path.exists(os.environ["STORE_ROOT"]))
"""


@pytest.mark.skipif(not probe().available, reason=f"bubblewrap does not work here: {probe().reason}")
def test_sandboxed_job_sees_opt_ml_and_read_only_channels(launcher: Launcher) -> None:
    store = launcher.store
    store.put_bytes("s3://bkt/data/train/data.csv", b"1,2,3\n")
    source = upload_source(store, "sbx-job", {"train.py": SANDBOXED_PY})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/data/train/"}}}]
    env = {"STORE_ROOT": str(store.root)}
    job = launcher.run(make_spec("sbx-job", hps, InputDataConfig=channels, Environment=env), memory_gib=1)

    assert statuses(job)[-1] == "Completed", job.transitions
    messages = launcher.server.messages("sbx-job")
    assert messages[0].startswith("[trainforge] sandbox: bubblewrap (mount, pid, ipc namespaces; network: host)")
    assert "memory limit 1 GiB" in messages[0]
    assert "Channel 'train': 1 file(s), 6 bytes, bound read-only (no copy)" in messages
    assert "paths /opt/ml/input/data/train /opt/ml/model /opt/ml/code" in messages
    stored = store.root / "bkt/data/train/data.csv"
    assert f"inode {stored.stat().st_ino}" in messages  # the store's own file: nothing was copied
    assert "channel write refused 30" in messages  # EROFS
    assert store.get_bytes("s3://bkt/data/train/data.csv") == b"1,2,3\n"
    assert "config algo-1" in messages and "home visible False" in messages
    # /tmp is private: empty but for the mount points of what is re-exposed from the host's /tmp (the project's
    # interpreter and sources when the checkout lives there, as on CI)
    listed = next(ast.literal_eval(m[len("tmp ") :]) for m in messages if m.startswith("tmp ["))
    assert set(listed) <= tmp_mount_points(Path(sys.prefix), Path(trainforge.__file__))
    archive = launcher.tmp / "sbx.tar.gz"
    store.download_file("s3://bkt/out/sbx-job/output/model.tar.gz", archive)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["hard.txt"]


@pytest.mark.skipif(not probe().available, reason=f"bubblewrap does not work here: {probe().reason}")
def test_sandboxed_stop_gives_the_code_its_grace_period(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "sbx-stop", {"train.py": STOPPABLE})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    proc = launcher.start(make_spec("sbx-stop", hps))
    wait_for(lambda: "training" in launcher.server.messages("sbx-stop"))
    launcher.server.request_stop("sbx-stop")
    assert proc.wait(timeout=60) == 0
    assert statuses(launcher.server.job("sbx-stop"))[-2:] == ["Stopping", "Stopped"]
    assert "got SIGTERM, saving" in launcher.server.messages("sbx-stop")
    archive = launcher.tmp / "sbx-stop.tar.gz"
    launcher.store.download_file("s3://bkt/out/sbx-stop/output/model.tar.gz", archive)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["partial.txt"]


STOPPABLE = """
import os, signal, sys, time
def on_term(signum, frame):
    print("got SIGTERM, saving")
    open(os.path.join(os.environ["SM_MODEL_DIR"], "partial.txt"), "w").write("partial")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("training", flush=True)
while True:
    time.sleep(0.1)
"""


def test_user_stop(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "stop-job", {"train.py": STOPPABLE})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    proc = launcher.start(make_spec("stop-job", hps))
    wait_for(lambda: "training" in launcher.server.messages("stop-job"))
    launcher.server.request_stop("stop-job")
    assert proc.wait(timeout=60) == 0
    job = launcher.server.job("stop-job")
    assert statuses(job)[-2:] == ["Stopping", "Stopped"]
    assert job.transitions[-1][1] == "Training job stopped"
    assert "got SIGTERM, saving" in launcher.server.messages("stop-job")
    archive = launcher.tmp / "m.tar.gz"
    launcher.store.download_file("s3://bkt/out/stop-job/output/model.tar.gz", archive)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["partial.txt"]


def test_sigterm_and_max_runtime(launcher: Launcher) -> None:
    stubborn = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(600)\n"
    )
    source = upload_source(launcher.store, "mrt", {"train.py": stubborn})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    spec = make_spec("mrt", hps, StoppingCondition={"MaxRuntimeInSeconds": 2})
    started = time.monotonic()
    job = launcher.run(spec, grace=1.0)
    assert time.monotonic() - started < 30
    assert statuses(job)[-2:] == ["Stopping", "MaxRuntimeExceeded"]
    assert job.transitions[-2][1] == "Maximum runtime exceeded, stopping the training job"

    source = upload_source(launcher.store, "term", {"train.py": STOPPABLE})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    proc = launcher.start(make_spec("term", hps))
    wait_for(lambda: "training" in launcher.server.messages("term"))
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    assert statuses(launcher.server.job("term"))[-2:] == ["Stopping", "Stopped"]


def test_server_faults_during_a_job_lose_and_double_nothing(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "flaky", {"train.py": "for i in range(300):\n    print('line', i)\n"})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    proxy = launcher.proxy
    job_log = launcher.root("flaky") / "job.log"
    with proxy.down():  # the server unreachable while the job starts and its code runs to the end
        proc = launcher.start(make_spec("flaky", hps))
        wait_for(lambda: job_log.exists() and "line 299" in job_log.read_text(), timeout=120)
        # and when it is back it misbehaves: 503s, dropped connections, lost replies, a slow reply
        proxy.fail(2)
        proxy.drop(1, path="/logs")
        proxy.lose_replies(2, path="/logs")
        proxy.lose_replies(1, path="/status")
        proxy.delay(1.0, 1, path="/logs")
    assert proc.wait(timeout=240) == 0, (launcher.root("flaky") / "supervisor.log").read_text()
    assert proxy.pending() == 0
    job = launcher.server.job("flaky")
    assert statuses(job)[-1] == "Completed"
    assert statuses(job).count("Completed") == 1
    messages = launcher.server.messages("flaky")
    assert [m for m in messages if m.startswith("line ")] == [f"line {i}" for i in range(300)]
    assert sorted(seq for _, seq in job.lines) == list(range(len(job.lines)))
    assert job_log.read_text().splitlines() == messages


def test_requirements_install_into_job_venv(launcher: Launcher, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "mypkg" / "mypkg").mkdir(parents=True)
    (src / "mypkg" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "mypkg"\nversion = "0.1"\n'
    )
    (src / "mypkg" / "mypkg" / "__init__.py").write_text("VALUE = 42\n")
    (src / "requirements.txt").write_text("./mypkg\n")
    (src / "train.py").write_text("import sys, mypkg, trainforge, sklearn\nprint('value', mypkg.VALUE, sys.prefix)\n")
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(f"file://{src}")}
    job = launcher.run(make_spec("req-job", hps))
    messages = launcher.server.messages("req-job")
    assert statuses(job)[-1] == "Completed", job.transitions
    root = launcher.root("req-job").resolve()
    assert f"value 42 {root}/venv" in messages
    with pytest.raises(ImportError):
        __import__("mypkg")  # never installed into the interpreter running trainforge


def test_requirements_failure(launcher: Launcher, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("./no-such-local-package-dir\n")
    (src / "train.py").write_text("print('never')\n")
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(f"file://{src}")}
    job = launcher.run(make_spec("req-bad", hps))
    assert statuses(job) == ["Starting", "Downloading", "Downloading", "Failed"]
    assert job.transitions[2][1] == "Preparing the training environment trainforge/python:current (uv)"
    reason = job.failure_reason or ""
    assert reason.startswith("AlgorithmError: InstallRequirementsError: ")
    assert "no-such-local-package-dir" in reason
