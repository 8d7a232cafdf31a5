"""The acceptance flow of deploy and batch transform (issue #11), written as a SageMaker user writes it.

One server for the module. An SKLearn estimator trains a script that also defines ``model_fn``; its model is
deployed with ``est.deploy()``, called with CSV rows and deleted; the same model data is then served by an
``SKLearnModel`` with its own ``inference.py``; the estimator's ``transformer()`` runs a batch transform over three
files. Built-in XGBoost (CSV in, predictions out) and a PyTorch model with ``model_fn``/``predict_fn`` follow.
Framework images are the session's shared environments (``envs_dir``).
"""

from __future__ import annotations

import io
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

import trainforge
from tests.support.server import ServerProcess, running_server
from tests.support.wait import wait_for
from trainforge.deserializers import CSVDeserializer, JSONDeserializer
from trainforge.errors import ModelError, NotFoundError, UnexpectedStatusError
from trainforge.estimator import Estimator
from trainforge.model import Model
from trainforge.pytorch import PyTorch
from trainforge.s3 import S3Downloader, S3Uploader
from trainforge.serializers import CSVSerializer
from trainforge.settings import Settings
from trainforge.sklearn import SKLearn, SKLearnModel, SKLearnPredictor

INSTANCE = "ml.m5.large"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa-like and a virginica-like flower

SKLEARN_TRAIN = """
    import os

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    if __name__ == "__main__":
        data = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "iris.csv"), delimiter=",")
        model = LogisticRegression(max_iter=500).fit(data[:, 1:], data[:, 0].astype(int))
        joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
        print("trained on", len(data), "rows")
"""

SKLEARN_INFERENCE = """
    import json
    import os

    import joblib
    import numpy as np


    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))


    def input_fn(body, content_type):
        text = body.decode() if isinstance(body, bytes) else body
        if text.strip() == "boom":
            raise ValueError("this model cannot read 'boom'")
        return np.array([[float(v) for v in line.split(",")] for line in text.strip().splitlines()])


    def predict_fn(data, model):
        return model.predict_proba(data)


    def output_fn(prediction, accept):
        return json.dumps(np.round(prediction, 4).tolist()), "application/json"
"""

TORCH_TRAIN = """
    import os

    import torch


    def build():
        return torch.nn.Linear(1, 1)


    if __name__ == "__main__":
        torch.manual_seed(0)
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        y = 2 * x + 1
        net = build()
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(300):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            opt.step()
        print("final loss", float(loss))
        torch.save(net.state_dict(), os.path.join(os.environ["SM_MODEL_DIR"], "model.pth"))
"""

TORCH_INFERENCE = """
    import os

    import numpy as np
    import torch

    from train import build


    def model_fn(model_dir):
        net = build()
        net.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
        return net.eval()


    def predict_fn(data, model):
        with torch.no_grad():
            return model(torch.as_tensor(np.asarray(data, dtype=np.float32))).numpy()
"""


def write_source(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def iris_like(rows_per_class: int, seed: int) -> np.ndarray:
    """Three well separated classes around typical iris measurements; label first."""
    rng = np.random.default_rng(seed)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.5, 2.0]])
    blocks = [
        np.column_stack([np.full(rows_per_class, label), center + rng.normal(0, 0.15, (rows_per_class, 4))])
        for label, center in enumerate(centers)
    ]
    return np.vstack(blocks)


def serving_processes(srv: ServerProcess, endpoint: str) -> list[psutil.Process]:
    marker = str(srv.home / "jobs" / f"endpoint.{endpoint}")
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if marker in " ".join(proc.info.get("cmdline") or []) + " " + (proc.info.get("cwd") or ""):
            found.append(proc)
    return found


def assert_gone(session: trainforge.Session, srv: ServerProcess, endpoint: str) -> None:
    """The endpoint's record is gone and nothing of it runs any more."""

    def gone() -> bool:
        try:
            session.describe_endpoint(endpoint)
        except NotFoundError:
            return True
        return False

    wait_for(gone, timeout=60, what=f"endpoint {endpoint} to be deleted")
    wait_for(lambda: not serving_processes(srv, endpoint), timeout=30, what=f"{endpoint}'s processes to end")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("deploy") / "tfhome"
    env = {"TRAINFORGE_STOP_GRACE_SECONDS": "3", "TRAINFORGE_ENVS_DIR": str(envs_dir)}
    with running_server(home, env) as server:
        yield server


@pytest.fixture(scope="module")
def session(srv: ServerProcess) -> trainforge.Session:
    return trainforge.Session(settings=Settings(home=srv.home))


