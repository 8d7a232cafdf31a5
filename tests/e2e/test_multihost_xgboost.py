"""End to end: XGBoost across hosts, as SageMaker's image runs it (a rabit ring over the hosts with data).

The built-in algorithm and the seed's abalone script (``distributed.rabit_run``) train on two hosts of one job; a
host whose ``ShardedByS3Key`` share is empty leaves the ring and ends with exit code 0, as in SageMaker's image.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

import trainforge
from tests.support.server import ServerProcess
from trainforge.inputs import TrainingInput
from trainforge.xgboost import XGBoost

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVOKING = "Invoking script with the following command:"


def model_file(session: trainforge.Session, model_data: str, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(session.object_store.get_bytes(model_data))) as tar:
        assert tar.getnames() == ["xgboost-model"]
        tar.extractall(into, filter="data")
    return into / "xgboost-model"


def job_python(out: str) -> str:
    """The interpreter in algo-1's logged command (other hosts' lines carry an ``[algo-i]`` prefix)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(INVOKING))
    return shlex.split(next(line for line in lines[start + 1 :] if line.strip()))[0]


def regression(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(rows, 4))
    return 3.0 + 10.0 * x[:, 0] - 4.0 * x[:, 1] + 2.0 * x[:, 2] * x[:, 3] + rng.normal(0.0, 0.1, rows), x


RMSE = """
import sys, numpy as np, xgboost as xgb
booster = xgb.Booster()
booster.load_model(sys.argv[1])
data = np.loadtxt(sys.argv[2], delimiter=",")
pred = booster.predict(xgb.DMatrix(data[:, 1:]))
print(json.dumps({"rmse": float(np.sqrt(np.mean((pred - data[:, 0]) ** 2))), "rounds": booster.num_boosted_rounds()}))
""".replace("import sys", "import json, sys")


def test_builtin_xgboost_trains_across_the_hosts_with_data_and_a_host_without_leaves(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    y, x = regression(900, seed=5)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        rows = slice(i * 400, (i + 1) * 400)
        np.savetxt(shards / f"part-{i}.csv", np.column_stack([y[rows], x[rows]]), delimiter=",", fmt="%.6f")
    holdout = tmp_path / "holdout.csv"
    np.savetxt(holdout, np.column_stack([y[800:], x[800:]]), delimiter=",", fmt="%.6f")
    uri = session.upload_data(str(shards), key_prefix="xgb-multihost/train")

    est = trainforge.estimator.Estimator(
        image_uri=trainforge.image_uris.retrieve("xgboost", session.boto_region_name, "1.7-1"),
        role=trainforge.get_execution_role(),
        instance_count=3,  # 2 files, ShardedByS3Key: algo-3 has no data
        instance_type="ml.m5.large",
        sagemaker_session=session,
        hyperparameters={"objective": "reg:squarederror", "num_round": 30, "max_depth": 4, "eta": 0.3},
    )
    est.fit({"train": TrainingInput(uri, content_type="text/csv", distribution="ShardedByS3Key")})
    out = capsys.readouterr().out
    assert "rabit: training on 2 of 3 hosts: algo-1, algo-2" in out
    assert "Host algo-3 not being used for distributed training." in out
    rounds = [line for line in out.splitlines() if line.startswith("[") and "\ttrain-rmse:" in line]
    assert [line.split("]")[0] for line in rounds] == [f"[{i}" for i in range(30)]  # rank 0 prints each round once
    job = est.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed"
    assert "train:rmse" in {m["MetricName"] for m in job["FinalMetricDataList"]}

    model = model_file(session, est.model_data, tmp_path / "model")
    done = subprocess.run(
        [job_python(out), "-c", RMSE, str(model), str(holdout)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rounds"] == 30
    assert result["rmse"] < 0.3 * float(np.std(y[800:]))  # trained on both shards' rows, not the mean


def test_seed_abalone_script_runs_unchanged_on_two_hosts_with_rabit(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    y, x = regression(600, seed=9)
    for channel, rows in (("train", slice(0, 500)), ("validation", slice(500, 600))):
        (tmp_path / channel).mkdir()
        lines = (
            f"{t:.4f} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(r))
            for r, t in zip(x[rows], y[rows], strict=True)
        )
        (tmp_path / channel / f"abalone.{channel}").write_text("\n".join(lines) + "\n")
    prefix = "sagemaker/DEMO-xgboost-abalone-2"
    for channel in ("train", "validation"):
        session.upload_data(str(tmp_path / channel), key_prefix=f"{prefix}/{channel}")
    bucket = session.default_bucket()
    est = XGBoost(
        entry_point="abalone.py",
        source_dir=str(EXAMPLES / "xgboost_abalone" / "src"),
        framework_version="1.2-1",
        hyperparameters={"objective": "reg:squarederror", "num_round": "20", "max_depth": "4", "eta": "0.3"},
        role=trainforge.get_execution_role(),
        instance_count=2,
        instance_type="ml.m5.large",
        sagemaker_session=session,
    )
    est.fit(
        {
            "train": TrainingInput(f"s3://{bucket}/{prefix}/train", content_type="libsvm"),
            "validation": TrainingInput(f"s3://{bucket}/{prefix}/validation", content_type="libsvm"),
        }
    )
    out = capsys.readouterr().out
    assert "Completed - Training job completed" in out
    assert "rabit: training on 2 of 2 hosts: algo-1, algo-2" in out
    assert "[19]\ttrain-rmse:" in out
    with tarfile.open(fileobj=io.BytesIO(session.object_store.get_bytes(est.model_data))) as tar:
        assert tar.getnames() == ["xgboost-model"]  # only the master (is_master) stored it
