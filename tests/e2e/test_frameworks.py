"""End to end: the framework estimators run unmodified SageMaker script-mode scripts in their images.

The XGBoost and PyTorch images are real uv environments built once per test session (``envs_dir``); the
test interpreter has neither xgboost nor torch, so models are checked with the job's own interpreter (the
first word of the command the supervisor logs before running the script).
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
from trainforge.pytorch import PyTorch
from trainforge.storage import LocalObjectStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVOKING = "Invoking script with the following command:"


def extract_model(server: ServerProcess, model_data: str, into: Path) -> dict[str, Path]:
    """Unpack ``model.tar.gz`` into ``into``; return its files by name."""
    data = LocalObjectStore(server.home / "storage").get_bytes(model_data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return {p.name: p for p in into.rglob("*") if p.is_file()}


def logged_command(out: str) -> list[str]:
    """The command the supervisor logged before running the script."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if INVOKING in line)
    return shlex.split(next(line for line in lines[start + 1 :] if line.strip()))


def run_python(python: str, code: str, *args: str) -> str:
    """Run ``code`` in the job's interpreter; return its stdout."""
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_libsvm(path: Path, features: np.ndarray, target: np.ndarray) -> None:
    rows = (
        f"{y:.4f} " + " ".join(f"{j + 1}:{v:.4f}" for j, v in enumerate(x))
        for x, y in zip(features, target, strict=True)
    )
    path.write_text("\n".join(rows) + "\n")


def regression_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(rows, features))
    y = 3.0 + 10.0 * x[:, 0] - 4.0 * x[:, 1] + 2.0 * x[:, 2] * x[:, 3] + rng.normal(0.0, 0.1, rows)
    return x, y


