"""The foundation's end-to-end flow on a team deployment: PostgreSQL for the job store, a real S3-compatible
server (moto on 127.0.0.1) for objects, the SDK configured the way AWS tools are (``AWS_*`` variables).

The tests are the embedded deployment's own, collected again here with this module's ``server`` fixture: the
quick-start job, a failing script, a stop, max runtime, a server SIGKILL mid-job, a vanished supervisor, and the
multi-host jobs (``ShardedByS3Key`` over S3 objects, merged artifacts).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainforge
from tests.e2e.test_multihost import (  # noqa: F401 - collected here, run against this module's server
    test_sharded_by_s3_key_gives_each_host_a_disjoint_share,
    test_two_hosts_each_get_their_own_tree_resolve_each_other_and_merge_their_models,
)
from tests.e2e.test_resilience import (  # noqa: F401
    test_a_job_whose_supervisor_died_is_failed_after_restart,
    test_sigkill_the_server_mid_job_loses_and_doubles_no_line,
)
from tests.e2e.test_training_jobs import (  # noqa: F401
    test_failing_script_fails_the_job_with_its_exception,
    test_max_runtime_stops_the_job,
    test_sklearn_estimator_trains_a_real_model,
    test_stop_a_looping_script_keeps_what_it_saved,
)
from tests.support.estimators import script_estimator
from tests.support.postgres import fresh_database
from tests.support.s3 import S3Server
from tests.support.server import ServerProcess, kill_supervisors


@pytest.fixture
def server(
    tf_home: Path, envs_dir: Path, postgres_url: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """A server on its own PostgreSQL database and the session's S3 server; the test process (the SDK) gets the
    same ``AWS_*`` variables, as a notebook would."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    env = {
        "TRAINFORGE_STOP_GRACE_SECONDS": "5",
        "TRAINFORGE_ENVS_DIR": str(envs_dir),
        "TRAINFORGE_DATABASE_URL": fresh_database(postgres_url),
        "TRAINFORGE_STORAGE": "s3",
    }
    srv = ServerProcess(tf_home, extra_env=env).start()
    try:
        yield srv
    finally:
        srv.kill()
        kill_supervisors(tf_home)


def test_the_team_server_keeps_nothing_in_its_home_but_job_roots(server: ServerProcess) -> None:
    """Objects live in the bucket and jobs in PostgreSQL: no local store and no SQLite file appear."""
    assert not (server.home / "storage").exists()
    assert not (server.home / "trainforge.db").exists()


def test_an_unreachable_database_stops_server_start_naming_the_setting(tf_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update({"TRAINFORGE_HOME": str(tf_home), "TRAINFORGE_DATABASE_URL": "postgresql+psycopg://tf@127.0.0.1:9/tf"})
    done = subprocess.run(
        [sys.executable, "-m", "trainforge.server"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: TRAINFORGE_DATABASE_URL: cannot use the database at postgresql+psycopg://")
    assert "Traceback" not in done.stderr


BOTO3_SCRIPT = """
import os, boto3
s3 = boto3.client("s3")
body = s3.get_object(Bucket="trainforge-default", Key="boto3-check/data.txt")["Body"].read().decode()
print("boto3 read:", body, "region:", os.environ["AWS_REGION"], flush=True)
"""


def test_user_code_reaches_the_object_store_with_boto3(
    server: ServerProcess,
    session: trainforge.Session,
    make_source: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "data.txt").write_text("hello from the bucket")
    session.upload_data(str(tmp_path / "data.txt"), key_prefix="boto3-check")
    for key in s3_server.env:  # the job must get the endpoint and credentials from trainforge, not from this process
        monkeypatch.delenv(key)
    est = script_estimator(session, make_source({"train.py": BOTO3_SCRIPT}))
    est.fit()
    assert f"boto3 read: hello from the bucket region: {s3_server.region}" in capsys.readouterr().out
