"""Locked environments: the checked-in locks match the catalogue, builds install exactly a lock (hash-checked),
``requirements.txt`` layers install one stored resolution, and the environment fingerprint has no paths.

Builds are real uv builds kept offline and fast: images pin tiny wheels written by the test into a find-links folder
(``UV_NO_INDEX``), and their locks are generated from them by the same :func:`generate_lock` the catalogue's are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_envcache import Harness, make_wheel
from trainforge.cli.main import main
from trainforge.runtime.envcache import (
    META_FILE,
    env_key,
    environment_record,
    installed_distributions,
    interpreter_of,
    is_ready,
)
from trainforge.runtime.failure import JobFailed
from trainforge.runtime.lineage import environment_fingerprint, environment_lineage
from trainforge.runtime.locks import (
    LOCKS_DIR,
    PYTHON_PLATFORM,
    Lock,
    generate_lock,
    lock_for,
    lock_path,
    lock_problems,
    lockable_images,
    write_lock,
)
from trainforge.runtime.locks.layers import resolution_key, resolution_sha256
from trainforge.spec.images import CATALOGUE, Image
from trainforge.store import open_job_store
from trainforge.store.environment_locks import EnvironmentLockStore

DEMO = Image("trainforge/test-locked:1", "test", "1", ("tfdemo==0.1", "tfneeds==1.0"))


# ------------------------------------------------------------------------------------------- the checked-in locks


@pytest.mark.parametrize("image", lockable_images(), ids=lambda image: image.name)
def test_every_catalogue_image_has_a_lock_of_exactly_its_pins(image: Image) -> None:
    lock = lock_for(image)
    assert lock is not None, f"no {lock_path(image).name}: run trainforge images lock {image.name}"
    assert lock_problems(image, lock) == []
    assert sorted(lock.pins) == sorted(image.requirements)
    assert any(
        line.startswith("# uv ") and f"--python-platform {PYTHON_PLATFORM}" in line for line in lock.text.splitlines()
    )
    # Every package is pinned exactly and carries at least one hash; nothing is left to resolve.
    blocks = re.findall(r"^([A-Za-z0-9][^\s=]*)===?(\S+)((?: \\\n\s+--hash=sha256:[0-9a-f]{64})+)", lock.text, re.M)
    requirement_lines = [line for line in lock.text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(blocks) == len(requirement_lines) == len(lock.packages)
    assert len(lock.packages) >= len(image.requirements)


def test_the_locks_folder_holds_one_lock_per_image_and_nothing_else() -> None:
    assert sorted(p.name for p in LOCKS_DIR.glob("*.txt")) == sorted(lock_path(i).name for i in lockable_images())
    assert lock_for(CATALOGUE["trainforge/python:current"]) is None
    sklearn = lock_for(CATALOGUE["trainforge/sklearn:1.2-1"])
    assert sklearn is not None and sklearn.packages["scikit-learn"] == "1.2.2"
    assert len(sklearn.packages) > len(CATALOGUE["trainforge/sklearn:1.2-1"].requirements)  # transitive ones too
    assert lock_path(CATALOGUE["trainforge/pytorch:2.13-cpu"]).name == "trainforge-pytorch-2.13-cpu.txt"
    torch = lock_for(CATALOGUE["trainforge/pytorch:2.13-gpu"])
    assert torch is not None and torch.packages["torch"] == "2.13.0"  # CUDA torch, not a +cpu build from find-links


def test_a_changed_pin_is_a_drifted_lock(tmp_path: Path) -> None:
    image = CATALOGUE["trainforge/kmeans:1"]
    lock = lock_for(image)
    assert lock is not None
    bumped = Image(image.name, "kmeans", "1", tuple(p.replace("scipy==", "scipy==0.") for p in image.requirements))
    problems = lock_problems(bumped, lock)
    assert any("scipy==0." in p and "locked at" in p for p in problems), problems
    assert any("generated from other pins" in p for p in problems), problems
    dropped = Image(image.name, "kmeans", "1", image.requirements[1:])
    assert lock_problems(dropped, lock) == [
        f"{image.name}: the lock was generated from other pins (catalogue adds nothing, drops "
        f"{[image.requirements[0]]})"
    ]
    assert "no lock file" in lock_problems(image, None)[0]


def test_images_lock_check_exits_1_on_a_drifted_lock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "lock", "--check"]) == 0
    capsys.readouterr()
    image = CATALOGUE["trainforge/kmeans:1"]
    lock = lock_for(image)
    assert lock is not None
    write_lock(
        image, lock.text.replace("# pin: scikit-learn==1.4.2\n", "# pin: scikit-learn==1.4.1\n"), directory=tmp_path
    )
    assert main(["images", "lock", "--check", image.name, "--directory", str(tmp_path), "-o", "json"]) == 1
    out = capsys.readouterr().out
    assert '"Status": "drifted"' in out and "generated from other pins" in out
    assert main(["images", "lock", "--check", "trainforge/nope:1"]) == 2


# ------------------------------------------------------------------------------------------- builds from a lock


@pytest.fixture
def lab(tmp_path: Path) -> Harness:
    """A harness whose find-links folder has tfdemo 0.1/0.2, tfother 0.1 and tfneeds 1.0 (which needs tfdep)."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tfdemo", "0.1")
    make_wheel(wheels, "tfdemo", "0.2")
    make_wheel(wheels, "tfother", "0.1")
    make_wheel(wheels, "tfdep", "3.0")
    needs = make_wheel(wheels, "tfneeds", "1.0")
    _add_dependency(needs, "tfneeds", "1.0", "tfdep")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "UV_FIND_LINKS": str(wheels),
            "UV_NO_INDEX": "1",
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
        }
    )
    return Harness(root=tmp_path / "envs-a", env=env)


