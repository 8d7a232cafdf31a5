"""End to end: built-in algorithms (XGBoost, linear-learner, kmeans) through a base ``Estimator`` with no entry
point, exactly as SageMaker notebooks use them, on a real server and real supervisors.

The algorithm images are real uv environments built once per test session (``envs_dir``). The test
interpreter has no xgboost: the saved model is loaded with the job's own interpreter (the first word of the
command the supervisor logs before running the algorithm).
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trainforge
from tests.support.server import ServerProcess
from trainforge.errors import UnexpectedStatusError
from trainforge.estimator import Estimator
from trainforge.inputs import TrainingInput
from trainforge.storage import LocalObjectStore

INVOKING = "Invoking script with the following command:"


def model_files(server: ServerProcess, model_data: str, into: Path) -> dict[str, Path]:
    """Unpack ``model.tar.gz`` into ``into``; return its files by name."""
    data = LocalObjectStore(server.home / "storage").get_bytes(model_data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return {p.name: p for p in into.rglob("*") if p.is_file()}


def job_python(out: str) -> str:
    """The interpreter of the command the supervisor logged before running the algorithm."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if INVOKING in line)
    return shlex.split(next(line for line in lines[start + 1 :] if line.strip()))[0]


def write_csv(path: Path, label: np.ndarray | None, features: np.ndarray) -> Path:
    data = features if label is None else np.column_stack([label, features])
    np.savetxt(path, data, delimiter=",", fmt="%.6f")
    return path


