"""The build context of a catalogue container image (runtime/imagebuild.py) and the ``trainforge images`` command
line's refusals: what the Dockerfile installs and labels, what the context carries, which names are built, and the
one line a failed build is reported with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainforge.cli.main import main
from trainforge.errors import ValidationError
from trainforge.runtime import imagebuild
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.locks import lock_for
from trainforge.spec.images import CATALOGUE


def test_dockerfile_installs_exactly_the_lock_into_the_venv_and_labels_it() -> None:
    image = CATALOGUE["trainforge/sklearn:1.2-1"]
    lock = lock_for(image)
    assert lock is not None and lock.packages
    text = imagebuild.dockerfile(image, lock, base="example/python:3.11")
    lines = text.splitlines()
    assert lines[1] == "FROM example/python:3.11"
    assert "COPY lock.txt /opt/trainforge/lock.txt" in lines
    run = text[text.index("RUN ") : text.index("COPY image_files")]
    assert run.startswith("RUN python3 -m venv /opt/trainforge/venv")
    assert "/opt/trainforge/venv/bin/pip install" in run
    assert "--no-deps --require-hashes -r /opt/trainforge/lock.txt" in run
    assert "COPY image_files /opt/trainforge/image_files" in lines
    assert f'LABEL ai.trainforge.catalogue-image="{image.name}" ai.trainforge.lock-sha256="{lock.sha256}"' in lines
    assert "ENV PATH=/opt/trainforge/venv/bin:$PATH" in lines


def test_an_empty_lock_makes_the_venv_without_installing() -> None:
    image = CATALOGUE["trainforge/python:3.11"]
    lock = lock_for(image)
    assert lock is not None and not lock.packages
    text = imagebuild.dockerfile(image, lock, base="b")
    assert "RUN python3 -m venv /opt/trainforge/venv\n" in text
    assert "pip install" not in text


def test_the_context_carries_the_lock_bytes_and_the_helper_sources_only() -> None:
    image = CATALOGUE["trainforge/xgboost:1.7-1"]
    lock = lock_for(image)
    assert lock is not None
    with imagebuild.build_context(image, lock, base="b") as ctx:
        assert (ctx / "lock.txt").read_bytes() == lock.path.read_bytes()
        assert (ctx / "Dockerfile").read_text() == imagebuild.dockerfile(image, lock, base="b")
        shipped = sorted(p.relative_to(ctx / "image_files") for p in (ctx / "image_files").rglob("*.py"))
        sources = sorted(p.relative_to(IMAGE_FILES) for p in IMAGE_FILES.rglob("*.py"))
        assert shipped == sources and Path("sagemaker_containers/__init__.py") in shipped
        assert not list(ctx.rglob("__pycache__")) and not list(ctx.rglob("*.pyc"))
    assert not ctx.exists()


def test_the_host_pips_ca_bundle_is_trusted_by_the_install_and_not_kept(tmp_path: Path) -> None:
    """Behind a proxy or a private index with its own CA, the host's pip trusts ``PIP_CERT``; the build's pip does
    too, and the image does not keep the file."""
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CERT": str(bundle), "HOME": str(tmp_path)}
    assert imagebuild.pip_ca_bundle(env) == bundle
    assert imagebuild.pip_ca_bundle({**env, "PIP_CERT": str(tmp_path / "absent.pem")}) is None
    image = CATALOGUE["trainforge/kmeans:1"]
    lock = lock_for(image)
    assert lock is not None and lock.packages
    with imagebuild.build_context(image, lock, base="b", ca_bundle=bundle) as ctx:
        assert (ctx / "pip-ca.pem").read_bytes() == bundle.read_bytes()
        text = (ctx / "Dockerfile").read_text()
    run = text[text.index("RUN ") : text.index("COPY image_files")]
    assert "COPY pip-ca.pem /tmp/trainforge-pip-ca.pem" in text.splitlines()
    assert "PIP_CERT=/tmp/trainforge-pip-ca.pem /opt/trainforge/venv/bin/pip install" in run
    assert run.rstrip().endswith("rm -f /tmp/trainforge-pip-ca.pem")
    empty = lock_for(CATALOGUE["trainforge/python:3.11"])
    assert empty is not None
    with imagebuild.build_context(CATALOGUE["trainforge/python:3.11"], empty, base="b", ca_bundle=bundle) as ctx:
        assert not (ctx / "pip-ca.pem").exists() and "PIP_CERT" not in (ctx / "Dockerfile").read_text()


def test_names_are_checked_and_the_servers_interpreter_is_skipped_with_a_note() -> None:
    with pytest.raises(ValidationError, match="pass --all") as neither:
        imagebuild.buildable([], every=False)
    assert neither.value.field == "NAME"
    with pytest.raises(ValidationError, match="trainforge/nope:1 is not a catalogue image"):
        imagebuild.buildable(["trainforge/nope:1"], every=False)
    images, notes = imagebuild.buildable(["trainforge/python:current", "trainforge/kmeans:1"], every=False)
    assert [i.name for i in images] == ["trainforge/kmeans:1"]
    assert notes == [
        "trainforge/python:current: skipped, it is the server's own interpreter (no environment to put into an image)"
    ]
    every, _ = imagebuild.buildable([], every=True)
    assert [i.name for i in every] == [name for name in CATALOGUE if name != "trainforge/python:current"]


def test_pip_index_urls_reach_the_build_and_local_locations_do_not() -> None:
    env = {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_INDEX_URL": "https://pypi.example/simple",
        "PIP_EXTRA_INDEX_URL": "file:///opt/wheels https://download.pytorch.org/whl/cpu",
        "PIP_FIND_LINKS": "/opt/local",
    }
    assert imagebuild.pip_build_args(env) == [
        "--build-arg",
        "PIP_INDEX_URL=https://pypi.example/simple",
        "--build-arg",
        "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu",
    ]
    assert imagebuild.pip_build_args({"PIP_CONFIG_FILE": "/dev/null"}) == []


def test_a_failed_step_is_reported_with_what_pip_said() -> None:
    pip_failure = [
        "Step 5/8 : RUN python3 -m venv /opt/trainforge/venv && pip install ...",
        " ---> Running in 0123abcd",
        "Collecting numpy===1.26.4",
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.",
        "    numpy===1.26.4 from https://files.example/numpy.whl:",
        "The command '/bin/sh -c python3 -m venv /opt/trainforge/venv' returned a non-zero code: 1",
    ]
    assert imagebuild.failure_line(pip_failure, 1) == (
        "The command '/bin/sh -c python3 -m venv /opt/trainforge/venv' returned a non-zero code: 1 "
        "(ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.)"
    )
    coloured = [
        " ---> Running in 0123abcd",
        "\x1b[91mERROR: No matching distribution found for joblib===1.3.2",
        "\x1b[0m\x1b[91mThe command '/bin/sh -c x' returned a non-zero code: 1",
        "\x1b[0m",
    ]
    assert imagebuild.failure_line(coloured, 1) == (
        "The command '/bin/sh -c x' returned a non-zero code: 1 (ERROR: No matching distribution found for "
        "joblib===1.3.2)"
    )
    pull_failure = ["Step 1/8 : FROM acme/absent:1", "pull access denied for acme/absent, repository does not exist"]
    assert imagebuild.failure_line(pull_failure, 1) == pull_failure[-1]
    assert imagebuild.failure_line([], 125) == "docker build exit code 125"


def test_cli_refusals_are_one_line_with_the_usage_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "build"]) == 2
    assert capsys.readouterr().err.startswith("error: NAME: name the catalogue images to build, or pass --all;")
    assert main(["images", "build", "acme/custom:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "acme/custom:1 is not a catalogue image" in err
    assert main(["images", "build", "trainforge/python:current", "--output", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["Images"] == []
    assert "server's own interpreter" in captured.err


def test_list_without_an_engine_still_lists_the_locks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert main(["images", "list", "--output", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["Engine"]["Available"] is False and "no-engine.sock" in listing["Engine"]["Reason"]
    rows = {row["Name"]: row for row in listing["Images"]}
    sklearn = lock_for(CATALOGUE["trainforge/sklearn:1.2-1"])
    assert sklearn is not None
    assert rows["trainforge/sklearn:1.2-1"]["LockSha256"] == sklearn.sha256
    assert rows["trainforge/sklearn:1.2-1"]["Container"] is None
    assert rows["trainforge/sklearn:1.2-1"]["Status"] == "unknown (engine not reachable)"