def test_seed_second_sample_xgboost_framework_estimator_runs_the_abalone_style_script(
    server: ServerProcess, session: trainforge.Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Data for the abalone-style script: LIBSVM files in the train and validation channels.
    x, y = regression_data(1000, 8, seed=7)
    (tmp_path / "train").mkdir()
    (tmp_path / "validation").mkdir()
    write_libsvm(tmp_path / "train" / "abalone.train", x[:800], y[:800])
    write_libsvm(tmp_path / "validation" / "abalone.validation", x[800:], y[800:])
    bucket = session.default_bucket()
    prefix = "sagemaker/DEMO-xgboost-abalone"
    session.upload_data(str(tmp_path / "train"), bucket=bucket, key_prefix=f"{prefix}/train")
    session.upload_data(str(tmp_path / "validation"), bucket=bucket, key_prefix=f"{prefix}/validation")
    role = trainforge.get_execution_role()

    # The seed's second sample, with only "sagemaker" replaced by "trainforge".
    from trainforge.xgboost.estimator import XGBoost

    hyperparams = {
        "max_depth": "5",
        "eta": "0.2",
        "gamma": "4",
        "min_child_weight": "6",
        "subsample": "0.7",
        "verbosity": "1",
        "objective": "reg:squarederror",
        "num_round": "50",
    }
    instance_type = "ml.m5.2xlarge"
    output_path = f"s3://{bucket}/{prefix}/xgboost-script-mode"
    content_type = "libsvm"

    xgb_estimator = XGBoost(
        entry_point="abalone.py",
        source_dir=str(EXAMPLES / "xgboost_abalone" / "src"),
        framework_version="1.2-1",
        hyperparameters=hyperparams,
        role=role,
        instance_count=1,
        instance_type=instance_type,
        output_path=output_path,
        sagemaker_session=session,
    )

    from trainforge.inputs import TrainingInput

    train_input = TrainingInput(f"s3://{bucket}/{prefix}/train", content_type=content_type)
    validation_input = TrainingInput(f"s3://{bucket}/{prefix}/validation", content_type=content_type)
    xgb_estimator.fit({"train": train_input, "validation": validation_input})

    out = capsys.readouterr().out
    assert "Completed - Training job completed" in out
    assert "[49]\ttrain-rmse:" in out and "\tvalidation-rmse:" in out  # one line per round, as xgboost prints
    assert "Stored trained model at" in out
    job = xgb_estimator.latest_training_job.describe()
    assert job["AlgorithmSpecification"]["TrainingImage"] == "trainforge/xgboost:1.7-1"
    assert job["HyperParameters"]["objective"] == '"reg:squarederror"'
    assert xgb_estimator.model_data.startswith(f"{output_path}/{job['TrainingJobName']}/output/model.tar.gz")

    files = extract_model(server, xgb_estimator.model_data, tmp_path / "model")
    assert sorted(files) == ["xgboost-model"]
    python = logged_command(out)[0]
    assert run_python(python, "import flask, sagemaker_inference.decoder, six, PIL, yaml; print('ok')").strip() == "ok"
    check = (
        "import pickle, sys, numpy as np, xgboost as xgb\n"
        "booster = pickle.load(open(sys.argv[1], 'rb'))\n"
        "data = xgb.DMatrix(sys.argv[2] + '?format=libsvm')\n"
        "pred = booster.predict(data)\n"
        "print(float(np.sqrt(np.mean((pred - data.get_label()) ** 2))))\n"
    )
    rmse = float(
        run_python(python, check, str(files["xgboost-model"]), str(tmp_path / "validation" / "abalone.validation"))
    )
    assert rmse < 0.5 * float(np.std(y[800:]))  # it learned the function, not the mean


def pytorch_estimator(session: trainforge.Session, **kwargs: object) -> PyTorch:
    return PyTorch(
        entry_point="train.py",
        source_dir=str(EXAMPLES / "pytorch_mlp" / "src"),
        framework_version="2.1",
        py_version="py310",
        role=trainforge.get_execution_role(),
        instance_count=1,
        instance_type="ml.m5.large",
        hyperparameters={"epochs": 20, "batch-size": 64, "lr": 0.01},
        sagemaker_session=session,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def training_csv(session: trainforge.Session, tmp_path: Path) -> tuple[str, Path]:
    """Regression data as headerless CSV (target first) in the object store; returns its URI and local file."""
    x, y = regression_data(512, 4, seed=3)
    path = tmp_path / "data" / "train.csv"
    path.parent.mkdir()
    np.savetxt(path, np.column_stack([y, x]), delimiter=",", fmt="%.6f")
    return session.upload_data(str(path.parent), key_prefix="pytorch-mlp/train"), path


CHECK_STATE_DICT = """
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from train import model_fn
state = torch.load(sys.argv[2] + "/model.pth", map_location="cpu")
model = model_fn(sys.argv[2])
data = np.loadtxt(sys.argv[3], delimiter=",", dtype=np.float32)
with torch.no_grad():
    pred = model(torch.from_numpy(data[:, 1:])).numpy()
mse = float(np.mean((pred - data[:, 0]) ** 2))
print(json.dumps({"keys": sorted(state), "mse": mse, "var": float(np.var(data[:, 0]))}))
"""


def check_state_dict(python: str, model_dir: Path, data: Path) -> dict[str, object]:
    result = json.loads(
        run_python(python, CHECK_STATE_DICT, str(EXAMPLES / "pytorch_mlp" / "src"), str(model_dir), str(data))
    )
    assert result["keys"] == [f"layers.{i}.{p}" for i in (0, 2, 4) for p in ("bias", "weight")]
    assert result["mse"] < 0.2 * result["var"]  # the network learned the function
    return result


def test_pytorch_cpu_job_trains_a_network_and_saves_its_state_dict(
    server: ServerProcess,
    session: trainforge.Session,
    training_csv: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri, local = training_csv
    est = pytorch_estimator(session)
    est.fit({"training": TrainingInput(uri, content_type="text/csv")})

    out = capsys.readouterr().out
    assert "device: cpu (hosts=['algo-1'], num_gpus=0)" in out
    assert "epoch 20: train_loss=" in out
    assert "saved the model's state_dict to" in out
    job = est.latest_training_job.describe()
    assert job["AlgorithmSpecification"]["TrainingImage"] == "trainforge/pytorch:2.13-cpu"
    cmd = logged_command(out)
    assert cmd[1:] == ["train.py", "--batch-size", "64", "--epochs", "20", "--lr", "0.01"]
    version = run_python(cmd[0], "import torch; print(torch.__version__, torch.cuda.is_available())").split()
    assert version == ["2.13.0+cpu", "False"]  # the CPU build from the local wheel folder, never a CUDA one
    # What SageMaker's PyTorch container ships beside torch (a public example reads CSV with pandas, imports six).
    libs = "pandas, scipy, sklearn, six, PIL, requests, cv2, h5py, yaml, boto3, flask, sagemaker_inference.encoder"
    assert run_python(cmd[0], f"import {libs}; print('ok')").strip() == "ok"

    files = extract_model(server, str(est.model_data), tmp_path / "model")
    assert sorted(files) == ["model.pth", "model_info.json"]
    check_state_dict(cmd[0], tmp_path / "model", local)


def test_torch_distributed_runs_the_script_under_torchrun_with_the_rendezvous_variables(
    server: ServerProcess,
    session: trainforge.Session,
    training_csv: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri, local = training_csv
    est = pytorch_estimator(session, distribution={"torch_distributed": {"enabled": True}})
    est.fit({"training": TrainingInput(uri, content_type="text/csv")})

    out = capsys.readouterr().out
    job = est.latest_training_job.describe()
    assert job["HyperParameters"]["sagemaker_torch_distributed_enabled"] == "true"
    cmd = logged_command(out)
    assert cmd[1:12] == [
        "-m", "torch.distributed.run", "--nnodes", "1", "--node_rank", "0", "--nproc_per_node", "1",
        "--master_addr", "127.0.0.1", "--master_port",
    ]  # fmt: skip
    port = cmd[12]
    assert cmd[13:] == ["train.py", "--batch-size", "64", "--epochs", "20", "--lr", "0.01"]
    # torchrun gave the script its rank variables; the script joined the process group from them.
    assert f"distributed: backend=gloo rank=0 local_rank=0 world_size=1 master=127.0.0.1:{port} host=algo-1" in out
    assert '"sagemaker_torch_distributed_enabled": true' in out  # SM_TRAINING_ENV's framework parameters

    files = extract_model(server, str(est.model_data), tmp_path / "model")
    assert "model.pth" in files
    check_state_dict(cmd[0], tmp_path / "model", local)
