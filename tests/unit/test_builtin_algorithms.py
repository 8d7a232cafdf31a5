"""Built-in algorithms: which jobs run one, their metric definitions, hyperparameter validation, data reading,
and the scikit-learn algorithms run in-process on small data (the test interpreter has scikit-learn; XGBoost
itself is exercised in tests/unit/test_xgboost_image_files.py with the image's interpreter)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainforge.runtime.builtin import IMAGE_FILES, algorithm_command, image_pythonpath
from trainforge.spec.algorithms import builtin_algorithm, metric_definitions, with_metric_definitions
from trainforge.spec.job import parse_create_request


@pytest.fixture(scope="module", autouse=True)
def image_files_on_path() -> Iterator[None]:
    """Import the image files as a job does: top-level packages from ``IMAGE_FILES``."""
    sys.path.insert(0, str(IMAGE_FILES))
    try:
        yield
    finally:
        sys.path.remove(str(IMAGE_FILES))


def request(image: str, hps: dict[str, str] | None = None, **algo: Any) -> Any:
    return parse_create_request(
        {
            "TrainingJobName": "j",
            "RoleArn": "arn:aws:iam::000000000000:role/R",
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File", **algo},
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            "HyperParameters": hps or {},
        }
    )


# ----------------------------------------------------------------------------------------------- job kinds


def test_which_jobs_run_a_builtin_algorithm() -> None:
    assert builtin_algorithm(request("trainforge/xgboost:1.7-1", {"num_round": "5"})) == "xgboost"
    ecr = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.2-1"
    assert builtin_algorithm(request(ecr)) == "xgboost"
    assert builtin_algorithm(request("trainforge/linear-learner:1")) == "linear-learner"
    assert builtin_algorithm(request("trainforge/kmeans:1")) == "kmeans"
    assert builtin_algorithm(request("trainforge/xgboost:1.7-1", {"sagemaker_program": '"train.py"'})) is None
    assert builtin_algorithm(request("trainforge/xgboost:1.7-1", ContainerEntrypoint=["python"])) is None
    assert builtin_algorithm(request("trainforge/python:current")) is None
    assert builtin_algorithm(request("registry.example/whatever:1")) is None


def test_image_files_go_on_the_path_of_algorithm_and_xgboost_jobs() -> None:
    assert image_pythonpath(request("trainforge/kmeans:1"), "kmeans") == [str(IMAGE_FILES)]
    script = request("trainforge/xgboost:1.7-1", {"sagemaker_program": '"train.py"'})
    assert image_pythonpath(script, None) == [str(IMAGE_FILES)]  # sagemaker_helpers
    assert image_pythonpath(request("trainforge/sklearn:1.2-1", {"sagemaker_program": '"t.py"'}), None) == []
    assert algorithm_command("/env/bin/python", "linear-learner") == [
        "/env/bin/python",
        "-m",
        "trainforge_algorithms.linear_learner",
    ]
    for package in ("trainforge_algorithms", "sagemaker_xgboost_container", "sagemaker_containers"):
        assert (IMAGE_FILES / package / "__init__.py").is_file()


# ----------------------------------------------------------------------------------------------- metric definitions


def tabbed(line: str) -> str:
    """A line as CloudWatch shows it (how AWS-style regexes expect the tab)."""
    return line.replace("\t", "#011")


def value_of(definitions: list[dict[str, str]], name: str, line: str) -> str | None:
    regex = next(d["Regex"] for d in definitions if d["Name"] == name)
    m = re.search(regex, tabbed(line))
    return m.group(1) if m else None


def test_xgboost_metric_definitions_follow_eval_metric_or_the_objective_default() -> None:
    defs = metric_definitions("xgboost", {"num_round": "5"})
    assert [d["Name"] for d in defs] == ["train:rmse", "validation:rmse"]
    assert defs[1]["Regex"] == r".*\[[0-9]+\].*#011validation-rmse:([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    line = "[3]\ttrain-rmse:0.51234\tvalidation-rmse:0.61234"
    assert value_of(defs, "train:rmse", line) == "0.51234"
    assert value_of(defs, "validation:rmse", line) == "0.61234"
    assert value_of(defs, "train:rmse", "[2026-01-01 10:00:00 INFO x] rmse is 3") is None

    assert [d["Name"] for d in metric_definitions("xgboost", {"objective": "binary:logistic"})] == [
        "train:logloss",
        "validation:logloss",
    ]
    assert metric_definitions("xgboost", {"objective": '"multi:softprob"'})[0]["Name"] == "train:mlogloss"
    defs = metric_definitions("xgboost", {"eval_metric": "error@0.7,auc", "_tuning_objective_metric": "validation:f1"})
    assert [d["Name"] for d in defs] == [
        "train:error@0.7",
        "validation:error@0.7",
        "train:auc",
        "validation:auc",
        "train:f1",
        "validation:f1",
    ]
    line = "[0]\ttrain-error@0.7:0.10000\ttrain-auc:0.9\tvalidation-error@0.7:0.20000\tvalidation-auc:0.8"
    assert value_of(defs, "validation:error@0.7", line) == "0.20000"
    assert value_of(defs, "train:auc", line) == "0.9"
    # "mse" never matches inside "rmse": the tab before the channel anchors it
    defs = metric_definitions("xgboost", {"eval_metric": "rmse,mse"})
    assert value_of(defs, "validation:mse", "[1]\tvalidation-rmse:2.0\tvalidation-mse:4.0") == "4.0"
    many = ",".join(f"error@0.{i:02d}" for i in range(25))
    assert len(metric_definitions("xgboost", {"eval_metric": many})) == 40  # CreateTrainingJob's limit


def test_linear_learner_and_kmeans_definitions_match_the_lines_they_print() -> None:
    from trainforge_algorithms.job import metric_line, score_line

    defs = metric_definitions("linear-learner", {"predictor_type": "regressor"})
    names = [d["Name"] for d in defs]
    assert names[:2] == ["train:objective_loss", "validation:objective_loss"]
    assert "test:mse" in names and "validation:r2" in names and "test:binary_f_beta" not in names
    assert value_of(defs, "train:objective_loss", metric_line("algo-1", 3, "train", "objective_loss", 0.25)) == "0.25"
    assert value_of(defs, "validation:objective_loss", metric_line("algo-1", 3, "train", "objective_loss", 1)) is None
    assert value_of(defs, "test:mse", score_line("algo-1", "test", "mse", 1.5e-05)) == "1.5e-05"
    assert value_of(defs, "test:mse", score_line("algo-1", "test", "rmse", 2.0)) is None
    everything = [d["Name"] for d in metric_definitions("linear-learner", {})]
    assert {"test:multiclass_accuracy", "test:roc_auc_score", "validation:mse"} <= set(everything)
    assert len(everything) <= 40

    defs = metric_definitions("kmeans", {"k": "3"})
    assert [d["Name"] for d in defs] == ["train:msd", "test:msd", "test:ssd"]
    assert value_of(defs, "train:msd", metric_line("algo-1", 0, "train", "msd", 0.5)) == "0.5"
    assert value_of(defs, "test:ssd", score_line("algo-2", "test", "ssd", 12.0)) == "12.0"


def test_submit_adds_definitions_only_to_builtin_jobs_without_their_own() -> None:
    hps = {"num_round": "10", "objective": "reg:squarederror", "eta": "0.2"}
    req = request("trainforge/xgboost:1.7-1", hps)
    wire = req.to_wire()
    added = with_metric_definitions(req, wire)
    assert [d["Name"] for d in added["AlgorithmSpecification"]["MetricDefinitions"]] == [
        "train:rmse",
        "validation:rmse",
    ]
    assert json.dumps(added["HyperParameters"]) == json.dumps(wire["HyperParameters"])  # byte-identical
    assert {k: v for k, v in added.items() if k != "AlgorithmSpecification"} == {
        k: v for k, v in wire.items() if k != "AlgorithmSpecification"
    }
    assert with_metric_definitions(req, wire) == added  # deterministic: a resubmission stores the same spec
    own = [{"Name": "mine", "Regex": "m=(\\S+)"}]
    req = request("trainforge/xgboost:1.7-1", hps, MetricDefinitions=own)
    assert with_metric_definitions(req, req.to_wire())["AlgorithmSpecification"]["MetricDefinitions"] == own
    req = request("trainforge/xgboost:1.7-1", {"sagemaker_program": '"train.py"'})
    assert with_metric_definitions(req, req.to_wire()) == req.to_wire()


# ----------------------------------------------------------------------------------------------- hyperparameters


def xgb_error(hps: dict[str, str]) -> str:
    from trainforge_algorithms.job import UserError
    from trainforge_algorithms.xgboost_params import validate

    with pytest.raises(UserError) as info:
        validate(hps)
    return str(info.value)


def test_xgboost_hyperparameters_are_validated_with_the_rule_in_the_message() -> None:
    assert xgb_error({}) == (
        "hyperparameter 'num_round' is required by built-in XGBoost: an integer >= 1; set it, e.g. "
        "estimator.set_hyperparameters(num_round=...)"
    )
    assert xgb_error({"num_round": "0"}) == "hyperparameter 'num_round' = '0' is invalid: must be an integer >= 1"
    assert xgb_error({"num_round": "ten"}) == (
        "hyperparameter 'num_round' = 'ten' is invalid: not an integer; must be an integer >= 1"
    )
    assert xgb_error({"num_round": "5", "subsample": "0"}) == (
        "hyperparameter 'subsample' = '0' is invalid: must be a number in (0, 1]"
    )
    assert xgb_error({"num_round": "5", "booster": "forest"}) == (
        "hyperparameter 'booster' = 'forest' is invalid: must be one of gbtree, gblinear, dart"
    )
    assert "did you mean 'min_child_weight'" in xgb_error({"num_round": "5", "min_child_weigth": "1"})
    assert xgb_error({"num_round": "5", "eta": "0.1", "learning_rate": "0.2"}) == (
        "hyperparameter 'learning_rate' and 'eta' are the same setting; give only one of them"
    )
    assert "'num_class' is required with objective 'multi:softmax'" in xgb_error(
        {"num_round": "5", "objective": "multi:softmax"}
    )
    assert "'auc' applies only to classification" in xgb_error({"num_round": "5", "eval_metric": "rmse,auc"})
    assert "unknown metric 'rmsx'" in xgb_error({"num_round": "5", "eval_metric": "rmse,rmsx"})
    assert "only error, ndcg, map take an @threshold" in xgb_error({"num_round": "5", "eval_metric": "rmse@2"})
    assert "needs tree_method 'exact' or 'hist'" in xgb_error({"num_round": "5", "monotone_constraints": "(1,-1)"})
    assert "k-fold cross-validation is not available" in xgb_error({"num_round": "5", "_kfold": "3"})
    assert "at most one tree grow plugin" in xgb_error({"num_round": "5", "updater": "grow_colmaker,grow_histmaker"})


def test_xgboost_configuration_sent_to_xgboost_train() -> None:
    from trainforge_algorithms.xgboost_params import validate

    config = validate(
        {
            "num_round": "100",
            "objective": "reg:linear",
            "learning_rate": "0.3",
            "max_depth": "4.0",
            "eval_metric": "mae,rmse",
            "early_stopping_rounds": "5",
            "predictor": "cpu_predictor",
            "monotone_constraints": "(1,0)",
            "tree_method": "hist",
            "sagemaker_region": "us-east-1",
        },
        num_cpus=3,
    )
    assert config.objective == "reg:squarederror"  # deprecated reg:linear trains as reg:squarederror
    assert config.params == {
        "objective": "reg:squarederror",
        "eta": 0.3,
        "max_depth": 4,
        "eval_metric": ["mae", "rmse"],
        "monotone_constraints": "(1,0)",
        "tree_method": "hist",
        "nthread": 3,
    }
    assert (config.num_round, config.early_stopping_rounds, config.stop_metric, config.maximize) == (
        100,
        5,
        "rmse",
        False,
    )

    config = validate({"num_round": "5", "objective": "binary:logistic", "eval_metric": "logloss,f1,accuracy"})
    assert config.native_metrics == ["logloss"] and config.custom_metrics == ["f1", "accuracy"]
    assert config.stop_metric == "accuracy" and config.maximize
    config = validate({"num_round": "5", "objective": "binary:logistic", "eval_metric": "f1"})
    assert config.params["disable_default_eval_metric"] == 1 and "eval_metric" not in config.params
    config = validate({"num_round": "5", "objective": "binary:logistic", "_tuning_objective_metric": "validation:auc"})
    assert config.metrics == ["auc"] and config.stop_metric == "auc" and config.maximize


def test_linear_learner_and_kmeans_hyperparameters() -> None:
    from trainforge_algorithms import kmeans, linear_learner
    from trainforge_algorithms.job import UserError

    with pytest.raises(UserError, match="'predictor_type' is required by built-in linear-learner"):
        linear_learner.validate({})
    with pytest.raises(UserError, match="'num_classes' is required with predictor_type 'multiclass_classifier'"):
        linear_learner.validate({"predictor_type": "multiclass_classifier"})
    with pytest.raises(UserError, match="'loss' = 'logistic' does not apply to predictor_type 'regressor'"):
        linear_learner.validate({"predictor_type": "regressor", "loss": "logistic"})
    with pytest.raises(UserError, match="quantile_loss' is not available"):
        linear_learner.validate({"predictor_type": "regressor", "loss": "quantile_loss"})
    hp = linear_learner.validate({"predictor_type": "binary_classifier", "use_bias": "False", "momentum": "0.9"})
    assert (hp["loss"], hp["use_bias"], hp["epochs"], hp["mini_batch_size"]) == ("logistic", False, 15, 1000)

    with pytest.raises(UserError, match="'feature_dim' is required by built-in kmeans"):
        kmeans.validate({"k": "3"})
    with pytest.raises(UserError, match=r"'eval_metrics' = 'msd,mse' is invalid: must be a list of msd and ssd"):
        kmeans.validate({"k": "3", "feature_dim": "2", "eval_metrics": "msd,mse"})
    hp = kmeans.validate({"k": "3", "feature_dim": "2", "eval_metrics": '["ssd", "msd"]', "init_method": "kmeans++"})
    assert (hp["eval_metrics"], hp["init_method"], hp["epochs"]) == (["ssd", "msd"], "kmeans++", 1)


# ----------------------------------------------------------------------------------------------- data


def channel(path: Path, name: str = "train", content_type: str | None = "text/csv") -> Any:
    from trainforge_algorithms.job import Channel

    return Channel(name=name, path=path, content_type=content_type, input_mode="File")


def test_csv_channels_sniff_delimiters_skip_hidden_files_and_name_bad_lines(tmp_path: Path) -> None:
    from trainforge_algorithms.job import UserError
    from trainforge_algorithms.tabular import data_files, read_csv

    (tmp_path / "a.csv").write_text("1,2,3\n4,,6\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.tsv").write_text("7\t8\t9\n")
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "_tmp").mkdir()
    (tmp_path / "_tmp" / "c.csv").write_text("garbage")
    assert [p.relative_to(tmp_path).as_posix() for p in data_files(channel(tmp_path))] == ["a.csv", "sub/b.tsv"]
    matrix = read_csv(channel(tmp_path), expectation="E")
    assert matrix.shape == (3, 3) and np.isnan(matrix[1, 1]) and matrix[2].tolist() == [7, 8, 9]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.csv").write_text("1;2\n3;4\n5;oops\n")
    with pytest.raises(UserError) as info:
        read_csv(channel(bad), expectation="E")
    assert str(info.value) == "channel 'train': file x.csv line 3 column 2 is not numeric: 'oops'; E"
    (bad / "x.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(UserError, match=r"channel 'train': file x.csv is not valid CSV: .*Expected 2 fields"):
        read_csv(channel(bad), expectation="E")
    (bad / "x.csv").write_text("\n\nprice,size\n1,2\n")
    with pytest.raises(
        UserError, match=r"file x.csv line 3 is not numeric: it looks like a header row \('price,size'\)"
    ):
        read_csv(channel(bad), expectation="E")


def test_libsvm_and_content_types(tmp_path: Path) -> None:
    from trainforge_algorithms.job import UserError
    from trainforge_algorithms.tabular import read_libsvm
    from trainforge_algorithms.xgboost_data import parse_content_type

    (tmp_path / "d.libsvm").write_text("1 0:1.5 3:2\n0:2.0 qid:1 1:1 # comment\n\n2 2:-1\n")
    rows = read_libsvm(channel(tmp_path))
    assert rows.labels.tolist() == [1.0, 0.0, 2.0]
    assert rows.weights is not None and rows.weights.tolist() == [1.0, 2.0, 1.0]
    assert rows.qids is not None and rows.qids.tolist() == [0, 1, 0]
    assert rows.features.toarray().tolist() == [[1.5, 0, 0, 2], [0, 1, 0, 0], [0, 0, -1, 0]]
    (tmp_path / "d.libsvm").write_text("1 0:1\n1 oops\n")
    with pytest.raises(UserError, match=r"file d.libsvm line 2 is not LIBSVM \('oops' is not <index>:<value>\)"):
        read_libsvm(channel(tmp_path))

    assert parse_content_type(None) == "libsvm"
    assert parse_content_type("text/CSV; label_size=1") == "csv"
    assert parse_content_type("text/x-libsvm") == "libsvm"
    assert parse_content_type("application/x-parquet") == "parquet"
    with pytest.raises(UserError, match="'text/csv;label_size=2' is not an accepted csv ContentType"):
        parse_content_type("text/csv;label_size=2")
    with pytest.raises(UserError, match="'application/json' is not an accepted ContentType: csv, text/csv"):
        parse_content_type("application/json")
    with pytest.raises(UserError, match="RecordIO-protobuf data is not available"):
        parse_content_type("application/x-recordio-protobuf", channel="train")


# ----------------------------------------------------------------------------------------------- algorithms


def make_job(root: Path, hps: dict[str, str], data: dict[str, np.ndarray], content_type: str = "text/csv") -> Any:
    from trainforge_algorithms.job import AlgorithmJob, Channel

    channels = {}
    for name, matrix in data.items():
        (root / name).mkdir(parents=True)
        np.savetxt(root / name / "data.csv", matrix, delimiter=",", fmt="%.6f")
        channels[name] = Channel(name=name, path=root / name, content_type=content_type, input_mode="File")
    return AlgorithmJob(
        name="j",
        hyperparameters=hps,
        channels=channels,
        model_dir=root / "model",
        output_dir=root / "output",
        output_data_dir=root / "output" / "data",
        hosts=["algo-1"],
        current_host="algo-1",
        num_cpus=1,
    )


def score(out: str, channel: str, metric: str) -> float:
    m = re.search(rf"#{channel}_score \(algo-1\) : \('{metric}', (\S+)\)", out)
    assert m is not None, out
    return float(m.group(1))


def test_linear_learner_regressor_trains_and_folds_normalization_into_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import joblib
    from trainforge_algorithms import linear_learner

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)) * [1.0, 10.0, 0.1] + [0.0, 50.0, 0.0]
    y = x @ np.array([2.0, 0.3, -4.0]) + 100 + rng.normal(size=300) * 0.05
    data = {"train": np.c_[y[:200], x[:200]], "test": np.c_[y[200:], x[200:]]}
    job = make_job(tmp_path, {"predictor_type": "regressor", "epochs": "30", "mini_batch_size": "20"}, data)
    linear_learner.train(job)
    out = capsys.readouterr().out
    assert "#quality_metric: host=algo-1, epoch=0, train objective_loss <loss>=" in out
    r2 = score(out, "test", "r2")
    assert r2 > 0.99
    model = joblib.load(job.model_dir / "model.joblib")
    assert np.abs(model.predict(x[200:]) - y[200:]).mean() < 1.0  # raw features and labels in, raw labels out
    info = json.loads((job.model_dir / "linear_learner.json").read_text())
    assert info["predictor_type"] == "regressor" and info["feature_dim"] == 3


def test_linear_learner_threshold_selection_and_early_stopping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainforge_algorithms import linear_learner

    scores = np.array([3.0, 2.0, 1.0, 0.5, -1.0, -2.0])
    labels = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    hp = linear_learner.validate({"predictor_type": "binary_classifier"})
    assert linear_learner.choose_threshold(scores, labels, hp) == -1.5  # top 5 positive: accuracy 5/6, the best
    criterion = "binary_classifier_model_selection_criteria"
    hp = linear_learner.validate(
        {"predictor_type": "binary_classifier", criterion: "recall_at_target_precision", "target_precision": "1.0"}
    )
    assert linear_learner.choose_threshold(scores, labels, hp) == 1.5  # precision stays 1 up to the top 2
    assert linear_learner.choose_threshold(scores, labels, {**hp, criterion: "loss_function"}) == 0.0

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    noise = rng.normal(size=(100, 2))
    data = {"train": np.c_[(x[:, 0] > 0).astype(float), x], "validation": np.c_[rng.integers(0, 2, 100), noise]}
    hps = {"predictor_type": "binary_classifier", "epochs": "50", "early_stopping_patience": "2"}
    linear_learner.train(make_job(tmp_path, hps, data))
    out = capsys.readouterr().out
    epochs = re.findall(r"epoch=(\d+), validation objective_loss", out)
    assert 3 <= len(epochs) < 50  # validation never improves much: stopped after patience epochs


def test_kmeans_finds_the_clusters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import joblib
    from trainforge_algorithms import kmeans
    from trainforge_algorithms.job import UserError

    rng = np.random.default_rng(2)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 10.0], [-10.0, 5.0, 0.0]])
    points = centers[rng.integers(0, 4, 400)] + rng.normal(size=(400, 3)) * 0.3
    hps = {"k": "4", "feature_dim": "3", "epochs": "3", "mini_batch_size": "64", "init_method": "kmeans++"}
    job = make_job(tmp_path, hps, {"train": points[:300], "test": points[300:]})
    kmeans.train(job)
    out = capsys.readouterr().out
    assert len(re.findall(r"#quality_metric: host=algo-1, epoch=\d, train msd <loss>=", out)) == 3
    msd = score(out, "test", "msd")
    assert msd < 0.5  # 3 dimensions of spread 0.3: about 0.27
    found = joblib.load(job.model_dir / "model.joblib").cluster_centers_
    assert np.abs(np.sort(found, axis=0) - np.sort(centers, axis=0)).max() < 0.3

    wide = make_job(tmp_path / "wide", {"k": "2", "feature_dim": "2"}, {"train": points[:10]})
    with pytest.raises(UserError, match="channel 'train' has 3 columns but hyperparameter feature_dim is 2"):
        kmeans.train(wide)


def test_a_bad_input_writes_the_failure_file_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"k": "0", "feature_dim": "2"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(IMAGE_FILES),
        "SM_INPUT_DIR": str(tmp_path / "input"),
        "SM_INPUT_CONFIG_DIR": str(config),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "trainforge_algorithms.kmeans"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    message = "hyperparameter 'k' = '0' is invalid: must be an integer >= 1"
    assert (tmp_path / "output" / "failure").read_text() == message
    assert message in done.stdout


# ----------------------------------------------------------------------------------------------- helper modules


def test_hostname_resolution_and_rabit_run_on_one_host(  # rabit across hosts: tests/e2e/test_multihost_xgboost.py
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sagemaker_containers import entry_point
    from sagemaker_xgboost_container import distributed

    monkeypatch.setenv("SM_HOSTS", '["algo-1","algo-2"]')
    assert entry_point.resolve_hosts() == {"algo-1": "127.0.0.1", "algo-2": "127.0.0.1"}
    assert entry_point.resolve_hosts(["localhost"]) == {"localhost": "127.0.0.1"}
    assert entry_point._wait_hostname_resolution() is None

    calls: list[dict[str, Any]] = []

    def train(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "done"

    assert distributed.rabit_run(train, {"a": 1}, True, ["algo-1"], "algo-1", update_rabit_args=True) == "done"
    assert distributed.rabit_run(train, {"a": 2}, True, ["algo-1"], "algo-1") == "done"
    assert calls == [{"a": 1, "is_master": True}, {"a": 2}]
    with pytest.raises(SystemExit) as info:
        distributed.rabit_run(train, {}, False, ["algo-1"], "algo-1")
    assert info.value.code == 0 and len(calls) == 2
    monkeypatch.setenv("TRAINFORGE_HOST_ADDRESSES", '{"algo-1": "10.1.2.3", "algo-2": "10.1.2.4"}')
    assert entry_point.resolve_hosts() == {"algo-1": "10.1.2.3", "algo-2": "10.1.2.4"}  # where the backend put them
