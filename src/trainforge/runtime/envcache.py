"""Image environments: an image's locked requirements built once with uv, cached by content, reused after.

An image (:mod:`trainforge.spec.images`) resolves to its full lock (:mod:`trainforge.runtime.locks`: every
transitive package pinned with hashes), installed with ``uv pip install --require-hashes --no-deps``, so every node
builds the identical environment. The first job that needs it builds ``<envs_root>/<key>``, where ``key`` hashes
the interpreter (version and path), the lock's sha256 and :data:`BUILDER_VERSION`; every later job reuses it. An
image without a lock file (one made outside the catalogue) is built from its pins, as uv resolves them then.

A build runs under ``<envs_root>/<key>.lock`` (one builder per key across processes; another job needing the same
environment waits, and says so in its log) into ``<envs_root>/.tmp-<key>-<pid>``, and is renamed into place only
when complete, so a half-built environment is never used. Environments are relocatable and byte-compiled
(``uv pip install --compile-bytecode``).

A code directory's ``requirements.txt`` is layered on top: a hard-linked clone of the image environment into
which uv installs the requirements, cached as ``<envs_root>/<hash of base key + requirements.txt>``. The layer's
resolution (every package pinned with hashes) is made once and stored (:mod:`trainforge.runtime.locks.layers`,
through ``resolutions``: the server), and installed with ``--require-hashes``, so another node installs the same
packages. Where the requirements name local files (paths, ``-e``, ``-r``/``-c``, ``--find-links``, ``file:``
URLs), whose content the key cannot see, and for a ``setup.py`` package, the layer is built per job at
``<job root>/venv`` as uv resolves it then, and the environment is recorded as unlocked.

Each environment's metadata file (:data:`META_FILE`) records the sha256 of the lock and of the layer resolution
it was built from; :func:`environment_record` reads them back for the job's lineage.

``trainforge/python:current`` runs in the server's interpreter and builds nothing. With
``reuse_server="auto"`` (setting ``TRAINFORGE_ENV_REUSE_SERVER``), any image whose every pin is installed in
the server's interpreter at exactly that version runs there too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from uv import find_uv_bin

from trainforge.runtime.environment import JobEnvironment, run_uv, uv_environment, venv_python
from trainforge.runtime.failure import (
    DiskPhase,
    JobFailed,
    algorithm_error,
    disk_full,
    disk_full_line,
    internal_error,
    is_disk_full,
    is_disk_full_reason,
    mentions_disk_full,
)
from trainforge.runtime.locks import LOCKS_DIR, Lock, lock_for
from trainforge.runtime.locks.layers import (
    ResolutionStore,
    distributions_identity,
    finish_resolution,
    prefer_base,
    resolution_command,
    resolution_key,
    resolution_sha256,
)
from trainforge.runtime.process import LineSink
from trainforge.runtime.stopping import StopSignal
from trainforge.spec.images import Image

BUILDER_VERSION = "2"
META_FILE = "trainforge-env.json"
PINS_FILE = "trainforge-requirements.txt"
LOCK_FILE = "trainforge-lock.txt"
LAYER_LOCK_FILE = "trainforge-layer-lock.txt"
REUSE_MODES = ("auto", "never")
LOCK_POLL_SECONDS = 0.5

_PROBE = (
    "import json, os, platform, sys, importlib.metadata as m\n"
    "dists = {d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}\n"
    "base = os.path.realpath(getattr(sys, '_base_executable', sys.executable))\n"
    "print(json.dumps([platform.python_version(), base, dists if sys.argv[1] == 'dists' else {}]))"
)
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*$")
_LOCAL_LINE = re.compile(
    r"^(\.|/|~|-e\b|--editable\b|-r\b|--requirement\b|-c\b|--constraint\b|-f\b|--find-links\b)|file:|@\s*[./~]"
)


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter: its version and the real path of its base executable."""

    version: str
    executable: str

    @property
    def minor(self) -> str:
        """``"3.11"`` for ``"3.11.7"``."""
        return ".".join(self.version.split(".")[:2])