def _add_dependency(wheel: Path, name: str, version: str, dependency: str) -> None:
    """Rewrite ``wheel`` so that its METADATA requires ``dependency`` (the RECORD hash updated with it)."""
    import base64
    import hashlib
    import zipfile

    meta_path = f"{name}-{version}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    files[meta_path] = files[meta_path] + f"Requires-Dist: {dependency}\n".encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(files[meta_path]).digest()).rstrip(b"=").decode()
    record_path = f"{name}-{version}.dist-info/RECORD"
    record = [
        f"{meta_path},sha256={digest},{len(files[meta_path])}" if line.startswith(meta_path + ",") else line
        for line in files[record_path].decode().splitlines()
    ]
    files[record_path] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)


def _locks(lab: Harness, directory: Path) -> Lock:
    directory.mkdir(parents=True, exist_ok=True)
    return write_lock(DEMO, generate_lock(DEMO, env=lab.env), directory=directory)


def _python_of(lab: Harness, root: Path, locks: Path, store: EnvironmentLockStore | None = None, **kw: object) -> str:
    from trainforge.runtime.envcache import ImageEnvironments

    environments = ImageEnvironments(
        root=root,
        server_python=sys.executable,
        env=lab.env,
        sink=lambda stream, line: lab.lines.append(line),
        on_status=lab.statuses.append,
        stop=lab.stop,
        resolutions=_StoreResolutions(store) if store is not None else None,
        locks_dir=locks,
    )
    return environments.prepare(DEMO, **kw)  # type: ignore[arg-type]


class _StoreResolutions:
    """The server's store of resolutions, called directly instead of through the agent routes (the e2e test
    tests/e2e/test_locked_environments.py goes through them)."""

    def __init__(self, store: EnvironmentLockStore) -> None:
        self.store = store

    def get(self, key: str) -> str | None:
        record = self.store.get(key)
        return record.resolution if record else None

    def put(self, key: str, resolution: str, python: str) -> str:
        return self.store.put(key, resolution, python)[0].resolution


def run_python(python: str, code: str) -> str:
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_generated_lock_pins_every_transitive_package_with_hashes(lab: Harness, tmp_path: Path) -> None:
    lock = _locks(lab, tmp_path / "locks")
    assert lock.packages == {"tfdemo": "0.1", "tfneeds": "1.0", "tfdep": "3.0"}  # tfdep: transitive
    assert lock.pins == DEMO.requirements and lock_problems(DEMO, lock) == []
    assert lock.text.count("--hash=sha256:") == 3
    assert _locks(lab, tmp_path / "again").text == lock.text, "generating twice gives the same bytes"


