"""The reporter over real HTTP, and whole supervisor runs as real processes against a small agent server.

The agent server below is a stdlib HTTP server that follows the agent API of the runtime's contract
(status transitions checked with the real status table, log lines keyed by (host, seq)); it lets these
tests run without the trainforge server.
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

import trainforge
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.runtime.launch import InstanceInfo, SupervisorConfig, read_result, write_config
from trainforge.runtime.reporter import Reporter
from trainforge.runtime.sandbox import probe
from trainforge.spec.status import PRIMARY_OF, SecondaryStatus, can_transition, is_terminal
from trainforge.storage import LocalObjectStore

TOKEN = "agent-secret"


@dataclass
class JobState:
    status: SecondaryStatus = SecondaryStatus.STARTING
    stop_requested: bool = False
    transitions: list[tuple[str, str, str | None]] = field(default_factory=list)
    lines: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    line_posts: int = 0
    max_seq_at_status: list[int] = field(default_factory=list)


class AgentServer:
    """The agent routes, in memory. ``fail_next`` answers that many requests with 503 before handling
    them; ``fail_after`` handles that many log posts and then answers 503 anyway (the client resends)."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        self.lock = threading.Lock()
        self.fail_next = 0
        self.fail_after = 0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                code, reply = server.handle(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_job(self, name: str) -> JobState:
        with self.lock:
            self.jobs[name] = JobState()
            return self.jobs[name]

    def request_stop(self, name: str) -> None:
        with self.lock:
            job = self.jobs[name]
            if not is_terminal(job.status):
                job.stop_requested = True
                job.status = SecondaryStatus.STOPPING
                job.transitions.append(("Stopping", "Stopping the training job", None))

    def _state(self, job: JobState) -> dict[str, Any]:
        return {
            "TrainingJobStatus": PRIMARY_OF[job.status].value,
            "SecondaryStatus": job.status.value,
            "stop_requested": job.stop_requested,
        }

    def handle(self, path: str, auth: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            self.requests += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": {"code": "ServerUnavailable", "message": "try later", "details": {}}}
            if auth != f"Bearer {TOKEN}":
                return 401, {"error": {"code": "AccessDenied", "message": "bad token", "details": {}}}
            parts = path.strip("/").split("/")
            name, route = parts[3], parts[4]
            job = self.jobs.get(name)
            if job is None:
                return 404, {"error": {"code": "ResourceNotFound", "message": "no such job", "details": {}}}
            if route == "heartbeat":
                return 200, self._state(job)
            if route == "logs":
                inserted = 0
                for line in body["lines"]:
                    key = (body["host"], line["seq"])
                    if key not in job.lines:
                        job.lines[key] = line
                        inserted += 1
                job.line_posts += 1
                if self.fail_after > 0:
                    self.fail_after -= 1
                    return 503, {"error": {"code": "ServerUnavailable", "message": "lost reply", "details": {}}}
                return 200, {"inserted": inserted}
            if route == "status":
                new = SecondaryStatus(body["status"])
                if not can_transition(job.status, new):
                    msg = f"cannot go from {job.status} to {new}"
                    return 409, {"error": {"code": "ResourceInUse", "message": msg, "details": {}}}
                job.status = new
                job.transitions.append((new.value, body["message"], body.get("failure_reason")))
                job.max_seq_at_status.append(max((seq for _, seq in job.lines), default=-1))
                return 200, self._state(job)
            return 404, {"error": {"code": "ResourceNotFound", "message": "no route", "details": {}}}

    def messages(self, name: str) -> list[str]:
        with self.lock:
            job = self.jobs[name]
            return [job.lines[key]["message"] for key in sorted(job.lines)]


@pytest.fixture
def agent_server() -> Iterator[AgentServer]:
    srv = AgentServer()
    yield srv
    srv.close()


def client_for(url: str, name: str, server_file: Path | None = None) -> AgentClient:
    return AgentClient(locator=ServerLocator(url, server_file), token=TOKEN, job_name=name, host="algo-1")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- reporter


def test_reporter_delivers_every_line_once_in_order_despite_failures(agent_server: AgentServer) -> None:
    job = agent_server.add_job("rep")
    agent_server.fail_next = 2
    agent_server.fail_after = 2  # two batches are stored but their replies are lost: resent, never doubled
    reporter = Reporter(client_for(agent_server.url, "rep"), max_lines=50)
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
    seqs = sorted(seq for _, seq in job.lines)
    assert seqs == list(range(1001))
    assert job.lines[("algo-1", 1000)]["message"] == "after status"
    # per stream, lines keep their order
    for stream in ("stdout", "stderr"):
        got = [job.lines[k]["message"] for k in sorted(job.lines) if job.lines[k]["stream"] == stream]
        assert got[:500] == [f"{stream} {i}" for i in range(500)]
    # the status arrived after all 1000 lines queued before it, and before the line queued after it
    assert job.max_seq_at_status == [999]
    assert job.line_posts > 1000 // 50


def test_reporter_finds_a_moved_server(tmp_path: Path) -> None:
    first = AgentServer()
    first.add_job("mv")
    url = first.url
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps({"url": url, "pid": 1}))
    reporter = Reporter(client_for(url, "mv", server_file), flush_interval=0.01)
    reporter.start()
    reporter.line("stdout", "one")
    wait_for(lambda: len(first.jobs["mv"].lines) == 1)
    first.close()
    reporter.line("stdout", "two")
    time.sleep(0.5)  # let a few attempts fail against the dead address
    second = AgentServer()
    try:
        job = second.add_job("mv")
        server_file.write_text(json.dumps({"url": second.url, "pid": 2}))
        assert reporter.close(timeout=30)
        assert [line["message"] for line in job.lines.values()] == ["two"]
        assert job.lines[("algo-1", 1)]["seq"] == 1
    finally:
        second.close()


def test_reporter_conflict_and_gone(agent_server: AgentServer) -> None:
    agent_server.add_job("c")
    reporter = Reporter(client_for(agent_server.url, "c"))
    reporter.start()
    bad = reporter.status("Completed", "skipping steps")  # Starting -> Completed is illegal: 409
    good = reporter.status("Downloading", "ok")
    assert good.wait(10) and bad.outcome is ReplyKind.CONFLICT and good.delivered
    del agent_server.jobs["c"]
    gone_ticket = reporter.status("Training", "x")
    reporter.line("stdout", "dropped")
    assert reporter.close(timeout=10)
    assert gone_ticket.outcome is ReplyKind.GONE
    assert reporter.gone


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
    def __init__(self, tmp_path: Path, server: AgentServer) -> None:
        self.tmp = tmp_path
        self.server = server
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
        self.server.add_job(name)
        cfg = SupervisorConfig(
            job_name=name,
            host="algo-1",
            hosts=["algo-1"],
            spec=spec,
            server_url=self.server.url,
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

    def run(self, spec: dict[str, Any], **kwargs: Any) -> JobState:
        proc = self.start(spec, **kwargs)
        rc = proc.wait(timeout=240)
        log = (self.root(spec["TrainingJobName"]) / "supervisor.log").read_text()
        assert rc == 0, log
        return self.server.jobs[spec["TrainingJobName"]]


@pytest.fixture
def launcher(tmp_path: Path, agent_server: AgentServer) -> Launcher:
    return Launcher(tmp_path, agent_server)


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


def statuses(job: JobState) -> list[str]:
    return [status for status, _, _ in job.transitions]


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
    reason = job.transitions[-1][2]
    assert reason is not None
    assert reason.startswith('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback')
    assert "ValueError: bad value for lr" in reason
    assert reason.endswith('train.py --lr -1"')
    assert launcher.store.exists("s3://bkt/out/bad-job/output/model.tar.gz")


def test_failure_file_wins(launcher: Launcher) -> None:
    script = (
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('custom failure text')\n"
        "sys.exit(3)\n"
    )
    source = upload_source(launcher.store, "ff-job", {"train.py": script})
    hps = {"sagemaker_program": "train.py", "sagemaker_submit_directory": source}  # unencoded values work too
    job = launcher.run(make_spec("ff-job", hps))
    assert job.transitions[-1] == ("Failed", "Training job failed", "AlgorithmError: custom failure text")


def test_missing_channel_data_fails_before_training(launcher: Launcher) -> None:
    hps = {"sagemaker_program": '"train.py"'}
    channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://bkt/nothing/"}}}]
    job = launcher.run(make_spec("empty-ch", hps, InputDataConfig=channels))
    assert statuses(job) == ["Starting", "Downloading", "Failed"]
    assert job.transitions[-1][2] == "ClientError: channel 'train': no objects found under s3://bkt/nothing/"
    assert not launcher.store.exists("s3://bkt/out/empty-ch/output/model.tar.gz")  # nothing ran, nothing to upload


def test_unsafe_source_archive_fails(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "evil", {"train.py": "print(1)", "../evil.py": "x"})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    job = launcher.run(make_spec("evil", hps))
    reason = job.transitions[-1][2]
    assert reason == f"ClientError: source archive {source}: member '../evil.py' has a '..' path component"
    assert list((launcher.root("evil") / "opt/ml/code").iterdir()) == []
    assert not (launcher.root("evil") / "opt/ml/evil.py").exists()


def test_no_entry_point(launcher: Launcher) -> None:
    job = launcher.run(make_spec("no-ep", {"num_round": "10"}))
    assert statuses(job) == ["Starting", "Failed"]
    reason = job.transitions[-1][2] or ""
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
    assert statuses(launcher.server.jobs["sbx-stop"])[-2:] == ["Stopping", "Stopped"]
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
    job = launcher.server.jobs["stop-job"]
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
    assert statuses(launcher.server.jobs["term"])[-2:] == ["Stopping", "Stopped"]


def test_unreachable_server_at_start_loses_nothing(launcher: Launcher) -> None:
    source = upload_source(launcher.store, "flaky", {"train.py": "for i in range(300):\n    print('line', i)\n"})
    hps = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)}
    launcher.server.fail_next = 5
    launcher.server.fail_after = 2
    job = launcher.run(make_spec("flaky", hps))
    assert statuses(job)[-1] == "Completed"
    messages = launcher.server.messages("flaky")
    assert [m for m in messages if m.startswith("line ")] == [f"line {i}" for i in range(300)]
    assert sorted(seq for _, seq in job.lines) == list(range(len(job.lines)))


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
    reason = job.transitions[-1][2] or ""
    assert reason.startswith("AlgorithmError: InstallRequirementsError: ")
    assert "no-such-local-package-dir" in reason
