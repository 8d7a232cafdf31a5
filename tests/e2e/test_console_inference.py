"""The console's endpoint and transform-job pages over plain HTTP against one real server (per module).

A real training job makes the model's training job; the model's data URI does not exist, so the endpoint and the
transform job fail fast through their real serving supervisors (no environment to build), and the pages show
why. A second, non-admin user sees none of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge import inference_client as api
from trainforge.admin_client import AdminClient
from trainforge.client import TrainforgeClient
from trainforge.estimator import Estimator
from trainforge.local_server import connect
from trainforge.session import Session
from trainforge.settings import Settings

ROLE = "arn:aws:iam::000000000000:role/TrainforgeExecutionRole"
MISSING = "s3://console-bucket/gone/model.tar.gz"
TRAINING_JOB = "console-train"


def sign_in(srv: ServerProcess, token: str) -> httpx.Client:
    """A plain HTTP client holding a console session of ``token``'s user."""
    client = httpx.Client(base_url=srv.url, timeout=30)
    r = client.post("/console/login", data={"token": token}, follow_redirects=False)
    assert r.status_code in (302, 303), r.text
    return client


def make_inference_resources(srv: ServerProcess, client: TrainforgeClient, src: Path) -> None:
    src.mkdir()
    (src / "train.py").write_text(
        "import os\nopen(os.path.join(os.environ['SM_MODEL_DIR'], 'm.txt'), 'w').write('1')\n"
    )
    Estimator(
        "trainforge/python:current",
        role=ROLE,
        instance_type="local",
        instance_count=1,
        entry_point="train.py",
        source_dir=str(src),
        sagemaker_session=Session(settings=Settings(home=srv.home)),
    ).fit(job_name=TRAINING_JOB, logs=False)
    api.create_model(
        client,
        {
            "ModelName": "console-model",
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": "trainforge/python:current", "ModelDataUrl": MISSING, "Environment": {}},
            "Tags": [{"Key": "trainforge:training-job-name", "Value": TRAINING_JOB}],
        },
    )
    variant = {"ModelName": "console-model", "InstanceType": "ml.t2.medium", "InitialInstanceCount": 1}
    api.create_endpoint_config(client, {"EndpointConfigName": "console-config", "ProductionVariants": [variant]})
    api.create_endpoint(client, {"EndpointName": "console-ep", "EndpointConfigName": "console-config"})
    api.create_transform_job(
        client,
        {
            "TransformJobName": "console-tf",
            "ModelName": "console-model",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://console-bucket/batch/"}},
                "ContentType": "text/csv",
            },
            "TransformOutput": {"S3OutputPath": "s3://console-bucket/preds/"},
            "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        },
    )
    wait_for(
        lambda: (
            api.describe_endpoint(client, "console-ep")["EndpointStatus"] == "Failed"
            and api.describe_transform_job(client, "console-tf")["TransformJobStatus"] == "Failed"
        ),
        timeout=90,
        what="the endpoint and the transform job without model data to fail",
    )


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("console-inference")
    with running_server(home, {"TRAINFORGE_STOP_GRACE_SECONDS": "2"}) as server:
        with connect(Settings(home=home), start=False) as client:
            make_inference_resources(server, client, tmp_path_factory.mktemp("src") / "src")
        yield server


@pytest.fixture(scope="module")
def admin(srv: ServerProcess) -> Iterator[httpx.Client]:
    client = sign_in(srv, srv.token)
    yield client
    client.close()


@pytest.fixture(scope="module")
def bob(srv: ServerProcess) -> Iterator[httpx.Client]:
    with connect(Settings(home=srv.home), start=False) as client:
        admin_api = AdminClient(client)
        admin_api.create_user("bob")
        token = str(admin_api.create_token("bob")["Token"])
    client = sign_in(srv, token)
    yield client
    client.close()


def test_nav_links_endpoints_and_transform_jobs_beside_training_jobs(admin: httpx.Client) -> None:
    html = admin.get("/console/jobs").text
    for href in ("/console/jobs", "/console/endpoints", "/console/transform-jobs"):
        assert f'href="{href}"' in html


def test_endpoints_list_links_each_endpoint_and_its_training_job(admin: httpx.Client) -> None:
    r = admin.get("/console/endpoints")
    assert r.status_code == 200
    row = re.search(r'<tr data-name="console-ep">.*?</tr>', r.text, re.S)
    assert row, r.text
    for part in ('href="/console/endpoints/console-ep"', "status-Failed", "1 \u00d7 ml.t2.medium", "console-model"):
        assert part in row.group(0)
    assert f'href="/console/jobs/{TRAINING_JOB}"' in row.group(0)
    empty = admin.get("/console/endpoints", params={"status": "InService"}).text
    assert 'data-name="console-ep"' not in empty and "No endpoints in status InService" in empty


def test_endpoint_page_shows_status_config_model_and_the_training_job(admin: httpx.Client) -> None:
    r = admin.get("/console/endpoints/console-ep")
    assert r.status_code == 200
    html = r.text
    assert 'id="endpoint-status">Failed<' in html and MISSING in html  # the failure reason names the URI
    for part in ("console-config", "console-model", "ml.t2.medium", "trainforge/python:current", "Metrics (totals)"):
        assert part in html
    link = re.search(r'id="training-job-link" href="([^"]+)"', html)
    assert link and link.group(1) == f"/console/jobs/{TRAINING_JOB}"
    job_page = admin.get(link.group(1))
    assert job_page.status_code == 200 and TRAINING_JOB in job_page.text
    log = admin.get("/console/endpoints/console-ep/log.txt")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")


def test_transform_job_list_and_page(admin: httpx.Client) -> None:
    listing = admin.get("/console/transform-jobs").text
    row = re.search(r'<tr data-name="console-tf">.*?</tr>', listing, re.S)
    assert row and 'href="/console/transform-jobs/console-tf"' in row.group(0)
    assert f'href="/console/jobs/{TRAINING_JOB}"' in row.group(0) and "status-Failed" in row.group(0)
    assert 'data-name="console-tf"' not in admin.get("/console/transform-jobs", params={"status": "Completed"}).text

    html = admin.get("/console/transform-jobs/console-tf").text
    assert 'id="transform-status">Failed<' in html and MISSING in html
    for part in ("s3://console-bucket/batch/", "s3://console-bucket/preds/", "1 \u00d7 ml.m5.large", "text/csv"):
        assert part in html
    assert f'id="training-job-link" href="/console/jobs/{TRAINING_JOB}"' in html
    log = admin.get("/console/transform-jobs/console-tf/log.txt")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")


def test_another_user_sees_none_of_them(bob: httpx.Client) -> None:
    assert 'data-name="console-ep"' not in bob.get("/console/endpoints").text
    assert 'data-name="console-tf"' not in bob.get("/console/transform-jobs").text
    for path in (
        "/console/endpoints/console-ep",
        "/console/endpoints/console-ep/log.txt",
        "/console/transform-jobs/console-tf",
        "/console/transform-jobs/console-tf/log.txt",
    ):
        r = bob.get(path)
        assert r.status_code == 404 and "not found" in r.text, path


def test_unknown_names_are_404_and_pages_need_a_session(srv: ServerProcess, admin: httpx.Client) -> None:
    assert admin.get("/console/endpoints/no-such-endpoint").status_code == 404
    assert admin.get("/console/transform-jobs/no-such-job").status_code == 404
    with httpx.Client(base_url=srv.url, timeout=10) as anonymous:
        r = anonymous.get("/console/endpoints", follow_redirects=False)
        assert r.status_code in (302, 303) and "/console/login" in r.headers["location"]
