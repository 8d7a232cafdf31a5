"""A real Docker engine for the tests, and test images built without a registry.

``docker_engine()`` starts Debian's ``dockerd`` (``apt-get install docker.io``) in a directory of its own -- no
iptables, no bridge, its own data root, exec root and socket -- and stops it by its pid afterwards, removing the
containers it ran. Nothing here touches any other engine on the machine.

Images come from Debian packages: ``apt-get download`` of a package closure, ``dpkg-deb -x`` of each into a root
file system, ``docker import`` of its tarball. The downloaded ``.deb`` files and Python wheels are cached under
``~/.cache/trainforge-tests/`` keyed by the package set, so a session rebuilds its images in seconds; the images
themselves are built into each session's engine.

- ``busybox_image``: busybox-static with every applet linked (sh, echo, cat, sleep, ls, mkdir, nc, wget, env...).
- ``python_image``: Debian bookworm's python3.11 (``/usr/bin/python3``), dash as ``/bin/sh``, coreutils, and a
  working ``python3 -m venv`` (pip bootstrapped from Debian's wheels).
- ``toolkit_image``: the python image plus the real ``sagemaker-training`` toolkit (built from its PyPI sdist on the
  host) and its ``train`` console script, with the runtime packages ``train`` imports for a script-mode job.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BUSYBOX_TAG = "tftest/busybox:1"
PYTHON_TAG = "tftest/python:3.11"
TOOLKIT_TAG = "tftest/toolkit:5.1.4"

# The python image: the interpreter, its standard library, venv + the wheels ensurepip installs, a shell, coreutils,
# and the C++ and OpenMP runtimes that numpy/scipy/scikit-learn wheels link (as python:3.11-slim has them).
PYTHON_PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11",
    "python3.11-venv",
    "python3-pip-whl",
    "python3-setuptools-whl",
    "dash",
    "coreutils",
    "ca-certificates",
    "libstdc++6",
    "libgomp1",
)
# Maintainer-script machinery that a root file system assembled by dpkg-deb -x never runs, and perl it pulls in.
EXCLUDED_PACKAGES = ("perl*", "libperl*", "dpkg", "install-info", "debconf", "cdebconf", "debconf-2.0")

# The toolkit: sagemaker-training's sdist (built into a wheel on the host) and what its ``train`` imports for a
# script-mode job (cli.train -> trainer -> entry_point/files/environment/intermediate_output/mpi: boto3, six,
# retrying, inotify_simple, paramiko, psutil). numpy/scipy/protobuf/gevent/werkzeug are declared by the sdist but
# only its encoders and serving paths import them.
TOOLKIT_SDIST = "sagemaker-training==5.1.4"
TOOLKIT_DEPENDENCIES = (
    "boto3==1.35.99",
    "six==1.17.0",
    "retrying==1.3.4",
    "inotify_simple==1.2.1",
    "paramiko==3.5.1",
    "psutil==6.1.1",
)
_IMAGE_PYTHON_SITE = "usr/local/lib/python3.11/dist-packages"


class EngineUnavailable(RuntimeError):
    """No Docker engine can run here; the message says why (tests skip with it)."""


def cache_dir() -> Path:
    """Where downloaded packages are kept between sessions (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainforge-tests"


@dataclass
class DockerEngine:
    """A running dockerd: ``host`` is its ``DOCKER_HOST`` address, ``env`` the environment that selects it."""

    host: str
    root: Path
    pid: int
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {"DOCKER_HOST": self.host}

    def docker(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``docker`` client against this engine; with ``check`` a non-zero exit raises, showing stderr."""
        out = subprocess.run(
            ["docker", *args],
            env={**os.environ, **self.env},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
        return out

    def has_image(self, ref: str) -> bool:
        """Whether the engine holds an image named ``ref``."""
        return self.docker("image", "inspect", ref, check=False).returncode == 0


def dockerd_binary() -> str | None:
    """The ``dockerd`` executable (Debian puts it in /usr/sbin, which a non-login PATH may lack)."""
    return shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin:/sbin:/bin")


def engine_unavailable_reason() -> str | None:
    """Why no engine can be started here (no dockerd, no docker client, not root), or None when one can be tried.
    A start that fails anyway raises ``EngineUnavailable`` from ``docker_engine()``."""
    if sys.platform != "linux":
        return f"a Docker engine for the tests needs Linux (this is {sys.platform})"
    if dockerd_binary() is None:
        return "dockerd is not installed: `apt-get install -y docker.io` (.ci/run does this)"
    if shutil.which("docker") is None:
        return "the docker client is not on PATH: `apt-get install -y docker.io` (.ci/run does this)"
    if os.geteuid() != 0:
        return "dockerd needs root to run containers and this test process is not root"
    return None


@contextlib.contextmanager
def docker_engine(start_timeout: float = 60) -> Iterator[DockerEngine]:
    """Start a private dockerd (its own data root, exec root and socket in a fresh directory under the temp dir)
    and yield it; afterwards remove its containers, stop it by its pid (SIGTERM, then SIGKILL) and delete the
    directory. Raises ``EngineUnavailable`` with the reason when it cannot start."""
    reason = engine_unavailable_reason()
    if reason:
        raise EngineUnavailable(reason)
    # A short path: the socket's path must fit a sockaddr_un (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="tf-dockerd-"))
    sock = root / "docker.sock"
    log_path = root / "dockerd.log"
    cmd = [
        str(dockerd_binary()),
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(root / "exec"),
        "--pidfile",
        str(root / "docker.pid"),
        "-H",
        f"unix://{sock}",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    engine = DockerEngine(host=f"unix://{sock}", root=root, pid=proc.pid)
    try:
        _wait_ready(engine, proc, log_path, start_timeout)
        yield engine
    finally:
        _stop(engine, proc)


def _wait_ready(engine: DockerEngine, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EngineUnavailable(f"dockerd exited {proc.returncode} at start: {_tail(log_path)}")
        if (engine.root / "docker.sock").exists() and engine.docker("version", check=False, timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f}s: {_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return " | ".join(text[-limit:].splitlines()[-4:])


def _stop(engine: DockerEngine, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(Exception):
            ids = engine.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                engine.docker("rm", "-f", *ids, check=False, timeout=120)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    # dockerd stops the containerd it started; if dockerd had to be killed, that containerd is stopped here.
    # Only a process whose command line names this engine's directory: a stale pid file never kills another one.
    containerd_pid = engine.root / "exec" / "containerd" / "containerd.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(containerd_pid.read_text().strip())
        if str(engine.root) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    _unmount_under(engine.root)
    shutil.rmtree(engine.root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Lazily unmount anything a killed engine left mounted below ``root`` (overlay layers, network namespaces)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(root) + "/"
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1 and line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


# ---------------------------------------------------------------------------------------------------------------
# Test images from Debian packages


class ImageBuildUnavailable(RuntimeError):
    """A test image cannot be built here (no apt, no package index); the message says why (tests skip with it)."""


def image_build_unavailable_reason() -> str | None:
    """Why the Debian-package image builders cannot run here, or None."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: the test images are built from Debian packages (a Debian host)"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a file), so concurrent sessions fill one cache entry once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _excluded(name: str, excluded: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in excluded)


def _parse_depends(text: str) -> dict[str, list[list[list[str]]]]:
    """``apt-cache depends`` output -> package -> its dependency groups; a group lists alternatives (``|``), each
    alternative the concrete packages that satisfy it (a virtual package's providers)."""
    result: dict[str, list[list[list[str]]]] = {}
    groups: list[list[list[str]]] = []
    open_group = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            groups = result.setdefault(line.strip(), [])
            open_group = False
            continue
        if line.startswith("    "):  # a provider of the virtual package named on the line before
            if groups and groups[-1]:
                groups[-1][-1].append(line.strip().split(":")[0])
            continue
        kind, _, name = line.strip().lstrip("|").partition(": ")
        if kind not in ("Depends", "PreDepends"):
            open_group = False
            continue
        name = name.strip()
        alternative = [] if name.startswith("<") else [name.split(":")[0]]
        if open_group:
            groups[-1].append(alternative)
        else:
            groups.append([alternative])
        open_group = line.startswith(" |")
    return result


_APT_DEPENDS: tuple[str, ...] = (
    "apt-cache",
    "depends",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
)
_APT_DEPENDS += ("--no-replaces", "--no-enhances")


def resolve_packages(roots: Iterable[str], excluded: Sequence[str] = EXCLUDED_PACKAGES) -> list[str]:
    """The dependency closure of ``roots`` (Depends + PreDepends, first satisfiable alternative, no recommends),
    leaving out packages matching ``excluded`` and what only they would need."""
    chosen: set[str] = set()
    frontier = [name for name in roots if not _excluded(name, excluded)]
    while frontier:
        chosen.update(frontier)
        out = subprocess.run(
            [*_APT_DEPENDS, *frontier],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise ImageBuildUnavailable(
                f"apt-cache depends failed (run `apt-get update`?): {out.stderr.strip()[-400:]}"
            )
        following: set[str] = set()
        for groups in _parse_depends(out.stdout).values():
            for group in groups:
                for alternative in group:
                    usable = [name for name in alternative if not _excluded(name, excluded)]
                    if usable:
                        if usable[0] not in chosen:
                            following.add(usable[0])
                        break
        frontier = sorted(following)
    return sorted(chosen)


def debian_packages(roots: Sequence[str], excluded: Sequence[str] = EXCLUDED_PACKAGES) -> list[Path]:
    """The ``.deb`` files of the closure of ``roots``, downloaded once into the cache (keyed by roots + excluded)."""
    reason = image_build_unavailable_reason()
    if reason:
        raise ImageBuildUnavailable(reason)
    entry = cache_dir() / "debs" / _key(sorted(roots), sorted(excluded))
    with _locked(entry.with_suffix(".lock")):
        if not (entry / ".complete").exists():
            names = resolve_packages(roots, excluded)
            staging = Path(tempfile.mkdtemp(prefix="download-", dir=entry.parent))
            try:
                out = subprocess.run(["apt-get", "download", "-q", *names], cwd=staging, capture_output=True, text=True)
                if out.returncode != 0:
                    raise ImageBuildUnavailable(f"apt-get download failed: {out.stderr.strip()[-400:]}")
                (staging / ".complete").write_text("\n".join(names) + "\n")
                shutil.rmtree(entry, ignore_errors=True)
                staging.rename(entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return sorted(entry.glob("*.deb"))


def _unpack(debs: Iterable[Path], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)


def _base_files(root: Path) -> None:
    """What a booted Debian has and an unpacked one lacks: users, /tmp, /root, the CA bundle."""
    for name, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("etc", 0o755), ("proc", 0o755)):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name).chmod(mode)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    )
    (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    # As Debian's base-files: /etc/hosts first (glibc's default without this file asks DNS first, and a container
    # without a network never gets to the hosts file).
    (root / "etc/nsswitch.conf").write_text(
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\n"
        "services: files\n"
    )
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    if certs:
        bundle = root / "etc/ssl/certs/ca-certificates.crt"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_text("".join(cert.read_text() for cert in certs))


def _import(engine: DockerEngine, root: Path, tag: str, changes: Sequence[str]) -> str:
    tarball = root.parent / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."], check=True)
    args = [arg for change in changes for arg in ("--change", change)]
    engine.docker("import", *args, str(tarball), tag, timeout=300)
    tarball.unlink()
    return tag


def _python_root(root: Path) -> None:
    _unpack(debian_packages(PYTHON_PACKAGES), root)
    _base_files(root)
    sh = root / "bin/sh"
    if not sh.exists():
        sh.symlink_to("dash")
    python3 = root / "usr/bin/python3"
    if not python3.exists():
        python3.symlink_to("python3.11")
    which = root / "usr/bin/which"  # debianutils' postinst makes this alternative
    if not which.exists() and (root / "usr/bin/which.debianutils").exists():
        which.symlink_to("which.debianutils")


_PYTHON_CHANGES = (f"ENV PATH={DEFAULT_PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]')


def busybox_image(engine: DockerEngine) -> str:
    """``tftest/busybox:1``: busybox-static with every applet linked in /bin, /sbin, /usr/bin, /usr/sbin."""
    if engine.has_image(BUSYBOX_TAG):
        return BUSYBOX_TAG
    with tempfile.TemporaryDirectory(prefix="tf-image-") as tmp:
        root = Path(tmp) / "root"
        _unpack(debian_packages(["busybox-static"], ()), root)
        busybox = root / "bin/busybox"
        applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
        for applet in applets.split():
            link = root / applet
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to("/bin/busybox")
        _base_files(root)
        return _import(engine, root, BUSYBOX_TAG, (f"ENV PATH={DEFAULT_PATH}", 'CMD ["sh"]'))


def python_image(engine: DockerEngine) -> str:
    """``tftest/python:3.11``: Debian's python3.11 at /usr/bin/python3 (``python3 -m venv`` works, with pip),
    dash at /bin/sh, coreutils."""
    if engine.has_image(PYTHON_TAG):
        return PYTHON_TAG
    with tempfile.TemporaryDirectory(prefix="tf-image-") as tmp:
        root = Path(tmp) / "root"
        _python_root(root)
        return _import(engine, root, PYTHON_TAG, _PYTHON_CHANGES)


def toolkit_wheels() -> list[Path]:
    """The sagemaker-training wheel (built from its sdist by this interpreter's pip) and the wheels of the packages
    its ``train`` imports, cached (keyed by the pins)."""
    entry = cache_dir() / "wheels" / _key(TOOLKIT_SDIST, sorted(TOOLKIT_DEPENDENCIES), sys.version_info[:2])
    with _locked(entry.with_suffix(".lock")):
        if not (entry / ".complete").exists():
            staging = Path(tempfile.mkdtemp(prefix="download-", dir=entry.parent))
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
            try:
                for step in (
                    ["wheel", "--no-deps", "-w", str(staging), TOOLKIT_SDIST],
                    ["wheel", "-w", str(staging), *TOOLKIT_DEPENDENCIES],
                ):
                    out = subprocess.run([*pip, *step], capture_output=True, text=True, timeout=900)
                    if out.returncode != 0:
                        raise ImageBuildUnavailable(f"pip {step[0]} failed: {out.stderr.strip()[-600:]}")
                (staging / ".complete").write_text("")
                shutil.rmtree(entry, ignore_errors=True)
                staging.rename(entry)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return sorted(entry.glob("*.whl"))


_PIP_INSTALL: tuple[str, ...] = (sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install")
_PIP_INSTALL += ("--no-index", "--no-deps", "--no-compile")


def toolkit_image(engine: DockerEngine) -> str:
    """``tftest/toolkit:5.1.4``: the python image + the real sagemaker-training toolkit in
    /usr/local/lib/python3.11/dist-packages and its ``train`` console script at /usr/local/bin/train."""
    if engine.has_image(TOOLKIT_TAG):
        return TOOLKIT_TAG
    wheels = toolkit_wheels()
    with tempfile.TemporaryDirectory(prefix="tf-image-") as tmp:
        root = Path(tmp) / "root"
        _python_root(root)
        target = root / _IMAGE_PYTHON_SITE
        out = subprocess.run(
            [*_PIP_INSTALL, "--target", str(target), *map(str, wheels)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise ImageBuildUnavailable(f"pip install --target failed: {out.stderr.strip()[-600:]}")
        # pip wrote the console script for this interpreter; the image's python runs it.
        script = (target / "bin/train").read_text().split("\n", 1)[1]
        train = root / "usr/local/bin/train"
        train.parent.mkdir(parents=True, exist_ok=True)
        train.write_text("#!/usr/bin/python3\n" + script)
        train.chmod(0o755)
        shutil.rmtree(target / "bin")
        return _import(engine, root, TOOLKIT_TAG, _PYTHON_CHANGES)


class TestImages(dict[str, str]):
    """The test images of one engine by role (``busybox``, ``python``, ``toolkit``), each built on first use; a
    build that cannot run here skips the test that asked for it, saying why."""

    __test__ = False  # not a pytest test class

    builders = {"busybox": busybox_image, "python": python_image, "toolkit": toolkit_image}

    def __init__(self, engine: DockerEngine) -> None:
        super().__init__()
        self.engine = engine

    def __missing__(self, role: str) -> str:
        import pytest

        if role not in self.builders:
            raise KeyError(f"no test image {role!r}; there are {sorted(self.builders)}")
        try:
            tag = self.builders[role](self.engine)
        except ImageBuildUnavailable as exc:
            pytest.skip(f"test image {role!r} cannot be built here: {exc}")
        self[role] = tag
        return tag
