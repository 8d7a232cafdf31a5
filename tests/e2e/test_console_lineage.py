"""The console's job page shows a job's lineage, and Clone reruns it, landing on the new job's page with the
rerun's warnings (a real server, a real supervisor, a real browser)."""

from __future__ import annotations

import io
import json
import re
import tarfile

from playwright.sync_api import Browser, expect

from tests.e2e.test_console import browser, job_spec, signed_in  # noqa: F401 - the module's browser fixture
from tests.e2e.test_lineage import ended
from tests.support.server import ServerProcess
from trainforge.storage import LocalObjectStore

TRAIN_PY = b"""\
import os
data = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "rows.csv")).read()
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write(str(len(data)))
print("trained on", len(data), "bytes")
"""


def test_job_page_shows_lineage_and_clone_warns_about_changed_data(browser: Browser, server: ServerProcess) -> None:  # noqa: F811
    objects = LocalObjectStore(server.home / "storage")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(TRAIN_PY)
        tar.addfile(info, io.BytesIO(TRAIN_PY))
    source = "s3://trainforge-default/console-lineage/source/sourcedir.tar.gz"
    objects.put_bytes(source, buf.getvalue())
    data = "s3://trainforge-default/console-lineage/train/rows.csv"
    objects.put_bytes(data, b"1,2\n")
    body = job_spec(
        "console-lineage",
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)},
        InputDataConfig=[
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": data, "S3DataType": "S3Prefix"}}}
        ],
    )
    with server.client() as c:
        assert c.post("/v1/training-jobs", json=body).status_code == 200
    described = ended(server, "console-lineage")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    lineage = described["Lineage"]

    page = signed_in(browser, server)
    page.goto("/console/jobs/console-lineage")
    section = page.locator("#lineage")
    expect(page.locator("#lineage-fingerprint")).to_have_text(lineage["Environment"]["Fingerprint"])
    expect(page.locator("#lineage-code-sha")).to_have_text(lineage["Code"]["Sha256"])
    expect(page.locator("#lineage-model-sha")).to_have_text(lineage["Output"]["ModelContentSha256"])
    distributions = page.locator("#lineage-distributions")
    expect(distributions.locator("summary")).to_have_text(
        f"{len(lineage['Environment']['Distributions'])} installed distributions"
    )
    expect(distributions.locator("table")).to_be_hidden()  # expandable: closed until asked
    distributions.locator("summary").click()
    expect(distributions.locator("th", has_text=re.compile(r"^numpy$"))).to_be_visible()
    channel = section.locator("#lineage-channel-train")
    expect(channel.locator("summary")).to_have_text("Channel train: 1 object(s), 4 B")
    channel.locator("summary").click()
    expect(channel.locator("td code").first).to_have_text(data)

    # The data changed since: Clone reruns the job and the new page says which object changed.
    objects.put_bytes(data, b"1,2\n3,4\n")
    page.once("dialog", lambda d: d.accept())
    page.click("#clone-button")
    expect(page).to_have_url(re.compile(r"/console/jobs/console-lineage-rerun-1\?cloned_from=console-lineage&warning="))
    expect(page.locator("#job-name")).to_have_text("console-lineage-rerun-1")
    expect(page.locator("#cloned-notice")).to_contain_text("console-lineage")
    expect(page.locator(".clone-warning")).to_have_count(1)
    expect(page.locator(".clone-warning")).to_contain_text(
        f"channel 'train': data changed since console-lineage ran: changed {data}"
    )
    rerun = ended(server, "console-lineage-rerun-1")
    assert rerun["TrainingJobStatus"] == "Completed"
    assert rerun["Lineage"]["Environment"]["Fingerprint"] == lineage["Environment"]["Fingerprint"]
    assert rerun["Lineage"]["Output"] != lineage["Output"]  # 8 bytes of data now, not 4
    page.context.close()
