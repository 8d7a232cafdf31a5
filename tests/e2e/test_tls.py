"""Encryption in transit end to end: ``trainforge server start --tls self-signed`` serves https, the SDK's
quick-start flow, the CLI, ``@remote`` and the job's supervisors all verify it with ``TRAINFORGE_CA_BUNDLE``, a
client without the bundle is refused with one clear line, and a non-loopback bind needs TLS or ``--insecure``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_iris

import trainforge
from tests.support.server import kill_supervisors
from trainforge.errors import AuthError
from trainforge.inputs import TrainingInput
from trainforge.server import tls
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any ``TRAINFORGE_*`` variable, pointed at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["TRAINFORGE_HOME"] = str(home)
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``trainforge ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "trainforge.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``error: ...`` line of a CLI command that failed (no traceback)."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.removeprefix("error: ").strip()


@dataclass(frozen=True)
class TlsServer:
    home: Path
    env: dict[str, str]
    """The environment of a client on this machine that has not set ``TRAINFORGE_CA_BUNDLE``."""

    @property
    def record(self) -> dict[str, object]:
        value: dict[str, object] = json.loads((self.home / "server.json").read_text())
        return value

    @property
    def url(self) -> str:
        return str(self.record["url"])

    @property
    def cert(self) -> Path:
        return self.home / "tls" / "cert.pem"

    @property
    def trusting_env(self) -> dict[str, str]:
        return {**self.env, "TRAINFORGE_CA_BUNDLE": str(self.cert)}

    def refused_message(self) -> str:
        return (
            f"cannot verify the TLS certificate of {self.url} (self-signed certificate): set TRAINFORGE_CA_BUNDLE "
            f"to the server's CA certificate (for --tls self-signed: {self.cert})"
        )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[TlsServer]:
    """One server per module, started by the CLI with ``--tls self-signed``; stopped by the CLI afterwards."""
    home = tmp_path_factory.mktemp("tls") / "home"
    env = base_env(home, TRAINFORGE_STOP_GRACE_SECONDS="5", TRAINFORGE_ENVS_DIR=str(envs_dir))
    started = cli(env, "server", "start", "--tls", "self-signed")
    assert started.returncode == 0, started.stderr
    server = TlsServer(home, env)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.record["cert"] == str(server.cert) and server.record["self_signed"] is True
        assert f"export TRAINFORGE_CA_BUNDLE={server.cert}" in started.stdout
        yield server
    finally:
        stopped = cli(env, "server", "stop", "--timeout", "10")  # no CA bundle needed to stop one's own server
        kill_supervisors(home)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_quick_start_over_https_with_the_ca_bundle(
    tls_server: TlsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = load_iris(as_frame=True).frame.rename(columns={"target": "species"})
    df.to_csv(tmp_path / "iris.csv", index=False)
    sess = trainforge.Session(settings=Settings(home=tls_server.home, ca_bundle=tls_server.cert))
    assert sess.client.base_url == tls_server.url
    uri = sess.upload_data(str(tmp_path / "iris.csv"), key_prefix="iris")
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(EXAMPLES / "sklearn_iris" / "src"),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"C": 0.5},
        sagemaker_session=sess,
    )
    est.fit({"train": TrainingInput(uri, content_type="text/csv")})  # statuses and logs stream over https
    out = capsys.readouterr().out
    assert "training on 150 rows, 4 features, C=0.5" in out
    assert "Completed - Training job completed" in out
    name = est.latest_training_job.name
    assert est.latest_training_job.describe()["TrainingJobStatus"] == "Completed"

    # The supervisor reported every status over https: it was handed the server's certificate to verify it with.
    config = json.loads(next(tls_server.home.glob(f"jobs/{name}/*/supervisor.json")).read_text())
    assert config["server_url"] == tls_server.url
    assert config["ca_bundle_pem"] == tls_server.cert.read_text()

    sess.download_data(str(tmp_path / "out"), bucket="trainforge-default", key_prefix=f"{name}/output/model.tar.gz")
    with tarfile.open(tmp_path / "out" / "model.tar.gz") as tar:
        model_bytes = tar.extractfile("model.joblib").read()  # type: ignore[union-attr]
    model = joblib.load(io.BytesIO(model_bytes))
    assert model.score(df.drop(columns=["species"]), df["species"]) > 0.9

    logs = cli(tls_server.trusting_env, "jobs", "logs", name)
    assert logs.returncode == 0 and "training on 150 rows" in logs.stdout, logs.stderr
    described = cli(tls_server.trusting_env, "jobs", "describe", name, "--output", "json")
    assert described.returncode == 0 and json.loads(described.stdout)["TrainingJobStatus"] == "Completed"


def test_remote_function_over_https(tls_server: TlsServer, tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """
            from trainforge.remote_function import remote

            @remote(instance_type="ml.m5.large")
            def add(a, b):
                return a + b

            print("RESULT", add(2, 3))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=tls_server.trusting_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0 and "RESULT 5" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_clients_without_the_ca_bundle_are_refused_with_the_fix(tls_server: TlsServer, tmp_path: Path) -> None:
    expected = tls_server.refused_message()
    with pytest.raises(AuthError) as info:
        trainforge.Session(settings=Settings(home=tls_server.home))
    assert info.value.message == expected

    token = (tls_server.home / "token").read_text().strip()
    wrong_ca = tls.ensure_self_signed(tmp_path / "other", ["127.0.0.1"]).cert
    for settings in (
        Settings(home=tls_server.home, endpoint=tls_server.url, token=token),
        Settings(home=tmp_path / "elsewhere", endpoint=tls_server.url, token=token, ca_bundle=wrong_ca),
    ):
        with pytest.raises(AuthError, match=r"^cannot verify the TLS certificate of https://127\.0\.0\.1:\d+ "):
            trainforge.Session(settings=settings).list_training_jobs()

    assert refusal(cli(tls_server.env, "jobs", "list")) == expected
    assert refusal(cli(tls_server.env, "server", "status")) == expected
    with_endpoint = {**tls_server.env, "TRAINFORGE_ENDPOINT": tls_server.url, "TRAINFORGE_TOKEN": token}
    assert refusal(cli(with_endpoint, "jobs", "list")) == expected  # the home's server.json names the file

    trusted = cli(tls_server.trusting_env, "server", "status")
    assert trusted.returncode == 0 and f"running at {tls_server.url}" in trusted.stdout