def test_two_roots_build_the_identical_environment_from_the_lock(lab: Harness, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lock = _locks(lab, locks)
    first = _python_of(lab, lab.root, locks)
    env_dir = Path(first).parent.parent
    assert env_dir.name == env_key(interpreter_of(sys.executable), DEMO.requirements, lock_sha256=lock.sha256)
    assert f"Installing the lock of {DEMO.name} (3 packages, sha256 {lock.sha256})" in lab.lines
    assert (env_dir / "trainforge-lock.txt").read_text() == lock.text
    assert environment_record(first) == environment_record(str(env_dir / "bin" / "python"))
    assert environment_record(first).lock_sha256 == lock.sha256 and environment_record(first).locked

    second = _python_of(lab, tmp_path / "envs-b", locks)
    assert Path(second).parent.parent != env_dir and is_ready(Path(second).parent.parent)
    a, b = environment_lineage(first, image=DEMO.name), environment_lineage(second, image=DEMO.name)
    assert a == b
    # The build recorded what it installed; a job reads that instead of asking the interpreter, with the same result
    record = environment_record(first)
    assert record.distributions == installed_distributions(first)
    assert record.python_version == interpreter_of(first).version
    assert environment_fingerprint(first, image=DEMO.name, lock_sha256=lock.sha256)["Fingerprint"] == a["Fingerprint"]
    assert a["Distributions"] == {"tfdemo": "0.1", "tfneeds": "1.0", "tfdep": "3.0"}
    assert (a["LockSha256"], a["LayerSha256"], a["Locked"]) == (lock.sha256, None, True)
    assert str(tmp_path) not in str(a)
    # Any difference in what is installed, or in the lock, changes the fingerprint.
    other = environment_fingerprint(first, image=DEMO.name, lock_sha256="0" * 64)
    assert other["Fingerprint"] != a["Fingerprint"]


def test_a_lock_whose_hash_does_not_match_fails_the_build(lab: Harness, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lock = _locks(lab, locks)
    tampered = re.sub(r"(tfdep===3\.0 \\\n\s+--hash=sha256:)[0-9a-f]{64}", r"\g<1>" + "0" * 64, lock.text)
    assert tampered != lock.text
    write_lock(DEMO, tampered, directory=locks)
    with pytest.raises(JobFailed) as info:
        _python_of(lab, lab.root, locks)
    assert info.value.reason.startswith(f"InternalServerError: cannot build the training environment {DEMO.name}")
    assert "hash" in info.value.reason.lower()
    assert [p for p in lab.root.iterdir() if not p.name.endswith(".lock")] == []


def test_a_layer_is_resolved_once_and_the_stored_resolution_installed_elsewhere(lab: Harness, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lock = _locks(lab, locks)
    store = EnvironmentLockStore(open_job_store(f"sqlite:///{tmp_path / 'store.db'}").engine)
    code = tmp_path / "code"
    code.mkdir()
    text = "tfdemo\ntfother\n"  # tfdemo: the base's 0.1 stays, although 0.2 exists
    (code / "requirements.txt").write_text(text)
    key = resolution_key(
        requirements_text=text, base_identity=lock.sha256, python_version=interpreter_of(sys.executable).version
    )

    first = _python_of(lab, lab.root, locks, store, code_dir=code)
    stored = store.get(key)
    assert stored is not None and "tfother==0.1" in stored.resolution and "tfdemo==0.1" in stored.resolution
    assert any(
        line.startswith(f"Resolving requirements.txt on {DEMO.name} with uv (resolution {key})") for line in lab.lines
    )
    assert run_python(first, "import tfdemo, tfother; print(tfdemo.VERSION, tfother.VERSION)") == "0.1 0.1"
    record = environment_record(first)
    assert (record.lock_sha256, record.layer_sha256, record.locked) == (
        lock.sha256,
        resolution_sha256(stored.resolution),
        True,
    )

    lab.lines.clear()
    second = _python_of(lab, tmp_path / "envs-b", locks, store, code_dir=code)
    assert (
        f"Installing the stored resolution {key} of requirements.txt (sha256 {resolution_sha256(stored.resolution)})"
        in lab.lines
    )
    assert not any(line.startswith("Resolving requirements.txt") for line in lab.lines)
    assert environment_lineage(first, image=DEMO.name) == environment_lineage(second, image=DEMO.name)


def test_the_stored_resolution_wins_over_a_new_one(lab: Harness, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lock = _locks(lab, locks)
    store = EnvironmentLockStore(open_job_store(f"sqlite:///{tmp_path / 'store.db'}").engine)
    code = tmp_path / "code"
    code.mkdir()
    text = "tfdemo\n"
    (code / "requirements.txt").write_text(text)
    version = interpreter_of(sys.executable).version
    key = resolution_key(requirements_text=text, base_identity=lock.sha256, python_version=version)
    # Another node resolved first, when tfdemo 0.2 was the one to take: this node installs that, not its own.
    wheel = next((tmp_path / "wheels").glob("tfdemo-0.2-*.whl"))
    import hashlib

    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store.put(key, f"tfdemo==0.2 \\\n    --hash=sha256:{digest}\n", version)
    python = _python_of(lab, lab.root, locks, store, code_dir=code)
    assert run_python(python, "import tfdemo; print(tfdemo.VERSION)") == "0.2"
    assert environment_lineage(python, image=DEMO.name)["Distributions"]["tfdemo"] == "0.2"


def test_requirements_naming_local_files_are_recorded_unlocked(lab: Harness, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    lock = _locks(lab, locks)
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text(f"{next((tmp_path / 'wheels').glob('tfother-*.whl'))}\n")
    python = _python_of(lab, lab.root, locks, code_dir=code, job_venv=tmp_path / "job" / "venv")
    assert python == str(tmp_path / "job" / "venv" / "bin" / "python")
    record = environment_record(python)
    assert (record.lock_sha256, record.layer_sha256, record.locked) == (lock.sha256, None, False)
    base_meta = next(lab.root.glob(f"*/{META_FILE}"))
    assert environment_record(base_meta.parent / "bin" / "python").locked, "the base's own record is untouched"
    lineage = environment_lineage(python, image=DEMO.name)
    assert lineage["Locked"] is False and lineage["Distributions"]["tfother"] == "0.1"


def test_the_server_interpreter_is_unlocked() -> None:
    record = environment_record(sys.executable)
    assert (record.lock_sha256, record.layer_sha256, record.locked) == (None, None, False)