def normalize_name(name: str) -> str:
    """A distribution name in PEP 503 form (``Scikit_Learn`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _probe(python: str, *, dists: bool) -> tuple[Interpreter, dict[str, str]]:
    """The interpreter ``python`` and (when ``dists``) its installed distributions, name -> version."""
    # Not realpath: a virtual environment's python is a symlink to its base interpreter.
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        return Interpreter(platform.python_version(), base), _own_distributions() if dists else {}
    cmd = [python, "-I", "-c", _PROBE, "dists" if dists else "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
        version, base, found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise internal_error(f"cannot inspect the Python interpreter {python}: {exc}") from None
    return Interpreter(version, base), {normalize_name(k): v for k, v in found.items()}


def _own_distributions() -> dict[str, str]:
    """The running interpreter's distributions (normalized name -> version), read from a per-user cache file while none
    of its site-packages directories changed since it was written (installing, upgrading or removing a distribution
    changes its directory's mtime), else from the metadata of every distribution (~0.2 s with a few hundred)."""
    import site

    dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    signature = [[entry, os.stat(entry).st_mtime_ns] for entry in dirs if os.path.isdir(entry)]
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_home / "trainforge" / f"dists-{hashlib.sha256(sys.executable.encode()).hexdigest()[:16]}.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("signature") == signature and isinstance(cached.get("distributions"), dict):
            return {str(k): str(v) for k, v in cached["distributions"].items()}
    except (OSError, ValueError, AttributeError):
        pass
    import importlib.metadata as metadata

    found = {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}
    distributions = {normalize_name(k): v for k, v in found.items()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", dir=cache.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"signature": signature, "distributions": distributions}, out)
        os.replace(tmp, cache)
    except OSError:
        pass  # a cache that cannot be written only costs the next job the scan again
    return distributions


def interpreter_of(python: str) -> Interpreter:
    """Version and base executable of ``python`` (no subprocess when it is the running interpreter)."""
    return _probe(python, dists=False)[0]


def installed_distributions(python: str) -> dict[str, str]:
    """Distributions installed in ``python``'s environment: normalized name -> version."""
    return _probe(python, dists=True)[1]


def env_key(interpreter: Interpreter, requirements: Iterable[str], *, lock_sha256: str | None = None) -> str:
    """The cache key of an environment: a hash of the builder version, the interpreter and either the sha256 of the
    lock it is built from or, without a lock, its pinned requirements (order and duplicates do not matter)."""
    content: dict[str, object] = (
        {"lock": lock_sha256}
        if lock_sha256 is not None
        else {"requirements": sorted({r.strip() for r in requirements if r.strip()})}
    )
    payload = json.dumps(
        {"builder": BUILDER_VERSION, "python": [interpreter.version, interpreter.executable], **content},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def layer_key(base_key: str, requirements_text: str) -> str:
    """The cache key of ``requirements.txt`` (its exact content) layered on the environment ``base_key``."""
    payload = f"layer {BUILDER_VERSION}\n{base_key}\n".encode() + requirements_text.encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def server_key(python: str, interpreter: Interpreter) -> str:
    """The key standing for the server's own interpreter as a base (layers on it are keyed from it)."""
    return env_key(interpreter, [f"# server interpreter {os.path.abspath(python)}"])


def names_local_files(requirements_text: str) -> bool:
    """Whether a requirements file refers to local files (paths, ``-e``, ``-r``/``-c``, ``--find-links``,
    ``file:``), whose content a cache key of the file's text cannot see."""
    for raw in requirements_text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and _LOCAL_LINE.search(line):
            return True
    return False


def unsatisfied_pins(pins: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """The pins (``name==version``) that ``installed`` (normalized name -> version) does not satisfy exactly;
    a requirement that is not a plain pin is never satisfied."""
    missing = []
    for pin in pins:
        m = _PIN.match(pin)
        if m is None or installed.get(normalize_name(m.group(1))) != m.group(2):
            missing.append(pin)
    return missing


def is_ready(env_dir: Path) -> bool:
    """Whether ``env_dir`` is a complete cached environment (its metadata is written last)."""
    return (env_dir / META_FILE).is_file()


def _write_meta(env_dir: Path, meta: dict[str, object]) -> None:
    # Replace, never write in place: in a clone the file is a hard link shared with the base environment.
    tmp = env_dir / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, env_dir / META_FILE)


@dataclass(frozen=True)
class EnvironmentRecord:
    """What an environment was built from: the sha256 of the image's lock and of the ``requirements.txt`` layer's
    resolution (None where there was none), and whether every package came from one of them (``locked``)."""

    lock_sha256: str | None
    layer_sha256: str | None
    locked: bool
    python_version: str | None = None
    """The interpreter's version and the installed distributions as the build recorded them (None: not recorded,
    e.g. the server's interpreter or an environment built before they were; ask the interpreter then)."""
    distributions: dict[str, str] | None = None


def environment_record(python: str | Path) -> EnvironmentRecord:
    """The record of the environment whose interpreter is ``python`` (what :func:`prepare_environment` returned),
    read from its metadata file. The server's own interpreter, which no lock built, is unlocked with no hashes."""
    try:
        meta = json.loads((Path(python).parent.parent / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        return EnvironmentRecord(None, None, False)
    lock, layer = meta.get("lock_sha256"), meta.get("layer_sha256")
    installed = meta.get("installed")
    version = distributions = None
    if isinstance(installed, dict) and isinstance(installed.get("python"), str):
        found = installed.get("distributions")
        if isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
            version, distributions = installed["python"], dict(found)
    return EnvironmentRecord(
        lock if isinstance(lock, str) else None,
        layer if isinstance(layer, str) else None,
        meta.get("locked") is True,
        version,
        distributions,
    )


@dataclass(frozen=True)
class BaseEnvironment:
    """An image's environment: its interpreter, cache key, directory (None: the server's interpreter) and lock
    (None: the server's interpreter, or an image without a lock file)."""

    image: str
    python: str
    key: str
    path: Path | None
    lock: Lock | None = None

    @property
    def lock_sha256(self) -> str | None:
        """The sha256 of the lock the environment is built from."""
        return self.lock.sha256 if self.lock is not None else None


class ImageEnvironments:
    """Builds and reuses image environments under ``root`` for one job.

    Args:
        root: The environments directory shared by the node's jobs (``<home>/envs``).
        server_python: The server's interpreter (``trainforge/python:current`` and the default build interpreter).
        env: The environment uv runs with; pip's index settings in it are passed to uv.
        sink: Receives every log line (uv's output included).
        on_status: Receives the ``Downloading`` status message of the environment step.
        stop: The job's stop latch: waits and builds end early when it is set.
        reuse_server: ``"auto"`` runs an image in the server's interpreter when every pin is installed there.
        resolutions: Where ``requirements.txt`` layer resolutions are stored and shared between nodes (None: each
            build resolves for itself).
        locks_dir: Where the images' locks are read (default: the ones shipped with trainforge).
    """

    def __init__(
        self,
        *,
        root: Path,
        server_python: str,
        env: Mapping[str, str],
        sink: LineSink,
        on_status: Callable[[str], None],
        stop: StopSignal,
        reuse_server: str = "never",
        resolutions: ResolutionStore | None = None,
        locks_dir: Path = LOCKS_DIR,
    ) -> None:
        self.root = Path(root)
        self._locks_dir = locks_dir
        self._resolutions = resolutions
        self.server_python = server_python
        self._raw_env = dict(env)
        self._env = uv_environment(env)
        self._sink = sink
        self._on_status = on_status
        self._stop = stop
        self._reuse_server = reuse_server
        self._uv = find_uv_bin()
        self._interpreters: dict[str, Interpreter] = {}

    def say(self, line: str) -> None:
        """One log line."""
        self._sink("stdout", line)

    # ------------------------------------------------------------------------------------ the job's python

    def prepare(
        self, image: Image, *, code_dir: Path | None = None, job_venv: Path | None = None, package: bool = False
    ) -> str:
        """The interpreter a job of ``image`` runs with, building what is missing.

        ``code_dir``'s ``requirements.txt`` is layered on the image environment; ``package=True`` installs
        ``code_dir`` itself (a ``setup.py`` package) into a per-job environment at ``job_venv``. Raises
        :class:`~trainforge.runtime.failure.JobFailed` when a build fails and
        :class:`~trainforge.runtime.stopping.StopRequested` when the job is stopped meanwhile.
        """
        base = self._base(image)
        requirements = code_dir / "requirements.txt" if code_dir is not None else None
        text = requirements.read_text(encoding="utf-8") if requirements and requirements.is_file() else None
        per_job = package or (text is not None and names_local_files(text))
        layer = None if text is None or per_job else self.root / layer_key(base.key, text)
        if base.path is None and text is None and not package:
            return base.python
        ready = (base.path is None or is_ready(base.path)) and not per_job and (layer is None or is_ready(layer))
        label = image.name + (" + requirements.txt" if text is not None else "")
        if ready:
            self._on_status(f"Reusing training environment {image.name}")
        else:
            self._on_status(f"Preparing the training environment {image.name} (uv)")
        if base.path is not None:
            path = base.path
            self._cached(path, image.name, lambda tmp: self._build_base(tmp, image, base.lock))
        if per_job:
            assert code_dir is not None and job_venv is not None, "a per-job environment needs code_dir and job_venv"
            return self._per_job(base, code_dir, job_venv, package)
        if layer is None:
            return base.python
        assert code_dir is not None and text is not None
        self._cached(layer, label, lambda tmp: self._build_layer(tmp, base, code_dir, text))
        return str(venv_python(layer))

    def _base(self, image: Image) -> BaseEnvironment:
        if image.uses_server_interpreter:
            return self._server_base(image)
        if self._reuse_server == "auto":
            missing = unsatisfied_pins(image.requirements, installed_distributions(self.server_python))
            if not missing:
                self.say(
                    f"Running {image.name} in the server's interpreter {self.server_python}: every pinned package "
                    "is installed there (TRAINFORGE_ENV_REUSE_SERVER=auto)"
                )
                return self._server_base(image)
            self.say(f"The server's interpreter lacks {', '.join(missing[:5])}: using the environment of {image.name}")
        interpreter = self._interpreter_for(image)
        lock = lock_for(image, directory=self._locks_dir)
        path = self.root / env_key(interpreter, image.requirements, lock_sha256=lock.sha256 if lock else None)
        return BaseEnvironment(image.name, str(venv_python(path)), path.name, path, lock)

    def _server_base(self, image: Image) -> BaseEnvironment:
        interpreter = interpreter_of(self.server_python)
        return BaseEnvironment(image.name, self.server_python, server_key(self.server_python, interpreter), None)

    def _interpreter_for(self, image: Image) -> Interpreter:
        """The interpreter an image environment is built on: the server's when its version is the image's,
        else the one uv finds for the image's version."""
        if image.name in self._interpreters:
            return self._interpreters[image.name]
        server = interpreter_of(self.server_python)
        if image.python is None or server.minor == image.python:
            self._interpreters[image.name] = server
            return server
        cmd = [self._uv, "python", "find", image.python]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=self._env, timeout=120, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise internal_error(
                f"{image.name} needs Python {image.python} and the server runs {server.version}: uv found no "
                f"Python {image.python} interpreter on this node ({exc}); install one, or run the server on it"
            ) from None
        found = interpreter_of(done.stdout.strip())
        self._interpreters[image.name] = found
        return found

    # ------------------------------------------------------------------------------------ cache mechanics

    def _cached(self, final: Path, label: str, build: Callable[[Path], dict[str, object]]) -> None:
        """Make sure ``final`` is a complete environment: reuse it, wait for its builder, or build it (``build``
        returns what the environment's metadata records beside the builder, image, key and times)."""
        if is_ready(final):
            self.say(f"Reusing training environment {label} ({final})")
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / f"{final.name}.lock"))
        self._acquire(lock, label)
        try:
            if is_ready(final):
                self.say(f"Reusing training environment {label} ({final}), built meanwhile by another job")
                return
            for stale in [*self.root.glob(f".tmp-{final.name}-*"), final]:
                if stale.exists():  # left by a builder that died: nobody else holds the lock
                    shutil.rmtree(stale, ignore_errors=True)
            tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
            self.say(f"Preparing the training environment {label} with uv into {final}")
            started = time.monotonic()
            try:
                recorded = build(tmp)
                self._stop.check()
                meta = {**self._meta(label, final.name), **recorded, "build_seconds": time.monotonic() - started}
                # What is installed, once: an environment never changes after its build, so jobs read it from here
                interpreter, dists = _probe(str(venv_python(tmp)), dists=True)
                meta["installed"] = {"python": interpreter.version, "distributions": dict(sorted(dists.items()))}
                _write_meta(tmp, meta)
                os.rename(tmp, final)
            except BaseException as exc:
                shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back before the job fails
                if isinstance(exc, OSError | JobFailed) and is_disk_full(exc):
                    if isinstance(exc, JobFailed) and is_disk_full_reason(exc.reason):
                        raise
                    raise disk_full(
                        DiskPhase.ENVIRONMENT, f"building the training environment {label}", self.root
                    ) from None
                raise
            self.say(f"Training environment {label} ready in {time.monotonic() - started:.1f}s")
        finally:
            lock.release()

    def _acquire(self, lock: FileLock, label: str) -> None:
        try:
            lock.acquire(timeout=0)
            return
        except Timeout:
            self.say(f"Waiting for another job to finish building the training environment {label}")
        while True:
            self._stop.check()
            try:
                lock.acquire(timeout=LOCK_POLL_SECONDS)
                return
            except Timeout:
                continue

    def _meta(self, label: str, key: str) -> dict[str, object]:
        return {"builder": BUILDER_VERSION, "image": label, "key": key, "built_at": time.time()}

    def _uv_run(self, cmd: list[str], cwd: Path, what: str, *, kind: str | None = None) -> None:
        """Run uv; a failure is an InternalServerError naming ``what``, or with ``kind`` (the code's own
        requirements failed) an ``AlgorithmError: <kind>: <uv's last lines>``."""
        rc, stopped, tail = run_uv(cmd, cwd=cwd, env=self._env, sink=self._sink, should_stop=self._stop.is_set)
        self._stop.check()
        if rc != 0 and not stopped:
            if mentions_disk_full(tail):
                raise disk_full(DiskPhase.ENVIRONMENT, f"building {what} (uv: {disk_full_line(tail)})", self.root)
            if kind is not None:
                raise algorithm_error(f"{kind}: {tail}")
            raise internal_error(f"cannot build {what}: {tail}")

    # ------------------------------------------------------------------------------------ builds

    def _build_base(self, tmp: Path, image: Image, lock: Lock | None) -> dict[str, object]:
        """Build ``image``'s environment into ``tmp``: exactly its lock (hash-checked, nothing resolved), or without a
        lock file its pins as uv resolves them now."""
        interpreter = self._interpreter_for(image)
        what = f"the training environment {image.name}"
        self._uv_run([self._uv, "venv", "--relocatable", "--python", interpreter.executable, str(tmp)], self.root, what)
        install = [self._uv, "pip", "install", "--compile-bytecode", "--python", str(venv_python(tmp))]
        if lock is not None:
            (tmp / LOCK_FILE).write_text(lock.text, encoding="utf-8")
            if lock.packages:
                self.say(f"Installing the lock of {image.name} ({len(lock.packages)} packages, sha256 {lock.sha256})")
                self._uv_run([*install, "--require-hashes", "--no-deps", "-r", str(tmp / LOCK_FILE)], self.root, what)
            return {"lock_sha256": lock.sha256, "layer_sha256": None, "locked": True}
        pins = tmp / PINS_FILE
        pins.write_text("".join(f"{r}\n" for r in image.requirements), encoding="utf-8")
        if image.requirements:
            self.say(f"{image.name} has no lock: installing its pins as uv resolves them now")
            self._uv_run([*install, "-r", str(pins)], self.root, what)
        return {"lock_sha256": None, "layer_sha256": None, "locked": not image.requirements}

    def _job_environment(self, venv: Path, base: BaseEnvironment) -> JobEnvironment:
        return JobEnvironment(
            venv=venv,
            base_python=base.python,
            env=self._raw_env,
            sink=self._sink,
            should_stop=self._stop.is_set,
            clone_from=base.path,
        )

    def _build_layer(self, tmp: Path, base: BaseEnvironment, code_dir: Path, text: str) -> dict[str, object]:
        """Clone the base into ``tmp`` and install the stored resolution of ``requirements.txt`` into it (resolving
        and storing it first when no node did yet)."""
        environment = self._job_environment(tmp, base)
        environment.create(code_dir)
        self._stop.check()
        resolution = self._layer_resolution(base, code_dir, text)
        (tmp / LAYER_LOCK_FILE).write_text(resolution, encoding="utf-8")
        environment.install_locked(code_dir, tmp / LAYER_LOCK_FILE)
        self._stop.check()
        return {"lock_sha256": base.lock_sha256, "layer_sha256": resolution_sha256(resolution), **self._locked(base)}

    def _locked(self, base: BaseEnvironment) -> dict[str, object]:
        # A base built from a lock (or an image with nothing to install) is locked; the server's interpreter is not.
        return {"locked": base.path is not None and environment_record(base.python).locked}

    def _layer_resolution(self, base: BaseEnvironment, code_dir: Path, text: str) -> str:
        """The resolution of ``requirements.txt`` on ``base``: the stored one, else a new one, stored."""
        interpreter = interpreter_of(base.python)
        base_packages = base.lock.packages if base.lock is not None else installed_distributions(base.python)
        identity = base.lock.sha256 if base.lock is not None else distributions_identity(base_packages)
        key = resolution_key(requirements_text=text, base_identity=identity, python_version=interpreter.version)
        stored = self._resolutions.get(key) if self._resolutions is not None else None
        if stored is not None:
            self.say(f"Installing the stored resolution {key} of requirements.txt (sha256 {resolution_sha256(stored)})")
            return stored
        self.say(f"Resolving requirements.txt on {base.image} with uv (resolution {key})")
        with tempfile.TemporaryDirectory(prefix="trainforge-resolve-") as scratch:
            output = Path(scratch) / "resolution.txt"
            prefer_base(output, base_packages)
            cmd = resolution_command(self._uv, python=base.python, requirements="requirements.txt", output=str(output))
            self._uv_run(cmd, code_dir, f"the requirements.txt layer on {base.image}", kind="InstallRequirementsError")
            resolution = finish_resolution(text, output.read_text(encoding="utf-8"))
        if self._resolutions is None:
            return resolution
        stored = self._resolutions.put(key, resolution, interpreter.version)
        if stored != resolution:
            self.say(f"Another node stored resolution {key} first: installing that one")
        return stored

    def _per_job(self, base: BaseEnvironment, code_dir: Path, job_venv: Path, package: bool) -> str:
        environment = self._job_environment(job_venv, base)
        if package:
            environment.install_package(code_dir)
        else:
            environment.install_requirements(code_dir)
        self._stop.check()
        # Resolved now from local files: recorded as unlocked (the base's lock is still named).
        _write_meta(
            job_venv, {"image": base.image, "lock_sha256": base.lock_sha256, "layer_sha256": None, "locked": False}
        )
        return environment.python


def prepare_environment(
    image: Image,
    *,
    envs_root: Path,
    server_python: str,
    env: Mapping[str, str],
    sink: LineSink,
    on_status: Callable[[str], None],
    stop: StopSignal,
    reuse_server: str = "never",
    code_dir: Path | None = None,
    job_venv: Path | None = None,
    package: bool = False,
    resolutions: ResolutionStore | None = None,
) -> Path:
    """The Python executable a job of ``image`` runs with; builds or reuses its environment first.

    The one call for everything that runs code in an image (entry points, built-in algorithms, framework
    helpers): see :meth:`ImageEnvironments.prepare` for ``code_dir``, ``job_venv`` and ``package``, and
    :class:`ImageEnvironments` for ``resolutions``. :func:`environment_record` of the returned path tells which
    lock and layer resolution the environment was built from.
    """
    environments = ImageEnvironments(
        root=envs_root,
        server_python=server_python,
        env=env,
        sink=sink,
        on_status=on_status,
        stop=stop,
        reuse_server=reuse_server,
        resolutions=resolutions,
    )
    return Path(environments.prepare(image, code_dir=code_dir, job_venv=job_venv, package=package))
