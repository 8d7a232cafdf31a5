"""The tests' own Docker engine and the test images built from Debian packages: each image runs what the container
tests rely on, and the engine leaves nothing behind when it stops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import docker as docker_support
from tests.support.docker import DockerEngine, TestImages


def test_busybox_image_runs_a_shell(docker_engine: DockerEngine, test_images: TestImages) -> None:
    out = docker_engine.docker("run", "--rm", test_images["busybox"], "sh", "-c", "echo hi; sleep 0; env | grep PATH")
    assert out.stdout.splitlines()[0] == "hi"
    assert "PATH=/usr/local/sbin:" in out.stdout


def test_python_image_has_python_and_a_working_venv(docker_engine: DockerEngine, test_images: TestImages) -> None:
    script = "import sys, ssl, sqlite3, json; print(sys.version_info[:2], sys.executable)"
    out = docker_engine.docker("run", "--rm", test_images["python"], "python3", "-c", script)
    assert out.stdout.strip() == "(3, 11) /usr/bin/python3"
    venv = "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.prefix)' && /tmp/v/bin/pip --version"
    out = docker_engine.docker("run", "--rm", "--network", "none", test_images["python"], "sh", "-c", venv)
    prefix, pip = out.stdout.strip().splitlines()
    assert prefix == "/tmp/v"
    assert pip.startswith("pip ") and "/tmp/v/lib/python3.11/site-packages/pip" in pip


def test_toolkit_image_runs_an_unmodified_script_mode_job(
    docker_engine: DockerEngine, test_images: TestImages, tmp_path: Path
) -> None:
    """sagemaker-training's own ``train`` reads /opt/ml's config, passes the hyperparameters as arguments and
    runs SAGEMAKER_PROGRAM (as SageMaker runs a toolkit container; the host name resolves as on SageMaker)."""
    ml = tmp_path / "ml"
    for sub in ("code", "input/config", "input/data/train", "model", "output"):
        (ml / sub).mkdir(parents=True)
    (ml / "code/train.py").write_text(
        "import argparse, os, sys\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--epochs', type=int)\n"
        "p.add_argument('--model-dir', default=os.environ['SM_MODEL_DIR'])\n"
        "a = p.parse_args()\n"
        "print('epochs', a.epochs, os.environ['SM_CHANNEL_TRAIN'], flush=True)\n"
        "open(os.path.join(a.model_dir, 'model.txt'), 'w').write(str(a.epochs * 2))\n"
    )
    (ml / "input/config/hyperparameters.json").write_text(json.dumps({"epochs": "3"}))
    (ml / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    (ml / "input/config/inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    out = docker_engine.docker(
        *("run", "--rm", "--network", "none", "--hostname", "algo-1", "--add-host", "algo-1:127.0.0.1"),
        *("-v", f"{ml}:/opt/ml", "-e", "SAGEMAKER_PROGRAM=train.py", "-e", "SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/code"),
        test_images["toolkit"],
        "train",
        timeout=180,
    )
    assert "epochs 3 /opt/ml/input/data/train" in out.stdout.splitlines()
    assert "Reporting training SUCCESS" in out.stderr + out.stdout
    assert (ml / "model/model.txt").read_text() == "6"


def test_an_engine_stops_by_its_pid_and_leaves_nothing(docker_engine: DockerEngine, test_images: TestImages) -> None:
    """A second private engine next to the session's: it runs a container, then stopping it ends dockerd (and the
    containerd it started) and removes its directory, while the session's engine goes on."""
    with docker_support.docker_engine() as engine:
        assert engine.host != docker_engine.host
        engine.docker("import", "-", "tftest/empty:1", input="")  # an empty image: no layers to copy
        out = engine.docker("ps", "-q")
        assert out.stdout == ""
        root, pid = engine.root, engine.pid
        assert (root / "docker.sock").exists()
    assert not root.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert docker_engine.docker("run", "--rm", test_images["busybox"], "echo", "still").stdout.strip() == "still"


def test_apt_dependency_groups_take_the_first_usable_alternative_and_virtual_providers() -> None:
    text = (
        "python3.11\n  Depends: python3.11-minimal\n |Depends: media-types\n  Depends: mime-support\n"
        "python3-distutils\n  Depends: <python3:any>\n    python3\n  Recommends: ignored\n"
    )
    parsed = docker_support._parse_depends(text)
    assert parsed["python3.11"] == [[["python3.11-minimal"]], [["media-types"], ["mime-support"]]]
    assert parsed["python3-distutils"] == [[["python3"]]]


def test_no_engine_reason_names_the_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the docker client on PATH no engine is started, and the reason says what to install."""
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = docker_support.engine_unavailable_reason()
    assert reason is not None and "docker" in reason and "apt-get install -y docker.io" in reason
    with pytest.raises(docker_support.EngineUnavailable, match=r"docker\.io"), docker_support.docker_engine():
        pass