def regression(rows: int, seed: int, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    return x @ np.array([1.5, -2.0, 0.5, 3.0]) + rng.normal(size=rows) * noise, x


def final_metrics(describe: dict[str, Any]) -> dict[str, float]:
    return {m["MetricName"]: m["Value"] for m in describe.get("FinalMetricDataList", [])}


def test_seed_first_code_sample_builtin_xgboost(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket, prefix = session.default_bucket(), "sagemaker/DEMO-xgboost-builtin"
    y, x = regression(300, seed=1)
    session.upload_data(str(write_csv(tmp_path / "train.csv", y, x)), bucket=bucket, key_prefix=f"{prefix}/data")

    # The seed's first code sample (AWS's built-in XGBoost example) with only `sagemaker` -> `trainforge`.
    region = session.boto_region_name
    role = trainforge.get_execution_role()
    s3_output_location = "s3://{}/{}/{}".format(bucket, prefix, "xgboost_model")
    container = trainforge.image_uris.retrieve("xgboost", region, "1.2-1")
    xgb_model = trainforge.estimator.Estimator(
        image_uri=container,
        role=role,
        instance_count=1,
        instance_type="ml.m5.large",
        volume_size=5,
        output_path=s3_output_location,
        sagemaker_session=session,
    )
    xgb_model.set_hyperparameters(
        max_depth=5, eta=0.2, gamma=4, min_child_weight=6, subsample=0.7, objective="reg:squarederror", num_round=20
    )
    from trainforge.session import TrainingInput as SessionTrainingInput

    train_input = SessionTrainingInput("s3://{}/{}/{}".format(bucket, prefix, "data/train.csv"), content_type="csv")
    xgb_model.fit({"train": train_input}, wait=True)

    out = capsys.readouterr().out
    rounds = [line for line in out.splitlines() if line.startswith("[") and "\ttrain-rmse:" in line]
    assert [line.split("]")[0] for line in rounds] == [f"[{i}" for i in range(20)]
    assert "Completed - Training job completed" in out

    d = xgb_model.latest_training_job.describe()
    assert d["TrainingJobStatus"] == "Completed"
    assert d["AlgorithmSpecification"]["TrainingImage"] == "trainforge/xgboost:1.7-1"
    assert d["HyperParameters"] == {
        "max_depth": "5",
        "eta": "0.2",
        "gamma": "4",
        "min_child_weight": "6",
        "subsample": "0.7",
        "objective": "reg:squarederror",
        "num_round": "20",
    }
    names = [m["Name"] for m in d["AlgorithmSpecification"]["MetricDefinitions"]]
    assert names == ["train:rmse", "validation:rmse"]
    metrics = final_metrics(d)
    last = float(rounds[-1].split("train-rmse:")[1])
    assert metrics["train:rmse"] == pytest.approx(last)
    assert xgb_model.model_data.startswith(f"{s3_output_location}/")

    files = model_files(server, xgb_model.model_data, tmp_path / "model")
    assert list(files) == ["xgboost-model"]
    check = (
        "import sys, xgboost; b = xgboost.Booster(); b.load_model(sys.argv[1]); "
        "print(b.num_boosted_rounds(), b.num_features())"
    )
    done = subprocess.run(
        [job_python(out), "-c", check, str(files["xgboost-model"])], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "4"]


def test_builtin_xgboost_validation_metrics_and_early_stopping(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    y, x = regression(300, seed=2)
    noise_y, noise_x = regression(100, seed=3, noise=8.0)
    train = session.upload_data(str(write_csv(tmp_path / "train.csv", y, x)), key_prefix="es/train")
    (tmp_path / "val").mkdir()
    validation = session.upload_data(
        str(write_csv(tmp_path / "val" / "part-0.csv", noise_y, noise_x)), key_prefix="es/validation"
    )
    est = Estimator(
        image_uri=trainforge.image_uris.retrieve("xgboost", session.boto_region_name, "1.7-1"),
        role=trainforge.get_execution_role(),
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
        hyperparameters={
            "num_round": 300,
            "max_depth": 6,
            "eta": 0.5,
            "objective": "reg:linear",
            "eval_metric": "mae,rmse",
            "early_stopping_rounds": 4,
        },
    )
    est.fit(
        {
            "train": TrainingInput(train, content_type="text/csv"),
            "validation": TrainingInput(validation, content_type="text/csv"),
        }
    )
    out = capsys.readouterr().out
    assert "objective 'reg:linear' is deprecated in XGBoost: training with 'reg:squarederror'" in out
    rounds = [line for line in out.splitlines() if line.startswith("[") and "\tvalidation-rmse:" in line]
    assert "\ttrain-mae:" in rounds[0] and "\tvalidation-mae:" in rounds[0]
    assert "Stopping. Best iteration:" in out
    assert 4 < len(rounds) < 300  # stopped early, after at least early_stopping_rounds rounds

    d = est.latest_training_job.describe()
    assert [m["Name"] for m in d["AlgorithmSpecification"]["MetricDefinitions"]] == [
        "train:mae",
        "validation:mae",
        "train:rmse",
        "validation:rmse",
    ]
    metrics = final_metrics(d)
    assert set(metrics) >= {"train:mae", "validation:mae", "train:rmse", "validation:rmse"}
    best_line = out.split("Stopping. Best iteration:")[1].strip().splitlines()[0]
    assert metrics["validation:rmse"] == pytest.approx(float(best_line.split("validation-rmse:")[1]))
    best = int(best_line[1 : best_line.index("]")])
    files = model_files(server, est.model_data, tmp_path / "model")
    check = "import sys, xgboost; b = xgboost.Booster(); b.load_model(sys.argv[1]); print(b.num_boosted_rounds())"
    done = subprocess.run([job_python(out), "-c", check, str(files["xgboost-model"])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == best + 1  # the best iteration's model is kept


def failing_job(session: trainforge.Session, hyperparameters: dict[str, Any], inputs: dict[str, Any]) -> Estimator:
    est = Estimator(
        image_uri="trainforge/xgboost:1.7-1",
        role=trainforge.get_execution_role(),
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
        hyperparameters=hyperparameters,
    )
    est.fit(inputs, wait=False)
    return est


def reason_of(est: Estimator) -> str:
    with pytest.raises(UnexpectedStatusError) as info:
        est.latest_training_job.wait(logs="None")
    return info.value.failure_reason or ""


def test_builtin_xgboost_bad_input_fails_with_a_clear_reason(session: trainforge.Session, tmp_path: Path) -> None:
    y, x = regression(50, seed=4)
    header = tmp_path / "with_header.csv"
    header.write_text("label,a,b,c,d\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in np.c_[y, x]) + "\n")
    with_header = session.upload_data(str(header), key_prefix="bad/header")
    good = session.upload_data(str(write_csv(tmp_path / "good.csv", y, x)), key_prefix="bad/good")
    csv = {"train": TrainingInput(with_header, content_type="text/csv")}
    good_csv = {"train": TrainingInput(good, content_type="csv")}
    jobs = {
        "header": failing_job(session, {"num_round": 5}, csv),
        "unknown": failing_job(
            session, {"num_round": 5, "max_dept": 3}, {"train": TrainingInput(good, content_type="csv")}
        ),
        "range": failing_job(session, {"num_round": 5, "eta": 1.5}, good_csv),
        "no-train": failing_job(session, {"num_round": 5}, {"validation": TrainingInput(good, content_type="csv")}),
        "libsvm-default": failing_job(session, {"num_round": 5}, {"train": TrainingInput(good)}),
    }
    reasons = {key: reason_of(est) for key, est in jobs.items()}
    assert reasons["header"] == (
        "AlgorithmError: channel 'train': file with_header.csv line 1 is not numeric: it looks like a header row "
        "('label,a,b,c,d'); built-in XGBoost expects CSV without a header, label in the first column"
    )
    assert reasons["unknown"] == (
        "AlgorithmError: hyperparameter 'max_dept' is not a hyperparameter of built-in XGBoost (did you mean "
        "'max_depth'?); see docs/algorithms.md for the accepted names"
    )
    assert reasons["range"] == "AlgorithmError: hyperparameter 'eta' = '1.5' is invalid: must be a number in [0, 1]"
    assert reasons["no-train"].startswith(
        "AlgorithmError: channel 'train' is required: built-in XGBoost trains on the 'train' channel "
        "(channels given: validation)"
    )
    assert reasons["libsvm-default"].startswith("AlgorithmError: channel 'train': file good.csv line 1 is not LIBSVM")
    assert "set content_type='text/csv'" in reasons["libsvm-default"]


def run_in(python: str, code: str, *args: str) -> str:
    """Run ``code`` with the job's interpreter (its scikit-learn reads the model); return stdout."""
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_builtin_linear_learner_and_kmeans_train_and_record_metrics(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) + rng.normal(size=600) * 0.2 > 0).astype(float)
    splits = {"train": slice(0, 400), "validation": slice(400, 500), "test": slice(500, 600)}
    uris = {
        name: session.upload_data(
            str(write_csv(tmp_path / f"ll-{name}.csv", y[rows], x[rows])), key_prefix=f"ll/{name}"
        )
        for name, rows in splits.items()
    }
    linear = Estimator(
        image_uri=trainforge.image_uris.retrieve("linear-learner", session.boto_region_name),
        role=trainforge.get_execution_role(),
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
    )
    linear.set_hyperparameters(predictor_type="binary_classifier", epochs=6, mini_batch_size=64)
    linear.fit({name: TrainingInput(uri, content_type="text/csv") for name, uri in uris.items()}, wait=False)

    centers = np.array([[0.0, 0.0], [6.0, 6.0], [-6.0, 6.0]])
    points = centers[rng.integers(0, 3, 300)] + rng.normal(size=(300, 2)) * 0.5
    km_train = session.upload_data(str(write_csv(tmp_path / "km-train.csv", None, points[:240])), key_prefix="km/t")
    km_test = session.upload_data(str(write_csv(tmp_path / "km-test.csv", None, points[240:])), key_prefix="km/e")
    kmeans = Estimator(
        image_uri=trainforge.image_uris.retrieve("kmeans", session.boto_region_name),
        role=trainforge.get_execution_role(),
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
        hyperparameters={"k": 3, "feature_dim": 2, "epochs": 2, "mini_batch_size": 50, "eval_metrics": '["msd","ssd"]'},
    )
    kmeans.fit(
        {"train": TrainingInput(km_train, content_type="text/csv"), "test": TrainingInput(km_test, content_type="csv")},
        wait=False,
    )

    linear.latest_training_job.wait()
    out = capsys.readouterr().out
    assert "#quality_metric: host=algo-1, epoch=0, train objective_loss <loss>=" in out
    assert "#test_score (algo-1) : ('binary_classification_accuracy', " in out
    metrics = final_metrics(linear.latest_training_job.describe())
    assert metrics["test:binary_classification_accuracy"] > 0.85
    assert metrics["validation:binary_classification_accuracy"] > 0.85
    assert {"train:objective_loss", "validation:objective_loss", "test:roc_auc_score"} <= set(metrics)
    files = model_files(server, linear.model_data, tmp_path / "ll-model")
    assert sorted(files) == ["linear_learner.json", "model.joblib"]
    test_csv = str(tmp_path / "ll-test.csv")
    accuracy = run_in(
        job_python(out),
        "import sys, joblib, numpy as np; m = joblib.load(sys.argv[1]); d = np.loadtxt(sys.argv[2], delimiter=',');"
        " print((m.predict(d[:, 1:]) == d[:, 0]).mean())",
        str(files["model.joblib"]),
        test_csv,
    )
    # A plain scikit-learn estimator on raw features: normalization and threshold are folded into it.
    assert float(accuracy) == pytest.approx(metrics["test:binary_classification_accuracy"])

    kmeans.latest_training_job.wait()
    out = capsys.readouterr().out
    metrics = final_metrics(kmeans.latest_training_job.describe())
    assert set(metrics) >= {"train:msd", "test:msd", "test:ssd"}
    assert metrics["test:msd"] < 1.0  # three well separated clusters of spread 0.5
    assert metrics["test:ssd"] == pytest.approx(metrics["test:msd"] * 60, rel=1e-6)
    files = model_files(server, kmeans.model_data, tmp_path / "km-model")
    found = run_in(
        job_python(out),
        "import sys, joblib; print(joblib.load(sys.argv[1]).cluster_centers_.tolist())",
        str(files["model.joblib"]),
    )
    got = np.array(json.loads(found))
    assert np.abs(np.sort(got, axis=0) - np.sort(centers, axis=0)).max() < 0.5
