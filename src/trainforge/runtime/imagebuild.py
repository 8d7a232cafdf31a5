"""Catalogue images as container images: the build context ``trainforge images build`` hands to the engine.

A catalogue image's container image (tag = the catalogue name, e.g. ``trainforge/sklearn:1.2-1``) is a Python
base image plus:

- the image's locked environment as a venv at ``/opt/trainforge/venv`` (``pip install --no-deps --require-hashes``
  of its checked-in lock, :mod:`trainforge.runtime.locks`; nothing installed for an empty lock), first on ``PATH``;
- trainforge's helper modules (``runtime/image_files``: the SageMaker helper packages, built-in algorithms and the
  model server) at ``/opt/trainforge/image_files``;
- the labels ``ai.trainforge.catalogue-image=<name>`` and ``ai.trainforge.lock-sha256=<the lock's sha256>``, by
  which a supervisor recognises the build (:func:`trainforge.runtime.container.catalogue_image`) and this module
  tells a build made from an older lock.

Everything goes through the ``docker`` client on ``PATH`` and the engine of ``DOCKER_HOST``; the base image is
pulled through that engine like any image. ``RUN`` steps use the host's network (``--network host``), so an engine
without a bridge network builds too. The host's pip index settings (``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL`` or
pip's config; http(s) locations only) reach the install as build arguments: a lock may hold builds that only an
extra index has (``torch==2.13.0+cpu``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import TrainforgeError, ValidationError
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.container import (
    CATALOGUE_IMAGE_FILES,
    CATALOGUE_LABEL,
    CATALOGUE_VENV,
    DOCKER,
    LOCK_LABEL,
    ImageInfo,
    fresh_engine_probe,
    image_digest,
    inspect_image,
)
from trainforge.runtime.environment import pip_settings
from trainforge.runtime.locks import Lock, lock_for, lock_path
from trainforge.runtime.process import LineSink, run_logged
from trainforge.spec.images import CATALOGUE, Image

DEFAULT_BASE = "python:3.11-slim-bookworm"
LOCK_IN_IMAGE = "/opt/trainforge/lock.txt"
CA_IN_BUILD = "/tmp/trainforge-pip-ca.pem"
SERVER_INTERPRETER = "trainforge/python:current"
_PIP_ARGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ImageBuildError(TrainforgeError):
    """A catalogue container image cannot be built: no engine, no lock, or the engine's build failed (the message
    names the image and quotes the failing line)."""


@dataclass(frozen=True)
class Built:
    """One finished build: the tag, the engine's image id, the lock it installed and the base it started from."""

    name: str
    image_id: str
    lock_sha256: str
    base: str


@dataclass(frozen=True)
class Present:
    """A catalogue image and what the engine holds of it: ``image`` None when it has no build (or the engine does
    not answer: ``engine_reason`` says why); ``stale`` when the build's lock label is not the current lock."""

    image: Image
    lock: Lock | None
    container: ImageInfo | None
    engine_reason: str | None

    @property
    def digest(self) -> str | None:
        return image_digest(self.container) if self.container else None

    @property
    def built_lock(self) -> str | None:
        return self.container.labels.get(LOCK_LABEL) if self.container else None

    @property
    def stale(self) -> bool:
        return self.container is not None and self.lock is not None and self.built_lock != self.lock.sha256


def buildable(names: list[str], *, every: bool) -> tuple[list[Image], list[str]]:
    """The catalogue images named (every one with ``every``), and notes on those skipped (the server's own
    interpreter is no image to build). Raises ``ValidationError`` on an unknown name or on neither."""
    if not names and not every:
        raise ValidationError(
            "NAME: name the catalogue images to build, or pass --all; known: " + ", ".join(CATALOGUE), field="NAME"
        )
    unknown = [name for name in names if name not in CATALOGUE]
    if unknown:
        raise ValidationError(
            f"NAME: {', '.join(unknown)} is not a catalogue image; known: {', '.join(CATALOGUE)}", field="NAME"
        )
    chosen = list(CATALOGUE.values()) if every else [CATALOGUE[name] for name in dict.fromkeys(names)]
    notes = [
        f"{image.name}: skipped, it is the server's own interpreter (no environment to put into an image)"
        for image in chosen
        if image.uses_server_interpreter
    ]
    return [image for image in chosen if not image.uses_server_interpreter], notes


