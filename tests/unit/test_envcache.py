"""Image environments: keys, the build-once cache, waiting for another builder, layers, server reuse.

Builds are real uv builds, kept offline and fast: images pin only tiny wheels written by the test into a
find-links folder (``UV_NO_INDEX``), or nothing at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.wait import wait_for
from trainforge.runtime.envcache import (
    BUILDER_VERSION,
    META_FILE,
    ImageEnvironments,
    Interpreter,
    env_key,
    installed_distributions,
    interpreter_of,
    is_ready,
    layer_key,
    names_local_files,
    unsatisfied_pins,
)
from trainforge.runtime.failure import JobFailed
from trainforge.runtime.stopping import StopReason, StopRequested, StopSignal
from trainforge.spec.images import Image

PY = Interpreter("3.11.7", "/usr/bin/python3.11")
EMPTY = Image("trainforge/test-empty:1", "test", "1", ())


def test_env_key_hashes_python_pins_and_builder_only() -> None:
    key = env_key(PY, ["b==2", "a==1"])
    assert len(key) == 32
    assert key == env_key(PY, ["a==1", "b==2", "a==1", " "])
    assert key != env_key(PY, ["a==1", "b==3"])
    assert key != env_key(Interpreter("3.11.8", PY.executable), ["a==1", "b==2"])
    assert key != env_key(Interpreter(PY.version, "/opt/other/python3.11"), ["a==1", "b==2"])


def test_layer_key_is_base_plus_exact_requirements_text() -> None:
    base = env_key(PY, ["a==1"])
    assert layer_key(base, "six\n") == layer_key(base, "six\n")
    assert layer_key(base, "six\n") != layer_key(base, "six==1.17.0\n")
    assert layer_key(base, "six\n") != layer_key(env_key(PY, ["a==2"]), "six\n")
    assert layer_key(base, "six\n") != base


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("six\npandas>=2  # comment\n--extra-index-url https://mirror/simple\n", False),
        ("# ./not-a-path in a comment\nrequests[socks]==2.32.3\n", False),
        ("./mypkg\n", True),
        ("/abs/wheel.whl\n", True),
        ("-e .\n", True),
        ("-r other.txt\n", True),
        ("--find-links ./wheels\nsix\n", True),
        ("pkg @ file:///srv/pkg.whl\n", True),
        ("pkg @ ./pkg\n", True),
    ],
)
def test_requirements_naming_local_files(text: str, local: bool) -> None:
    assert names_local_files(text) is local


def test_unsatisfied_pins_compare_exact_versions_and_normalized_names() -> None:
    installed = {"scikit-learn": "1.2.2", "numpy": "1.26.4", "torch": "2.13.0+cpu"}
    pins = ["Scikit_Learn==1.2.2", "numpy==1.26.4", "torch==2.13.0+cpu", "scipy==1.11.4", "pandas>=2"]
    assert unsatisfied_pins(pins, installed) == ["scipy==1.11.4", "pandas>=2"]
    assert unsatisfied_pins(["numpy==1.26"], installed) == ["numpy==1.26"]


def test_interpreter_identity_in_process_and_probed_agree() -> None:
    here = interpreter_of(sys.executable)
    assert here.minor == f"{sys.version_info.major}.{sys.version_info.minor}"
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    assert interpreter_of(base) == here  # a subprocess probe when sys.executable is a virtual environment's
    dists = installed_distributions(sys.executable)
    assert dists["pytest"] == metadata.version("pytest")


# ------------------------------------------------------------------------------------------- real builds


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel whose module ``name`` has ``VERSION = version``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: trainforge-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


@dataclass
class Harness:
    root: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    stop: StopSignal = field(default_factory=StopSignal)

    def environments(self, reuse_server: str = "never") -> ImageEnvironments:
        return ImageEnvironments(
            root=self.root,
            server_python=sys.executable,
            env=self.env,
            sink=lambda stream, line: self.lines.append(line),
            on_status=self.statuses.append,
            stop=self.stop,
            reuse_server=reuse_server,
        )

    def log(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder, "tfdemo", "0.1")
    make_wheel(folder, "tfdemo", "0.2")
    make_wheel(folder, "tfother", "0.1")
    return folder


@pytest.fixture
def harness(tmp_path: Path, wheels: Path) -> Harness:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_FIND_LINKS": str(wheels),
            "UV_NO_INDEX": "1",
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        }
    )
    return Harness(root=tmp_path / "envs", env=env)


def run_python(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_an_image_is_built_once_then_reused(harness: Harness) -> None:
    image = Image("trainforge/test-demo:1", "test", "1", ("tfdemo==0.1",))
    python = harness.environments().prepare(image)
    env_dir = Path(python).parent.parent
    assert env_dir.parent == harness.root and is_ready(env_dir)
    assert harness.statuses == ["Preparing the training environment trainforge/test-demo:1 (uv)"]
    assert f"Preparing the training environment trainforge/test-demo:1 with uv into {env_dir}" in harness.lines
    assert any("tfdemo==0.1" in line for line in harness.lines), "uv's output is part of the job log"
    meta = json.loads((env_dir / META_FILE).read_text())
    assert (meta["image"], meta["key"], meta["builder"]) == ("trainforge/test-demo:1", env_dir.name, BUILDER_VERSION)
    # Built in a temporary directory and renamed: the environment works where it ended up.
    prefix, version = run_python(python, "import sys, tfdemo; print(sys.prefix, tfdemo.VERSION)").split()
    assert (prefix, version) == (str(env_dir), "0.1")
    assert [p.name for p in harness.root.iterdir() if p.name.startswith(".tmp-")] == []

    harness.lines.clear()
    harness.statuses.clear()
    assert harness.environments().prepare(image) == python
    assert harness.statuses == ["Reusing training environment trainforge/test-demo:1"]
    assert harness.lines == [f"Reusing training environment trainforge/test-demo:1 ({env_dir})"]


def test_the_server_interpreter_image_builds_nothing(harness: Harness) -> None:
    current = Image("trainforge/python:current", "python", "current", (), python=None)
    assert harness.environments().prepare(current) == sys.executable
    assert harness.statuses == [] and not harness.root.exists()


def test_a_second_builder_waits_and_reuses_what_the_first_built(harness: Harness) -> None:
    key = env_key(interpreter_of(sys.executable), EMPTY.requirements)
    harness.root.mkdir(parents=True)
    held = FileLock(str(harness.root / f"{key}.lock"))
    held.acquire()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(harness.environments().prepare(EMPTY))) for _ in "ab"]
    for t in threads:
        t.start()
    waiting = "Waiting for another job to finish building the training environment trainforge/test-empty:1"
    wait_for(lambda: harness.lines.count(waiting) == 2, what="both builders to wait for the lock")
    assert not is_ready(harness.root / key)
    held.release()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and results[0] == results[1] == str(harness.root / key / "bin" / "python")
    built = [line for line in harness.lines if line.startswith("Preparing the training environment")]
    reused = [line for line in harness.lines if line.endswith("built meanwhile by another job")]
    assert (len(built), len(reused)) == (1, 1), harness.log()


def test_a_stop_ends_the_wait(harness: Harness) -> None:
    key = env_key(interpreter_of(sys.executable), EMPTY.requirements)
    harness.root.mkdir(parents=True)
    held = FileLock(str(harness.root / f"{key}.lock"))
    held.acquire()
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            harness.environments().prepare(EMPTY)
        except StopRequested as exc:
            errors.append(exc)

    thread = threading.Thread(target=prepare)
    thread.start()
    wait_for(lambda: any(line.startswith("Waiting for another job") for line in harness.lines), what="the wait")
    harness.stop.request(StopReason.USER)
    thread.join(timeout=30)
    held.release()
    assert len(errors) == 1 and isinstance(errors[0], StopRequested)
    assert not is_ready(harness.root / key)


def test_a_failed_build_leaves_nothing_and_names_the_package(harness: Harness) -> None:
    image = Image("trainforge/test-bad:1", "test", "1", ("tfmissing-zz9==1.0",))
    key = env_key(interpreter_of(sys.executable), image.requirements)
    stale = harness.root / f".tmp-{key}-999999"
    stale.mkdir(parents=True)  # left by a builder that died
    with pytest.raises(JobFailed) as info:
        harness.environments(reuse_server="auto").prepare(image)
    assert info.value.reason.startswith("InternalServerError: cannot build the training environment trainforge/")
    assert "tfmissing-zz9" in info.value.reason
    assert "The server's interpreter lacks tfmissing-zz9==1.0" in harness.log()
    assert sorted(p.name for p in harness.root.iterdir()) == [f"{key}.lock"]


def test_requirements_are_layered_on_the_image_and_cached(harness: Harness, tmp_path: Path) -> None:
    image = Image("trainforge/test-demo:1", "test", "1", ("tfdemo==0.1",))
    code = tmp_path / "code"
    code.mkdir()
    # Unpinned tfdemo is already satisfied by the image (0.1), as pip in a SageMaker container would see it.
    (code / "requirements.txt").write_text("tfdemo\ntfother==0.1\n")
    python = harness.environments().prepare(image, code_dir=code)
    layer = Path(python).parent.parent
    base_key = env_key(interpreter_of(sys.executable), image.requirements)
    assert layer.name == layer_key(base_key, "tfdemo\ntfother==0.1\n") and is_ready(layer)
    assert run_python(python, "import tfdemo, tfother; print(tfdemo.VERSION, tfother.VERSION)") == "0.1 0.1"
    base_python = str(harness.root / base_key / "bin" / "python")
    assert run_python(base_python, "import importlib.util as u; print(u.find_spec('tfother'))") == "None"
    assert json.loads((layer / META_FILE).read_text())["image"] == "trainforge/test-demo:1 + requirements.txt"
    assert json.loads((harness.root / base_key / META_FILE).read_text())["image"] == "trainforge/test-demo:1"

    harness.lines.clear()
    harness.statuses.clear()
    assert harness.environments().prepare(image, code_dir=code) == python
    assert harness.statuses == ["Reusing training environment trainforge/test-demo:1"]
    assert not any(line.startswith("Preparing") for line in harness.lines)


def test_local_requirements_and_packages_get_a_per_job_layer(harness: Harness, tmp_path: Path, wheels: Path) -> None:
    image = Image("trainforge/test-demo:1", "test", "1", ("tfdemo==0.1",))
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text(f"{wheels / 'tfother-0.1-py3-none-any.whl'}\n")
    job_venv = tmp_path / "job" / "venv"
    python = harness.environments().prepare(image, code_dir=code, job_venv=job_venv)
    assert python == str(job_venv / "bin" / "python")
    assert run_python(python, "import tfdemo, tfother; print(tfdemo.VERSION, tfother.VERSION)") == "0.1 0.1"
    assert sorted(p.name for p in harness.root.iterdir() if not p.name.endswith(".lock")) == [
        env_key(interpreter_of(sys.executable), image.requirements)
    ]


def test_reuse_server_auto_runs_in_the_server_interpreter_when_every_pin_is_there(harness: Harness) -> None:
    pins = (f"scikit-learn=={metadata.version('scikit-learn')}", f"numpy=={metadata.version('numpy')}")
    image = Image("trainforge/test-sklearn:1", "test", "1", pins)
    assert harness.environments(reuse_server="auto").prepare(image) == sys.executable
    assert any("TRAINFORGE_ENV_REUSE_SERVER=auto" in line for line in harness.lines)
    assert harness.statuses == [] and not harness.root.exists()
