"""``python -m trainforge_serving`` as a real process on a tiny model directory: /ping, /invocations in JSON, CSV
and NPY, 415, 413, a failing handler's 500 with its message, ``(body, content_type)`` answers, models that cannot
start, and the built-in XGBoost algorithm's serve with a real booster (in the XGBoost image's interpreter)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from tests.support.model_server import ModelServer, model_server, run_to_exit
from trainforge.runtime.envcache import prepare_environment
from trainforge.runtime.stopping import StopSignal
from trainforge.spec.images import CATALOGUE

SCRIPT = """
import json, os

class TeapotError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.status_code = 418
        self.message = message

def model_fn(model_dir, context):
    with open(os.path.join(model_dir, "scale.txt")) as f:
        return {"scale": float(f.read()), "dir": context.model_dir}

def input_fn(data, content_type):
    if content_type == "application/x-teapot":
        raise TeapotError("I am a teapot")
    return json.loads(data)

def predict_fn(data, model):
    if any(v < 0 for v in data):
        raise ValueError(f"negative input: {min(data)}")
    return [v * model["scale"] for v in data]

def output_fn(prediction, accept):
    return json.dumps({"scaled": prediction}), "application/vnd.scaled+json"
"""


@pytest.fixture(scope="module")
def sklearn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """The SKLearn container's defaults on a ``model.joblib`` predicting ``x0 + 2*x1``; payloads limited to ~1 KB."""
    model_dir = tmp_path_factory.mktemp("sk-model")
    X = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 3]], dtype=float)
    joblib.dump(LinearRegression().fit(X, X[:, 0] + 2 * X[:, 1]), model_dir / "model.joblib")
    with model_server(model_dir, "sklearn", env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.001"}) as server:
        yield server


@pytest.fixture(scope="module")
def script_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """A generic model whose inference script defines every handler."""
    model_dir = tmp_path_factory.mktemp("script-model")
    (model_dir / "scale.txt").write_text("10")
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(SCRIPT)
    with model_server(model_dir, "generic", env={"SAGEMAKER_PROGRAM": "inference.py"}) as server:
        yield server


def predictions(body: bytes) -> list[float]:
    return [round(float(v), 6) for v in np.ravel(json.loads(body))]


def test_ping_and_json_csv_npy_invocations(sklearn_server: ModelServer) -> None:
    status, body, _ = sklearn_server.request("GET", "/ping")
    assert status == 200
    status, body, ctype = sklearn_server.invoke(b"[[1, 1], [2, 0]]", "application/json")
    assert (status, ctype) == (200, "application/json")
    assert predictions(body) == [3.0, 2.0]
    status, body, ctype = sklearn_server.invoke(b"1,1\n0,2\n", "text/csv", "text/csv")
    assert (status, ctype) == (200, "text/csv")
    assert [round(float(v), 6) for v in body.decode().split()] == [3.0, 4.0]
    status, body, _ = sklearn_server.invoke(b"3,0", "text/csv", "*/*")  # one CSV line is one row; */* -> JSON
    assert predictions(body) == [3.0]
    buffer = io.BytesIO()
    np.save(buffer, np.array([[0.0, 1.0]]))
    status, body, ctype = sklearn_server.invoke(buffer.getvalue(), "application/x-npy", "application/x-npy")
    assert (status, ctype) == (200, "application/x-npy")
    assert np.load(io.BytesIO(body)).round(6).tolist() == [2.0]


def test_unsupported_content_type_is_415_and_too_large_a_payload_413(sklearn_server: ModelServer) -> None:
    status, body, _ = sklearn_server.invoke(b"<x/>", "application/xml")
    assert status == 415
    assert "application/xml" in body.decode() and "text/csv" in body.decode()
    status, body, _ = sklearn_server.invoke(b"1," * 2000, "text/csv")
    assert status == 413
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in body.decode()
    assert sklearn_server.request("GET", "/ping")[0] == 200  # the server goes on answering
    assert sklearn_server.request("POST", "/nowhere", b"{}")[0] == 404


def test_script_handlers_with_context_and_a_named_content_type(script_server: ModelServer) -> None:
    status, body, ctype = script_server.invoke(b"[1, 2.5]", "application/json")
    assert (status, ctype) == (200, "application/vnd.scaled+json")
    assert json.loads(body) == {"scaled": [10.0, 25.0]}


def test_a_handler_that_raises_is_500_with_its_message_and_the_server_stays_up(script_server: ModelServer) -> None:
    status, body, _ = script_server.invoke(b"[1, -3]", "application/json")
    assert status == 500
    text = body.decode()
    assert text.startswith("negative input: -3\nTraceback")
    assert "inference.py" in text
    status, body, _ = script_server.invoke(b"[]", "application/x-teapot")
    assert status == 418
    assert body.decode().startswith("I am a teapot")
    assert script_server.invoke(b"[2]", "application/json")[0] == 200


def test_a_model_that_cannot_start_exits_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(
        "def transform_fn(model, data, content_type, accept):\n    return data\n"
        "def input_fn(data, content_type):\n    return data\n"
    )
    rc, output = run_to_exit(tmp_path, "generic", env={"SAGEMAKER_PROGRAM": "inference.py"})
    assert rc == 1
    assert "transform_fn cannot be used together with input_fn" in output
    rc, output = run_to_exit(tmp_path, "pytorch")
    assert rc == 1
    assert "PyTorch models need a model_fn" in output


# ----------------------------------------------------------------------------------- built-in XGBoost

TRAIN = """
import sys
import numpy as np, xgboost as xgb
rng = np.random.default_rng(0)
X = rng.random((200, 3))
y = (X[:, 0] + X[:, 1] > 1).astype(float)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=20)
booster.save_model(sys.argv[1])
"""


@pytest.fixture(scope="module")
def xgboost_model(envs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The XGBoost image's interpreter and a model directory holding a trained ``xgboost-model``."""
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
    model_dir = tmp_path_factory.mktemp("xgb-model")
    subprocess.run([str(python), "-c", TRAIN, str(model_dir / "xgboost-model")], check=True, timeout=120)
    return str(python), model_dir


def test_builtin_xgboost_serves_csv_and_libsvm(xgboost_model: tuple[str, Path]) -> None:
    python, model_dir = xgboost_model
    with model_server(model_dir, "xgboost-algorithm", python=python) as server:
        status, body, ctype = server.invoke(b"0.9,0.9,0.1\n0.05,0.1,0.5\n", "text/csv")
        assert (status, ctype) == (200, "text/csv")  # CSV is the default answer
        high, low = (float(v) for v in body.decode().split())
        assert high > 0.5 > low
        status, body, _ = server.invoke(b"0:0.9 1:0.9 2:0.1\n", "text/libsvm", "application/json")
        assert status == 200
        assert json.loads(body)["predictions"][0]["score"] == pytest.approx(high, rel=1e-5)
        status, body, _ = server.invoke(b"0.05,0.1,0.5", None, "application/jsonlines")  # no Content-Type: CSV
        assert json.loads(body.decode().splitlines()[0])["score"] == pytest.approx(low, rel=1e-5)
        status, body, _ = server.invoke(b"[1, 2]", "application/json")
        assert status == 415 and "text/libsvm" in body.decode()
        status, body, _ = server.invoke(b"1,2,3,4,5\n", "text/csv")
        assert status == 400 and "trained on 3" in body.decode()
    outputs = {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label,probability"}
    with model_server(model_dir, "xgboost-algorithm", python=python, env=outputs) as server:
        status, body, _ = server.invoke(b"0.9,0.9,0.1\n", "text/csv", "application/json")
        (record,) = json.loads(body)["predictions"]
        assert record["predicted_label"] == 1
        assert record["probability"] == pytest.approx(high, rel=1e-4)


def test_script_mode_xgboost_default_model_fn_loads_xgboost_model(xgboost_model: tuple[str, Path]) -> None:
    python, model_dir = xgboost_model
    with model_server(model_dir, "xgboost", python=python) as server:
        status, body, _ = server.invoke(b"0.9,0.9,0.1\n", "text/csv", "application/json")
        assert status == 200
        assert json.loads(body)[0] > 0.5


def test_script_is_read_from_the_model_code_directory(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "helper.py").write_text("FACTOR = 3\n")
    (tmp_path / "code" / "inference.py").write_text(
        textwrap.dedent(
            """
            from helper import FACTOR
            def model_fn(model_dir):
                return FACTOR
            def predict_fn(data, model):
                return data * model
            """
        )
    )
    with model_server(tmp_path, "generic", env={"SAGEMAKER_PROGRAM": "inference.py"}) as server:
        status, body, _ = server.invoke(b"[1, 2]", "application/json")
        assert (status, json.loads(body)) == (200, [3, 6])