def image_lock(image: Image) -> Lock:
    """``image``'s checked-in lock; ``ImageBuildError`` naming the file and the fix when it has none."""
    lock = lock_for(image)
    if lock is None:
        raise ImageBuildError(
            f"{image.name}: no lock file {lock_path(image)}; generate it with `trainforge images lock {image.name}`"
        )
    return lock


def dockerfile(image: Image, lock: Lock, *, base: str, ca_bundle: bool = False) -> str:
    """The Dockerfile of ``image``'s container image on ``base`` (a build context holds ``lock.txt`` and
    ``image_files/`` beside it, and with ``ca_bundle`` the host pip's CA bundle as ``pip-ca.pem``, which the install
    trusts and the image does not keep)."""
    venv = CATALOGUE_VENV
    install = f"python3 -m venv {venv}"
    copy_ca: list[str] = []
    if lock.packages:
        cert = f"PIP_CERT={CA_IN_BUILD} " if ca_bundle else ""
        install += (
            f" \\\n && {cert}{venv}/bin/pip install --disable-pip-version-check --no-cache-dir --no-deps"
            f" --require-hashes -r {LOCK_IN_IMAGE}"
        )
        if ca_bundle:
            copy_ca = [f"COPY pip-ca.pem {CA_IN_BUILD}"]
            install += f" \\\n && rm -f {CA_IN_BUILD}"
    return "\n".join(
        [
            f"# {image.name} as a container image, generated by `trainforge images build`.",
            f"FROM {base}",
            *(f"ARG {name}" for name in _PIP_ARGS),
            f"COPY lock.txt {LOCK_IN_IMAGE}",
            *copy_ca,
            f"RUN {install}",
            f"COPY image_files {CATALOGUE_IMAGE_FILES}",
            f'LABEL {CATALOGUE_LABEL}="{image.name}" {LOCK_LABEL}="{lock.sha256}"',
            f"ENV PATH={venv}/bin:$PATH",
            "",
        ]
    )


def pip_ca_bundle(env: Mapping[str, str]) -> Path | None:
    """The CA bundle the host's pip trusts (``PIP_CERT`` or pip's ``cert`` setting), when it names a file: a
    proxy or private index that the host reaches through it is reached the same way from the build."""
    found = pip_settings(env).get("cert")
    path = Path(found[0]) if found else None
    return path if path is not None and path.is_file() else None


