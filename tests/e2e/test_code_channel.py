"""``enable_network_isolation=True``: the code reaches the job as SageMaker delivers it to an isolated container,
an input channel named ``code`` (``sagemaker_submit_directory=/opt/ml/input/data/code/sourcedir.tar.gz``), for a
framework estimator and for ``@remote`` alike, and the job runs end to end without network.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import trainforge
from tests.support.estimators import script_estimator
from tests.support.server import ServerProcess, kill_supervisors
from trainforge.settings import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    """One server for this module's jobs."""
    home = tmp_path_factory.mktemp("code-channel-home")
    srv = ServerProcess(home, extra_env={"TRAINFORGE_ENVS_DIR": str(envs_dir)}).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(home)


@pytest.fixture
def session(server: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=server.home))


SCRIPT = """
import json, os, socket, sys
from helper import answer
print("code dir:", os.getcwd(), sorted(os.listdir(".")))
print("channels:", sorted(os.listdir("/opt/ml/input/data")))
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), timeout=2).close()
    print("network: reachable")
except OSError as exc:
    print("network: unreachable", type(exc).__name__)
os.makedirs(os.environ["SM_MODEL_DIR"], exist_ok=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "answer.json"), "w") as out:
    json.dump({"answer": answer()}, out)
"""


def test_an_isolated_estimator_gets_its_code_as_the_code_channel(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(SCRIPT)
    (src / "helper.py").write_text("def answer():\n    return 42\n")
    port = server.url.rsplit(":", 1)[1]
    est = script_estimator(session, src, enable_network_isolation=True, hyperparameters={"port": port})
    est.fit(wait=True, logs=False)
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["EnableNetworkIsolation"] is True
    code = [c for c in job["InputDataConfig"] if c["ChannelName"] == "code"]
    assert code and code[0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("sourcedir.tar.gz")
    assert job["HyperParameters"]["sagemaker_submit_directory"] == '"/opt/ml/input/data/code/sourcedir.tar.gz"'
    log = "\n".join(e["message"] for e in session.client.logs(job["TrainingJobName"], limit=10000)["events"])
    assert "'helper.py'" in log and "'train.py'" in log
    assert "channels: ['code']" in log
    assert "network: unreachable" in log
    local = tmp_path / "model.tar.gz"
    session.object_store.download_file(job["ModelArtifacts"]["S3ModelArtifacts"], local)
    import tarfile

    with tarfile.open(local) as tar:
        member = tar.extractfile("answer.json")
        assert member is not None and member.read() == b'{"answer": 42}'


def test_an_isolated_remote_function_returns_its_result(server: ServerProcess, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    code = textwrap.dedent(
        f"""
        import socket
        from trainforge.remote_function import remote

        @remote(enable_network_isolation=True)
        def probe(x):
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                reached = True
            except OSError:
                reached = False
            return x * 2, reached

        print("RESULT", probe(21))
        """
    )
    script = tmp_path / "main.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=server.env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RESULT (42, False)" in proc.stdout
