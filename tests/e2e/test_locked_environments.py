"""End to end: an image environment built from its lock on two nodes (two ``TRAINFORGE_ENVS_DIR``\\ s) is the same
environment -- identical fingerprint -- and a ``requirements.txt`` layer is resolved once: the second node installs
the resolution the first stored on the server, through the job's agent routes.

The two "nodes" are two server processes in turn on one home (one database, so one store of resolutions), each
with its own environments directory; jobs run through the SDK exactly as a user's.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx

import trainforge
from tests.support.server import running_server
from trainforge.runtime.lineage import environment_lineage
from trainforge.runtime.locks import lock_for
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn
from trainforge.spec.images import CATALOGUE

IMAGE = "trainforge/sklearn:1.2-1"
SCRIPT = """
import sys, sklearn, tomli_w
print("executable", sys.executable)
print("versions", sklearn.__version__, tomli_w.__version__)
"""


def run_job(home: Path, envs: Path, src: Path) -> tuple[str, list[str], dict[str, Any]]:
    """Run one job on a server over ``home`` whose environments live in ``envs``: its name, log lines, description."""
    with running_server(home, {"TRAINFORGE_ENVS_DIR": str(envs), "TRAINFORGE_STOP_GRACE_SECONDS": "5"}) as server:
        session = trainforge.Session(settings=Settings(home=server.home))
        est = SKLearn(
            entry_point="train.py",
            source_dir=str(src),
            framework_version="1.2-1",
            role=trainforge.get_execution_role(),
            instance_type="ml.m5.large",
            instance_count=1,
            sagemaker_session=session,
        )
        est.fit()
        assert est.latest_training_job is not None
        name = est.latest_training_job.name
        lines = [e["message"] for e in session.client.logs(name, limit=10000)["events"]]
        return name, lines, session.describe_training_job(name)


def base_python(envs: Path) -> str:
    [meta] = [m for m in envs.glob("*/trainforge-env.json") if json.loads(m.read_text())["image"] == IMAGE]
    return str(meta.parent / "bin" / "python")


def test_two_nodes_build_one_environment_and_install_one_stored_resolution(
    tmp_path: Path, envs_dir: Path, make_source: Any
) -> None:
    lock = lock_for(CATALOGUE[IMAGE])
    assert lock is not None
    # A requirements.txt no other test uses (the comment is part of the key): its resolution is new to the server.
    src = make_source({"requirements.txt": f"# {uuid.uuid4().hex}\ntomli-w\n", "train.py": SCRIPT})
    home = tmp_path / "home"
    node_b = tmp_path / "envs-node-b"

    first, first_lines, first_desc = run_job(home, envs_dir, src)
    resolving = [line for line in first_lines if line.startswith(f"Resolving requirements.txt on {IMAGE} with uv")]
    assert len(resolving) == 1, first_lines
    key = re.search(r"\(resolution ([0-9a-f]{32})\)", resolving[0]).group(1)  # type: ignore[union-attr]

    second, second_lines, second_desc = run_job(home, node_b, src)
    assert any(
        line.startswith(f"Preparing the training environment {IMAGE} with uv into {node_b}") for line in second_lines
    )
    assert f"Installing the lock of {IMAGE} ({len(lock.packages)} packages, sha256 {lock.sha256})" in second_lines
    assert any(line.startswith(f"Installing the stored resolution {key} of requirements.txt") for line in second_lines)
    assert not any(line.startswith("Resolving requirements.txt") for line in second_lines), second_lines

    # The image environment: two builds in two directories, one fingerprint (and no path in it).
    a, b = (
        environment_lineage(base_python(envs_dir), image=IMAGE),
        environment_lineage(base_python(node_b), image=IMAGE),
    )
    assert base_python(envs_dir) != base_python(node_b)
    assert a == b and a["LockSha256"] == lock.sha256 and a["Locked"] is True
    assert a["Distributions"] == dict(sorted(lock.packages.items()))
    assert str(tmp_path) not in json.dumps(a)

    # What each job ran on, as its supervisor reported it: the same environment, layer included.
    envs = [d["Lineage"]["Environment"] for d in (first_desc, second_desc)]
    assert envs[0]["Fingerprint"] == envs[1]["Fingerprint"]
    assert envs[0]["LockSha256"] == envs[1]["LockSha256"] == lock.sha256
    assert envs[0]["LayerSha256"] == envs[1]["LayerSha256"] is not None
    assert envs[0]["Distributions"]["scikit-learn"] == "1.2.2" and "tomli-w" in envs[0]["Distributions"]
    versions = [line for lines in (first_lines, second_lines) for line in lines if line.startswith("versions ")]
    assert len(versions) == 2 and versions[0] == versions[1] and versions[0].startswith("versions 1.2.2 ")
    assert first != second


def test_the_resolution_routes_take_only_the_jobs_agent_token(tmp_path: Path, envs_dir: Path) -> None:
    with running_server(tmp_path / "home", {"TRAINFORGE_ENVS_DIR": str(envs_dir)}) as server:
        url = f"{server.url}/v1/agent/training-jobs/no-such-job/environment-locks/{'a' * 32}"
        for token in (None, server.token, "not-a-token"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            get = httpx.get(url, headers=headers, timeout=10)
            put = httpx.put(url, headers=headers, json={"resolution": "six===1.17.0\n", "python": "3.11.7"}, timeout=10)
            assert (get.status_code, put.status_code) == (401, 401), (get.text, put.text)
            assert "error" in get.json()
