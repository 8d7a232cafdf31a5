"""The XGBoost image's files run with the image's own interpreter (built once per session in ``envs_dir``):
SageMaker's ``data_utils.get_dmatrix`` helper, and built-in XGBoost on Parquet with Python-side metrics, early
stopping on a metric to maximize, and ``save_model_on_termination``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.wait import wait_for
from trainforge.runtime.builtin import IMAGE_FILES
from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.stopping import StopSignal
from trainforge.spec.images import CATALOGUE


@pytest.fixture(scope="module")
def xgboost_python(envs_dir: Path) -> str:
    """The interpreter of ``trainforge/xgboost:1.7-1`` (the environment test servers use too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    python = prepare_environment(
        CATALOGUE["trainforge/xgboost:1.7-1"],
        envs_root=envs_dir,
        server_python=sys.executable,
        env=env,
        sink=lambda stream, line: None,
        on_status=lambda message: None,
        stop=StopSignal(),
    )
    return str(python)


def job_env(root: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(IMAGE_FILES),
        "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DIR": str(root / "output"),
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_CHANNEL_VALIDATION": str(root / "input" / "data" / "validation"),
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_CPUS": "1",
    }


GET_DMATRIX = """
import json, sys
import numpy as np, pandas as pd
from sagemaker_xgboost_container.data_utils import CSV, LIBSVM, get_content_type, get_dmatrix

root = sys.argv[1]
pd.DataFrame({"label": [1.0, 0.0], "a": [0.5, 1.5], "b": [2.0, 3.0]}).to_parquet(f"{root}/pq/part.parquet")
out = {}
d = get_dmatrix(f"{root}/csv", CSV)
out["csv"] = [d.num_row(), d.num_col(), d.get_label().tolist()]
d = get_dmatrix(f"{root}/csvw", "text/csv", csv_weights=1)
out["csvw"] = [d.num_col(), d.get_weight().tolist()]
d = get_dmatrix(f"{root}/svm", LIBSVM)
out["svm"] = [d.num_row(), d.num_col(), d.get_label().tolist()]
d = get_dmatrix([f"{root}/svm", f"{root}/svm2"], "text/libsvm")
out["svm_list"] = [d.num_row(), d.num_col()]
d = get_dmatrix(f"{root}/pq", "application/x-parquet")
out["pq"] = [d.num_row(), d.num_col(), d.get_label().tolist()]
out["missing"] = [get_dmatrix(f"{root}/nothing", "libsvm") is None, get_dmatrix(None, "csv") is None]
out["types"] = [get_content_type(None), get_content_type("text/csv;label_size=1"), get_content_type("text/x-libsvm")]
try:
    get_dmatrix(f"{root}/header", "csv")
except Exception as exc:
    out["header"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_get_dmatrix_reads_csv_libsvm_and_parquet_like_sagemakers_helper(xgboost_python: str, tmp_path: Path) -> None:
    for name, text in {
        "csv/a.csv": "1,0.5,2\n0,1.5,3\n",
        "csv/b.csv": "1,2.5,4\n",
        "csvw/a.csv": "1,0.25,0.5,2\n0,4,1.5,3\n",
        "svm/a.libsvm": "1 1:0.5 3:2\n0 2:1.5\n",
        "svm2/b.libsvm": "1 5:1\n",
        "header/h.csv": "y,a\n1,2\n",
        "pq/.keep": "",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [xgboost_python, "-c", GET_DMATRIX, str(tmp_path)],
        env=job_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["csv"] == [3, 2, [1.0, 0.0, 1.0]]
    assert out["csvw"] == [2, [0.25, 4.0]]
    assert out["svm"] == [2, 4, [1.0, 0.0]]  # LIBSVM indices are columns as given (0..3)
    assert out["svm_list"] == [3, 6]
    assert out["pq"] == [2, 2, [1.0, 0.0]]
    assert out["missing"] == [True, True]
    assert out["types"] == ["libsvm", "csv", "libsvm"]
    assert out["header"].startswith("UserError: channel 'header': file h.csv line 1 is not numeric")


def write_job(root: Path, hps: dict[str, str], channels: dict[str, str]) -> None:
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    data_config = {name: {"ContentType": content_type} for name, content_type in channels.items()}
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    for name in channels:
        (root / "input" / "data" / name).mkdir(parents=True)


PARQUET_DATA = """
import sys
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
for name, rows, noise in (("train", 400, 0.0), ("validation", 200, 1.0)):
    x = rng.normal(size=(rows, 3))
    y = ((x[:, 0] + noise * rng.normal(size=rows) * 3) > 0).astype(float)
    frame = pd.DataFrame({"label": y, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    frame.to_parquet(f"{sys.argv[1]}/input/data/{name}/part-0.parquet")
"""


def test_builtin_xgboost_parquet_python_metrics_and_early_stopping_on_a_maximized_metric(
    xgboost_python: str, tmp_path: Path
) -> None:
    hps = {
        "num_round": "200",
        "objective": "binary:logistic",
        "eval_metric": "logloss,accuracy,f1",
        "early_stopping_rounds": "3",
        "max_depth": "6",
        "eta": "0.5",
    }
    write_job(tmp_path, hps, {"train": "application/x-parquet", "validation": "parquet"})
    env = job_env(tmp_path)
    subprocess.run([xgboost_python, "-c", PARQUET_DATA, str(tmp_path)], env=env, check=True, timeout=120)
    done = subprocess.run(
        [xgboost_python, "-m", "trainforge_algorithms.xgboost"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rounds = [line for line in done.stdout.splitlines() if line.startswith("[") and "\ttrain-logloss:" in line]
    names = [part.split(":")[0] for part in rounds[0].split("\t")[1:]]
    assert names == [
        "train-logloss",
        "train-accuracy",
        "train-f1",
        "validation-logloss",
        "validation-accuracy",
        "validation-f1",
    ]
    assert "Early stopping: 3 rounds without improvement of f1 on 'validation'" in done.stdout
    assert 3 < len(rounds) < 200
    best = done.stdout.split("Stopping. Best iteration:\n")[1].splitlines()[0]
    f1 = [float(line.split("validation-f1:")[1].split("\t")[0]) for line in rounds]
    assert float(best.split("validation-f1:")[1].split("\t")[0]) == pytest.approx(max(f1))  # maximized
    assert (tmp_path / "model" / "xgboost-model").is_file() and not (tmp_path / "output" / "failure").exists()


def test_save_model_on_termination_saves_the_model_when_the_job_is_stopped(xgboost_python: str, tmp_path: Path) -> None:
    write_job(tmp_path, {"num_round": "100000", "save_model_on_termination": "true"}, {"train": "text/csv"})
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 5))
    np.savetxt(tmp_path / "input/data/train/train.csv", np.c_[x.sum(axis=1), x], delimiter=",", fmt="%.5f")
    log = tmp_path / "out.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [xgboost_python, "-m", "trainforge_algorithms.xgboost"], env=job_env(tmp_path), stdout=handle, stderr=handle
        )
    try:
        wait_for(lambda: "[20]\ttrain-rmse:" in log.read_text(), timeout=120, what="20 boosting rounds")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "SIGTERM received: stopped after round " in text
    rounds = text.count("\ttrain-rmse:")
    check = "import sys, xgboost; b = xgboost.Booster(); b.load_model(sys.argv[1]); print(b.num_boosted_rounds())"
    saved = subprocess.run(
        [xgboost_python, "-c", check, str(tmp_path / "model" / "xgboost-model")], capture_output=True, text=True
    )
    assert int(saved.stdout) == rounds < 100000