def test_plain_http_to_the_https_port_fails_clearly(tls_server: TlsServer) -> None:
    plain = "http://" + tls_server.url.removeprefix("https://")
    token = (tls_server.home / "token").read_text().strip()
    env = {**tls_server.trusting_env, "TRAINFORGE_ENDPOINT": plain, "TRAINFORGE_TOKEN": token}
    line = refusal(cli(env, "jobs", "list"))
    assert line.startswith(f"cannot talk to the trainforge server at {plain}: it serves https; use {tls_server.url}")


def test_a_non_loopback_server_needs_tls_or_insecure(tmp_path: Path) -> None:
    env = base_env(tmp_path / "home")
    refused = cli(env, "server", "start", "--host", "0.0.0.0")
    assert refused.returncode == 2
    line = refusal(refused)
    assert line.startswith("refusing to serve on --host 0.0.0.0 (TRAINFORGE_HOST) without TLS: API tokens and job")
    assert "--tls-cert CERT --tls-key KEY (or --tls self-signed)" in line and "--insecure" in line
    assert not (tmp_path / "home" / "server.json").exists()

    direct = subprocess.run(
        [sys.executable, "-m", "trainforge.server"],
        env={**env, "TRAINFORGE_HOST": "0.0.0.0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert direct.returncode == 2 and refusal(direct) == line

    for flags, scheme in ((["--insecure"], "http"), (["--tls", "self-signed"], "https")):
        started = cli(env, "server", "start", "--host", "0.0.0.0", *flags)
        try:
            assert started.returncode == 0, started.stderr
            assert f"trainforge server started {scheme}://127.0.0.1:" in started.stdout
            record = json.loads((tmp_path / "home" / "server.json").read_text())
            assert record["host"] == "0.0.0.0" and record["url"].startswith(f"{scheme}://127.0.0.1:")
        finally:
            assert cli(env, "server", "stop", "--timeout", "10").returncode == 0


def test_a_bad_tls_cert_path_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    env = base_env(tmp_path / "home")
    proc = cli(env, "server", "start", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k"))
    assert proc.returncode == 2
    assert refusal(proc) == (
        f"--tls-cert (TRAINFORGE_TLS_CERT): {tmp_path / 'missing.pem'} does not exist (give the server's "
        "certificate, PEM)"
    )