@pytest.fixture(scope="module")
def sklearn_estimator(session: trainforge.Session, tmp_path_factory: pytest.TempPathFactory) -> SKLearn:
    """An SKLearn estimator trained (a script with ``model_fn``) on iris-like CSV data."""
    work = tmp_path_factory.mktemp("sklearn")
    data = work / "data"
    data.mkdir()
    np.savetxt(data / "iris.csv", iris_like(40, seed=1), delimiter=",", fmt="%.3f")
    train_uri = S3Uploader.upload(str(data), f"s3://{session.default_bucket()}/deploy/iris", sagemaker_session=session)
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(write_source(work / "src", {"train.py": SKLEARN_TRAIN, "inference.py": SKLEARN_INFERENCE})),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(session),
        instance_type=INSTANCE,
        sagemaker_session=session,
    )
    est.fit({"train": train_uri}, logs="None")
    return est


def test_sklearn_estimator_deploys_predicts_and_deletes(
    srv: ServerProcess, session: trainforge.Session, sklearn_estimator: SKLearn
) -> None:
    predictor = sklearn_estimator.deploy(initial_instance_count=1, instance_type=INSTANCE)
    assert isinstance(predictor, SKLearnPredictor)
    described = session.describe_endpoint(predictor.endpoint_name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == predictor.endpoint_name
    assert described["TrainingJobName"] == sklearn_estimator.latest_training_job.name

    predictor.serializer = CSVSerializer()
    predictions = predictor.predict(ROWS)
    assert np.asarray(predictions).ravel().tolist() == [0, 2]
    # A content type no decoder knows: the model server's 415, naming it, reaches the caller; the endpoint serves on.
    with pytest.raises(ModelError) as unknown:
        predictor.predict(b"5.1,3.5", initial_args={"ContentType": "application/x-unknown"})
    assert unknown.value.details["OriginalStatusCode"] == 415, unknown.value.details
    assert "application/x-unknown" in unknown.value.message
    assert session.describe_endpoint(predictor.endpoint_name)["EndpointStatus"] == "InService"

    [model_name] = predictor._get_model_names()
    model = session.describe_model(model_name)
    assert model["TrainingJobName"] == sklearn_estimator.latest_training_job.name
    # Every framework model is self-contained: the training script is packed under code/.
    repacked = model["PrimaryContainer"]["ModelDataUrl"]
    assert repacked == f"s3://{session.default_bucket()}/{model_name}/model.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(S3Downloader.read_bytes(repacked, sagemaker_session=session))) as tar:
        assert {"model.joblib", "code/train.py", "code/inference.py"} <= set(tar.getnames())

    predictor.delete_endpoint()
    predictor.delete_model()
    assert_gone(session, srv, predictor.endpoint_name)
    with pytest.raises(NotFoundError):
        predictor.predict(ROWS)
    with pytest.raises(NotFoundError):
        session.describe_model(model_name)


def test_sklearn_model_with_an_inference_script(
    srv: ServerProcess, session: trainforge.Session, sklearn_estimator: SKLearn
) -> None:
    model = SKLearnModel(
        model_data=sklearn_estimator.model_data,
        role=trainforge.get_execution_role(session),
        entry_point="inference.py",
        source_dir=sklearn_estimator.source_dir,
        framework_version="1.2-1",
        sagemaker_session=session,
    )
    predictor = model.deploy(
        1, INSTANCE, serializer=CSVSerializer(), deserializer=JSONDeserializer(), endpoint_name="iris-proba"
    )
    try:
        probabilities = predictor.predict(ROWS)
        assert len(probabilities) == 2 and all(len(row) == 3 for row in probabilities)
        assert probabilities[0][0] > 0.9 and probabilities[1][2] > 0.9
        with pytest.raises(ModelError, match="cannot read 'boom'"):
            predictor.predict("boom")
        assert session.describe_endpoint("iris-proba")["EndpointStatus"] == "InService"
        assert predictor.predict([ROWS[1]])[0][2] > 0.9
        # Predictor.update_endpoint: a new config (a copy with two instances) serves once its instances are ready.
        before = session.describe_endpoint("iris-proba")["EndpointConfigName"]
        predictor.update_endpoint(initial_instance_count=2, instance_type=INSTANCE)
        after = session.describe_endpoint("iris-proba")
        assert after["EndpointStatus"] == "InService" and after["EndpointConfigName"] != before
        assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 2
        assert predictor.predict([ROWS[1]])[0][2] > 0.9
        session.delete_endpoint_config(before)
    finally:
        predictor.delete_endpoint()
        model.delete_model()
    assert_gone(session, srv, "iris-proba")


def test_sklearn_batch_transform_writes_one_out_file_per_input(
    session: trainforge.Session, sklearn_estimator: SKLearn, tmp_path: Path
) -> None:
    bucket = session.default_bucket()
    data = iris_like(3, seed=5)
    for index in range(3):
        part = data[index * 3 : (index + 1) * 3, 1:]
        S3Uploader.upload_string_as_file_body(
            "\n".join(",".join(f"{v:.3f}" for v in row) for row in part) + "\n",
            f"s3://{bucket}/deploy/batch/part-{index}.csv",
            sagemaker_session=session,
        )
    transformer = sklearn_estimator.transformer(
        instance_count=1,
        instance_type=INSTANCE,
        strategy="SingleRecord",
        assemble_with="Line",
        accept="text/csv",
        output_path=f"s3://{bucket}/deploy/preds",
    )
    transformer.transform(f"s3://{bucket}/deploy/batch/", content_type="text/csv", split_type="Line")
    job = transformer.latest_transform_job
    assert job is not None and job.describe()["TransformJobStatus"] == "Completed"
    outputs = S3Downloader.list(f"s3://{bucket}/deploy/preds", sagemaker_session=session)
    assert outputs == [f"s3://{bucket}/deploy/preds/part-{i}.csv.out" for i in range(3)]
    for index, uri in enumerate(outputs):
        lines = S3Downloader.read_file(uri, sagemaker_session=session).strip().splitlines()
        assert [int(float(line)) for line in lines] == data[index * 3 : (index + 1) * 3, 0].astype(int).tolist()


def test_builtin_xgboost_csv_in_predictions_out(
    srv: ServerProcess, session: trainforge.Session, tmp_path: Path
) -> None:
    bucket = session.default_bucket()
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(300, 3))
    y = 10 * x[:, 0] - 5 * x[:, 1] + 2
    np.savetxt(tmp_path / "train.csv", np.column_stack([y, x]), delimiter=",", fmt="%.5f")
    train = session.upload_data(str(tmp_path / "train.csv"), bucket=bucket, key_prefix="deploy/xgb")
    est = Estimator(
        image_uri=trainforge.image_uris.retrieve("xgboost", session.boto_region_name, "1.7-1"),
        role=trainforge.get_execution_role(session),
        instance_count=1,
        instance_type=INSTANCE,
        sagemaker_session=session,
    )
    est.set_hyperparameters(objective="reg:squarederror", num_round=60, max_depth=3, eta=0.3)
    est.fit({"train": trainforge.inputs.TrainingInput(train, content_type="text/csv")}, logs="None")

    predictor = est.deploy(1, INSTANCE, serializer=CSVSerializer(), deserializer=CSVDeserializer())
    try:
        rows = [[0.5, 0.5, 0.5], [0.9, 0.1, 0.3]]
        got = [float(v) for row in predictor.predict(rows) for v in row]
        assert got == pytest.approx([10 * 0.5 - 5 * 0.5 + 2, 10 * 0.9 - 5 * 0.1 + 2], abs=0.8)
    finally:
        predictor.delete_endpoint()
        predictor.delete_model()
    assert_gone(session, srv, predictor.endpoint_name)

    # A model whose model.tar.gz is missing: the endpoint fails, naming the URI; nothing is left running.
    missing = f"s3://{bucket}/deploy/nothing/model.tar.gz"
    broken = Model(est.image_uri, missing, sagemaker_session=session, name="xgb-missing")
    with pytest.raises(UnexpectedStatusError, match=r"nothing/model\.tar\.gz"):
        broken.deploy(1, INSTANCE, endpoint_name="xgb-missing")
    # The instance's supervisor reports Failed, then delivers its last lines and exits: nothing is left running
    wait_for(lambda: not serving_processes(srv, "xgb-missing"), timeout=30, what="xgb-missing's processes to end")
    session.delete_endpoint("xgb-missing")
    broken.delete_model()


def test_pytorch_model_fn_and_predict_fn(srv: ServerProcess, session: trainforge.Session, tmp_path: Path) -> None:
    est = PyTorch(
        entry_point="train.py",
        source_dir=str(write_source(tmp_path / "src", {"train.py": TORCH_TRAIN, "inference.py": TORCH_INFERENCE})),
        framework_version="2.1",
        py_version="py310",
        role=trainforge.get_execution_role(session),
        instance_count=1,
        instance_type=INSTANCE,
        sagemaker_session=session,
    )
    est.fit(logs="None")
    predictor = est.deploy(1, INSTANCE, entry_point="inference.py")
    try:
        got = predictor.predict(np.array([[0.0], [1.0], [-1.0]], dtype=np.float32))
        assert np.asarray(got).ravel() == pytest.approx([1.0, 3.0, -1.0], abs=0.05)
    finally:
        predictor.delete_endpoint()
        predictor.delete_model()
    assert_gone(session, srv, predictor.endpoint_name)