@contextmanager
def build_context(image: Image, lock: Lock, *, base: str, ca_bundle: Path | None = None) -> Iterator[Path]:
    """A temporary directory holding ``Dockerfile``, ``lock.txt`` (the lock's exact bytes), ``image_files/``
    (without compiled files) and, when given, ``pip-ca.pem``; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trainforge-image-") as tmp:
        ctx = Path(tmp)
        use_ca = ca_bundle is not None and bool(lock.packages)
        if use_ca:
            assert ca_bundle is not None
            shutil.copyfile(ca_bundle, ctx / "pip-ca.pem")
        (ctx / "Dockerfile").write_text(dockerfile(image, lock, base=base, ca_bundle=use_ca), encoding="utf-8")
        (ctx / "lock.txt").write_text(lock.text, encoding="utf-8")
        shutil.copytree(IMAGE_FILES, ctx / "image_files", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        yield ctx


def pip_build_args(env: Mapping[str, str]) -> list[str]:
    """``--build-arg`` options carrying the host's http(s) pip index URLs into the image's install (local
    find-links and file:// indexes mean nothing inside a build)."""
    settings = pip_settings(env)
    remote = {key: [u for u in settings.get(key, []) if u.startswith(("http://", "https://"))] for key in settings}
    args: list[str] = []
    if remote.get("index-url"):
        args += ["--build-arg", f"PIP_INDEX_URL={remote['index-url'][0]}"]
    if remote.get("extra-index-url"):
        args += ["--build-arg", f"PIP_EXTRA_INDEX_URL={' '.join(remote['extra-index-url'])}"]
    return args


def failure_line(lines: list[str], rc: int) -> str:
    """One line saying why a build failed: the builder's last line, followed (in parentheses) by what the failing
    ``RUN`` step said -- pip's last ``ERROR:`` line, else the step's first line."""
    plain = (_ANSI.sub("", line).strip() for line in lines)  # the builder colours a step's stderr
    meaningful = [line for line in plain if line]
    if not meaningful:
        return f"docker build exit code {rc}"
    final = meaningful[-1]
    running = [i for i, line in enumerate(meaningful) if line.startswith("---> Running in")]
    step = [
        line for line in meaningful[running[-1] + 1 if running else 0 : -1] if not line.startswith("Removing interm")
    ]
    errors = [line for line in step if "ERROR:" in line]
    detail = errors[-1] if errors else (step[0] if step and running else "")
    return f"{final} ({detail})" if detail and detail != final else final


def require_engine() -> str:
    """The engine's version; ``ImageBuildError`` with the reason and the fix when no engine answers."""
    engine = fresh_engine_probe()
    if engine.version is None:
        raise ImageBuildError(
            f"no container engine to build images in: {engine.reason}; start dockerd or point DOCKER_HOST at one"
        )
    return engine.version


def build_image(
    image: Image, *, base: str = DEFAULT_BASE, sink: LineSink, env: Mapping[str, str] | None = None
) -> Built:
    """Build ``image``'s container image in the engine, tagged with its catalogue name; the build's output goes
    line by line to ``sink``. Raises ``ImageBuildError`` (the failing line quoted) when the build fails."""
    env = dict(os.environ if env is None else env)
    lock = image_lock(image)
    lines: list[str] = []

    def keep(stream: str, line: str) -> None:
        lines.append(line)
        sink(stream, line)

    with build_context(image, lock, base=base, ca_bundle=pip_ca_bundle(env)) as ctx:
        cmd = [DOCKER, "build", "--force-rm", "--network", "host", *pip_build_args(env), "-t", image.name, str(ctx)]
        try:
            rc, _ = run_logged(cmd, cwd=ctx, env=env, sink=keep, should_stop=lambda: False)
        except OSError as exc:
            raise ImageBuildError(f"{image.name}: cannot run the docker client: {exc}") from None
    if rc != 0:
        if not any(line.lstrip().startswith("Step 2/") for line in lines):  # the legacy builder's FROM step failed
            raise ImageBuildError(
                f"{image.name}: the base image {base} is not in the engine and cannot be pulled: "
                f"{failure_line(lines, rc)}; pull or load it into the engine, or pass another --base"
            )
        raise ImageBuildError(f"{image.name}: docker build failed (exit {rc}): {failure_line(lines, rc)}")
    found = inspect_image(image.name)
    if found is None:
        raise ImageBuildError(f"{image.name}: docker build succeeded but the engine has no image of that name")
    return Built(image.name, found.id, lock.sha256, base)


def present_images() -> list[Present]:
    """Every catalogue image with its lock and the engine's build of it (if the engine answers)."""
    engine = fresh_engine_probe()
    reason = None if engine.version is not None else engine.reason
    rows = []
    for image in CATALOGUE.values():
        lock = None if image.uses_server_interpreter else lock_for(image)
        container = None
        if reason is None and not image.uses_server_interpreter:
            try:
                found = inspect_image(image.name)
            except Exception as exc:  # the engine stopped answering mid-way: say so on every later row
                reason, found = str(exc), None
            if found is not None and found.labels.get(CATALOGUE_LABEL) == image.name:
                container = found
        rows.append(Present(image, lock, container, reason))
    return rows
