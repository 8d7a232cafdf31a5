"""Quick start: train a real scikit-learn model on the embedded default and show its record.

Run from the repository root: ``python examples/quickstart.py``. It starts (or finds) the local server,
uploads the iris data set, trains with an unmodified SageMaker script, then downloads ``model.tar.gz``,
loads the model from it and predicts.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import warnings
from pathlib import Path

import joblib
import sklearn
from sklearn.datasets import load_iris

import trainforge
from trainforge.inputs import TrainingInput
from trainforge.sklearn import SKLearn

HERE = Path(__file__).resolve().parent


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="trainforge-quickstart-"))
    iris = load_iris(as_frame=True)
    df = iris.frame.rename(columns={"target": "species"})
    df.to_csv(work / "iris.csv", index=False)

    sess = trainforge.Session()
    uri = sess.upload_data(str(work / "iris.csv"), key_prefix="iris")
    est = SKLearn(
        entry_point="train.py",
        source_dir=str(HERE / "sklearn_iris" / "src"),
        framework_version="1.2-1",
        role=trainforge.get_execution_role(),
        instance_type="ml.m5.large",
        instance_count=1,
        hyperparameters={"C": 0.5},
        sagemaker_session=sess,
    )
    est.fit({"train": TrainingInput(uri, content_type="text/csv")})

    job = est.latest_training_job.describe()
    record = {
        k: job[k]
        for k in (
            "TrainingJobName",
            "TrainingJobStatus",
            "SecondaryStatus",
            "HyperParameters",
            "ResourceConfig",
            "TrainingTimeInSeconds",
        )
        if k in job
    }
    print("\nJob record (trainforge jobs describe " + job["TrainingJobName"] + "):")
    print(json.dumps(record, indent=2))
    print("model.tar.gz:", est.model_data)

    local = work / "model.tar.gz"
    sess.download_data(
        str(work), bucket=est.model_data.split("/")[2], key_prefix="/".join(est.model_data.split("/")[3:])
    )
    with tarfile.open(local) as tar:
        tar.extractall(work / "model", filter="data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = joblib.load(work / "model" / "model.joblib")
    if any("InconsistentVersionWarning" in type(w.message).__name__ for w in caught):
        print(
            f"note: the job trained with the scikit-learn of its image (trainforge/sklearn:1.2-1); this "
            f"process loads it with scikit-learn {sklearn.__version__}, which works here but is worth matching"
        )
    sample = df.drop(columns=["species"]).iloc[[0, 60, 120]]
    print(
        "predictions for rows 0, 60, 120:",
        list(model.predict(sample)),
        "expected:",
        list(df["species"].iloc[[0, 60, 120]]),
    )
    print("model.tar.gz on disk:", local)


if __name__ == "__main__":
    main()
