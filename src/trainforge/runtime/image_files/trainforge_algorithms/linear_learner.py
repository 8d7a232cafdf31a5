"""Built-in linear-learner on scikit-learn: ``python -m trainforge_algorithms.linear_learner``.

A linear model trained by mini-batch SGD (``SGDRegressor`` / ``SGDClassifier`` ``partial_fit``) with SageMaker's
hyperparameter names. Channels ``train`` (required), ``validation`` and ``test``: CSV without a header, label in
column 0. Per epoch it prints ``#quality_metric: host=<h>, epoch=<e>, train objective_loss <loss>=<v>`` (and
``validation``); at the end ``#validation_score (<h>) : ('<metric>', <v>)`` and ``#test_score ...`` lines.
Early stopping watches the validation objective (the train objective without a validation channel) and keeps
the best epoch. The model is ``model.joblib`` (a scikit-learn estimator on raw features: the data and label
normalization and a binary classifier's selected threshold are folded into its coefficients) plus
``linear_learner.json`` (predictor type, threshold, epochs).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from typing import Any

import numpy as np

from . import tabular
from .hyperparameters import Interval, InvalidValue, Schema, auto_or, boolean, choice, custom, integer, real
from .job import AlgorithmJob, UserError, emit, metric_line, run, score_line

log = logging.getLogger("trainforge_algorithms.linear_learner")

ALGORITHM = "linear-learner"
REGRESSOR, BINARY, MULTICLASS = "regressor", "binary_classifier", "multiclass_classifier"
LOSSES = {
    REGRESSOR: (
        "squared_loss",
        "absolute_loss",
        "eps_insensitive_squared_loss",
        "eps_insensitive_absolute_loss",
        "huber_loss",
    ),
    BINARY: ("logistic", "hinge_loss"),
    MULTICLASS: ("softmax_loss", "logistic", "hinge_loss"),
}
DEFAULT_LOSS = {REGRESSOR: "squared_loss", BINARY: "logistic", MULTICLASS: "softmax_loss"}
SELECTION_CRITERIA = (
    "accuracy",
    "f_beta",
    "precision_at_target_recall",
    "recall_at_target_precision",
    "loss_function",
)
EXPECTATION = "built-in linear-learner expects CSV without a header, label in the first column"
MODEL_FILE = "model.joblib"
INFO_FILE = "linear_learner.json"


def _positive_weight(raw: str) -> Any:
    text = raw.strip().lower()
    if text in ("auto", "balanced"):
        return "balanced"
    try:
        value = float(text)
    except ValueError:
        raise InvalidValue("auto, balanced or a number > 0") from None
    if not value > 0:
        raise InvalidValue("auto, balanced or a number > 0")
    return value


# Accepted (and range-checked) for compatibility with SageMaker; scikit-learn's SGD has no counterpart.
NO_EFFECT = (
    "num_models",
    "num_calibration_samples",
    "init_method",
    "init_scale",
    "init_sigma",
    "init_bias",
    "momentum",
    "beta_1",
    "beta_2",
    "bias_lr_mult",
    "bias_wd_mult",
    "use_lr_scheduler",
    "lr_scheduler_step",
    "lr_scheduler_factor",
    "lr_scheduler_minimum_lr",
    "margin",
    "unbias_data",
    "unbias_label",
    "num_point_for_scaler",
    "quantile",
)

SCHEMA = Schema(
    ALGORITHM,
    [
        choice("predictor_type", (BINARY, MULTICLASS, REGRESSOR), required=True),
        auto_or(integer("feature_dim", Interval(min=1)), default="auto"),
        integer("num_classes", Interval(3, 1_000_000)),
        integer("epochs", Interval(min=1), default=15),
        integer("mini_batch_size", Interval(min=1), default=1000),
        auto_or(real("learning_rate", Interval(min=0, min_open=True)), default="auto"),
        auto_or(real("l1", Interval(min=0)), default="auto"),
        auto_or(real("wd", Interval(min=0)), default="auto"),
        boolean("use_bias", default=True),
        boolean("normalize_data", default=True),
        auto_or(boolean("normalize_label"), default="auto"),
        choice("optimizer", ("auto", "sgd", "adam", "rmsprop"), default="auto"),
        choice("loss", ("auto", *sorted({loss for losses in LOSSES.values() for loss in losses}), "quantile_loss")),
        integer("early_stopping_patience", Interval(min=1), default=3),
        real("early_stopping_tolerance", Interval(min=0, min_open=True), default=0.001),
        real("loss_insensitivity", Interval(min=0, min_open=True), default=0.01),
        real("huber_delta", Interval(min=0, min_open=True), default=1.0),
        custom("positive_example_weight_mult", _positive_weight, "auto, balanced or a number > 0", default=1.0),
        boolean("balance_multiclass_weights", default=False),
        choice("binary_classifier_model_selection_criteria", SELECTION_CRITERIA, default="accuracy"),
        real("f_beta", Interval(min=0, min_open=True), default=1.0),
        real("target_recall", Interval(0, 1, min_open=True), default=0.8),
        real("target_precision", Interval(0, 1, min_open=True), default=0.8),
        integer("accuracy_top_k", Interval(min=1), default=3),
        auto_or(integer("num_models", Interval(min=1))),
        integer("num_calibration_samples", Interval(min=1)),
        choice("init_method", ("uniform", "normal")),
        real("init_scale", Interval(min=0, min_open=True)),
        real("init_sigma", Interval(min=0, min_open=True)),
        real("init_bias"),
        auto_or(real("momentum", Interval(0, 1, max_open=True))),
        auto_or(real("beta_1", Interval(0, 1, max_open=True))),
        auto_or(real("beta_2", Interval(0, 1, max_open=True))),
        auto_or(real("bias_lr_mult", Interval(min=0, min_open=True))),
        auto_or(real("bias_wd_mult", Interval(min=0))),
        auto_or(boolean("use_lr_scheduler")),
        auto_or(integer("lr_scheduler_step", Interval(min=1))),
        auto_or(real("lr_scheduler_factor", Interval(0, 1, min_open=True, max_open=True))),
        auto_or(real("lr_scheduler_minimum_lr", Interval(min=0, min_open=True))),
        auto_or(real("margin", Interval(min=0))),
        real("quantile", Interval(0, 1, min_open=True, max_open=True)),
        auto_or(boolean("unbias_data")),
        auto_or(boolean("unbias_label")),
        auto_or(integer("num_point_for_scaler", Interval(min=1))),
    ],
)


def validate(raw: dict[str, str]) -> dict[str, Any]:
    """Typed hyperparameters with the cross-field rules; raises :class:`UserError`."""
    hp = SCHEMA.validate(raw)
    kind = hp["predictor_type"]
    loss = hp.get("loss", "auto")
    if loss == "quantile_loss":
        raise UserError(
            "hyperparameter 'loss' = 'quantile_loss' is not available in trainforge's linear-learner (scikit-learn "
            f"SGD); use one of {', '.join(LOSSES[REGRESSOR])}"
        )
    if loss == "auto":
        loss = DEFAULT_LOSS[kind]
    if loss not in LOSSES[kind]:
        raise UserError(
            f"hyperparameter 'loss' = {loss!r} does not apply to predictor_type '{kind}': use auto or one of "
            f"{', '.join(LOSSES[kind])}"
        )
    hp["loss"] = loss
    if kind == MULTICLASS and "num_classes" not in hp:
        raise UserError(
            "hyperparameter 'num_classes' is required with predictor_type 'multiclass_classifier': an integer >= 3"
        )
    ignored = sorted(name for name in NO_EFFECT if name in raw)
    if ignored:
        log.info("accepted for compatibility, no effect with scikit-learn's SGD: %s", ", ".join(ignored))
    if hp["optimizer"] in ("adam", "rmsprop"):
        log.info("optimizer '%s': trainforge's linear-learner trains with scikit-learn's SGD", hp["optimizer"])
    return hp


def _load(job: AlgorithmJob, name: str, feature_dim: Any) -> tuple[np.ndarray, np.ndarray] | None:
    channel = job.channels.get(name)
    if channel is None:
        return None
    tabular.require_csv(channel, algorithm=ALGORITHM)
    matrix = tabular.read_csv(channel, expectation=EXPECTATION)
    if matrix.shape[0] == 0:
        raise UserError(f"channel '{name}' has no data: no rows in the data files under {channel.path}")
    if matrix.shape[1] < 2:
        raise UserError(f"channel '{name}': rows need the label in column 0 and at least one feature column")
    x, y = matrix[:, 1:], matrix[:, 0]
    if feature_dim != "auto" and x.shape[1] != feature_dim:
        raise UserError(
            f"channel '{name}' has {x.shape[1]} feature columns but hyperparameter feature_dim is {feature_dim}"
        )
    if np.isnan(x).any() or np.isnan(y).any():
        raise UserError(f"channel '{name}' has empty values; built-in linear-learner needs every value")
    return x, y


def _check_labels(name: str, y: np.ndarray, hp: dict[str, Any]) -> None:
    kind = hp["predictor_type"]
    if kind == BINARY and not np.isin(y, (0.0, 1.0)).all():
        raise UserError(f"channel '{name}': binary_classifier labels must be 0 or 1")
    if kind == MULTICLASS:
        k = hp["num_classes"]
        if not (np.equal(np.mod(y, 1), 0).all() and y.min() >= 0 and y.max() < k):
            raise UserError(f"channel '{name}': multiclass_classifier labels must be integers in [0, {k - 1}]")


def _estimator(hp: dict[str, Any], y: np.ndarray) -> Any:
    from sklearn.linear_model import SGDClassifier, SGDRegressor
    from sklearn.utils.class_weight import compute_class_weight

    l1 = 0.0 if hp["l1"] == "auto" else hp["l1"]
    wd = 0.0001 if hp["wd"] == "auto" else hp["wd"]
    if l1 > 0 and wd > 0:
        penalty: dict[str, Any] = {"penalty": "elasticnet", "alpha": l1 + wd, "l1_ratio": l1 / (l1 + wd)}
    elif l1 > 0:
        penalty = {"penalty": "l1", "alpha": l1}
    elif wd > 0:
        penalty = {"penalty": "l2", "alpha": wd}
    else:
        penalty = {"penalty": None}
    lr = hp["learning_rate"]
    common = {"fit_intercept": hp["use_bias"], "random_state": 0, **penalty}
    loss = hp["loss"]
    if hp["predictor_type"] == REGRESSOR:
        sk_loss, epsilon = {
            "squared_loss": ("squared_error", 0.1),
            "absolute_loss": ("epsilon_insensitive", 0.0),
            "eps_insensitive_squared_loss": ("squared_epsilon_insensitive", hp["loss_insensitivity"]),
            "eps_insensitive_absolute_loss": ("epsilon_insensitive", hp["loss_insensitivity"]),
            "huber_loss": ("huber", hp["huber_delta"]),
        }[loss]
        schedule: dict[str, Any] = {"learning_rate": "invscaling", "eta0": 0.01}
        if lr != "auto":
            schedule = {"learning_rate": "constant"}
        if lr != "auto":
            schedule["eta0"] = lr
        return SGDRegressor(loss=sk_loss, epsilon=epsilon, **schedule, **common)
    classes = np.arange(2 if hp["predictor_type"] == BINARY else hp["num_classes"], dtype=np.float64)
    weights: Any = None
    present = np.unique(y)
    if hp["predictor_type"] == BINARY:
        mult = hp["positive_example_weight_mult"]
        if mult == "balanced" and len(present) == 2:
            weights = dict(zip(present, compute_class_weight("balanced", classes=present, y=y), strict=True))
        elif mult != "balanced" and mult != 1.0:
            weights = {0.0: 1.0, 1.0: mult}
    elif hp["balance_multiclass_weights"]:
        balanced = compute_class_weight("balanced", classes=present, y=y)
        weights = {c: float(balanced[list(present).index(c)]) if c in present else 1.0 for c in classes}
    schedule = {"learning_rate": "optimal"} if lr == "auto" else {"learning_rate": "constant", "eta0": lr}
    sk_loss = "hinge" if loss == "hinge_loss" else "log_loss"
    return SGDClassifier(loss=sk_loss, class_weight=weights, **schedule, **common)


def objective_loss(model: Any, x: np.ndarray, y: np.ndarray, hp: dict[str, Any]) -> float:
    """The training objective's mean loss on ``(x, y)`` (labels as the model sees them)."""
    loss = hp["loss"]
    if hp["predictor_type"] == REGRESSOR:
        r = np.abs(model.predict(x) - y)
        if loss == "squared_loss":
            return float(np.mean(r**2))
        if loss == "absolute_loss":
            return float(np.mean(r))
        if loss == "eps_insensitive_squared_loss":
            return float(np.mean(np.maximum(0.0, r - hp["loss_insensitivity"]) ** 2))
        if loss == "eps_insensitive_absolute_loss":
            return float(np.mean(np.maximum(0.0, r - hp["loss_insensitivity"])))
        delta = hp["huber_delta"]
        return float(np.mean(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))))
    classes = model.classes_
    if loss == "hinge_loss":
        scores = model.decision_function(x)
        if scores.ndim == 1:
            return float(np.mean(np.maximum(0.0, 1.0 - (2 * y - 1) * scores)))
        signs = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
        return float(np.mean(np.sum(np.maximum(0.0, 1.0 - signs * scores), axis=1)))
    from sklearn.metrics import log_loss

    return float(log_loss(y, model.predict_proba(x), labels=classes))


def _train_loop(
    hp: dict[str, Any],
    job: AlgorithmJob,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[Any, int]:
    x, y = train
    model = _estimator(hp, y)
    fit_kwargs: dict[str, Any] = {}
    if hp["predictor_type"] != REGRESSOR:
        fit_kwargs["classes"] = np.arange(2 if hp["predictor_type"] == BINARY else hp["num_classes"], dtype=np.float64)
    rng = np.random.default_rng(0)
    batch = hp["mini_batch_size"]
    best, best_loss, best_epoch, since = None, float("inf"), 0, 0
    for epoch in range(hp["epochs"]):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            rows = order[start : start + batch]
            model.partial_fit(x[rows], y[rows], **fit_kwargs)
        train_loss = objective_loss(model, x, y, hp)
        emit(metric_line(job.current_host, epoch, "train", "objective_loss", train_loss))
        watched = train_loss
        if val is not None:
            watched = objective_loss(model, val[0], val[1], hp)
            emit(metric_line(job.current_host, epoch, "validation", "objective_loss", watched))
        if best is None or watched < best_loss - hp["early_stopping_tolerance"] * abs(best_loss):
            best, best_loss, since = copy.deepcopy(model), watched, 0
            best_epoch = epoch
        else:
            since += 1
            if since >= hp["early_stopping_patience"]:
                log.info("Early stopping at epoch %d: no improvement for %d epochs", epoch, since)
                break
    log.info("Best epoch: %d (objective loss %s)", best_epoch, best_loss)
    return best, best_epoch


def _fold(model: Any, scaler: Any, label: tuple[float, float] | None) -> Any:
    """Fold feature standardization (and label scaling) into the model's coefficients."""
    mean = scaler.mean_ if scaler is not None else 0.0
    scale = scaler.scale_ if scaler is not None else 1.0
    coef = np.asarray(model.coef_, dtype=np.float64) / scale
    intercept = np.asarray(model.intercept_, dtype=np.float64) - (coef * mean).sum(axis=-1)
    if label is not None:
        mu, sigma = label
        coef, intercept = coef * sigma, intercept * sigma + mu
    model.coef_, model.intercept_ = coef, np.atleast_1d(intercept)
    return model


def choose_threshold(scores: np.ndarray, y: np.ndarray, hp: dict[str, Any]) -> float:
    """The decision threshold of a binary classifier by ``binary_classifier_model_selection_criteria``."""
    criterion = hp["binary_classifier_model_selection_criteria"]
    if criterion == "loss_function" or len(np.unique(y)) < 2:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, labels = scores[order], y[order]
    k = np.arange(1, len(s) + 1)
    tp = np.cumsum(labels)
    positives, n = labels.sum(), len(labels)
    fp = k - tp
    precision, recall = tp / k, tp / positives
    accuracy = (tp + (n - positives - fp)) / n
    beta2 = hp["f_beta"] ** 2
    f_beta = np.where(tp > 0, (1 + beta2) * precision * recall / np.maximum(beta2 * precision + recall, 1e-12), 0)
    valid = np.append(s[1:] < s[:-1], True)  # cut only between distinct scores
    if criterion == "accuracy":
        goal = np.where(valid, accuracy, -1)
    elif criterion == "f_beta":
        goal = np.where(valid, f_beta, -1)
    elif criterion == "precision_at_target_recall":
        goal = np.where(valid & (recall >= hp["target_recall"]), precision, -1)
    else:
        goal = np.where(valid & (precision >= hp["target_precision"]), recall, -1)
    if goal.max() < 0:
        return 0.0
    i = int(np.argmax(goal))
    return float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i] - 1e-9)


def final_scores(model: Any, x: np.ndarray, y: np.ndarray, hp: dict[str, Any]) -> dict[str, float]:
    """The metrics reported for a validation or test channel (names as in SageMaker's ``test:<name>``)."""
    from sklearn import metrics as skm

    kind = hp["predictor_type"]
    if kind == REGRESSOR:
        pred = model.predict(x)
        mse = float(np.mean((pred - y) ** 2))
        return {
            "mse": mse,
            "rmse": float(np.sqrt(mse)),
            "absolute_loss": float(np.mean(np.abs(pred - y))),
            "r2": float(skm.r2_score(y, pred)) if len(y) > 1 else float("nan"),
        }
    pred = model.predict(x)
    if kind == BINARY:
        out = {
            "binary_classification_accuracy": float(skm.accuracy_score(y, pred)),
            "precision": float(skm.precision_score(y, pred, zero_division=0)),
            "recall": float(skm.recall_score(y, pred, zero_division=0)),
            "binary_f_beta": float(skm.fbeta_score(y, pred, beta=hp["f_beta"], zero_division=0)),
        }
        if len(np.unique(y)) == 2:
            out["roc_auc_score"] = float(skm.roc_auc_score(y, model.decision_function(x)))
        return out
    scores = model.decision_function(x)
    top = np.argsort(-scores, axis=1)[:, : min(hp["accuracy_top_k"], scores.shape[1])]
    hits = (model.classes_[top] == y[:, None]).any(axis=1)
    return {
        "multiclass_accuracy": float(skm.accuracy_score(y, pred)),
        "multiclass_top_k_accuracy": float(np.mean(hits)),
        "macro_precision": float(skm.precision_score(y, pred, average="macro", zero_division=0)),
        "macro_recall": float(skm.recall_score(y, pred, average="macro", zero_division=0)),
        "macro_f_beta": float(skm.fbeta_score(y, pred, beta=hp["f_beta"], average="macro", zero_division=0)),
    }


def train(job: AlgorithmJob) -> None:
    """Validate, load, train, report and save; raises :class:`UserError` for bad input."""
    import joblib
    from sklearn.preprocessing import StandardScaler

    hp = validate(job.hyperparameters)
    job.check_channels(algorithm=ALGORITHM, required=("train",), optional=("validation", "test"))
    data = {name: _load(job, name, hp["feature_dim"]) for name in ("train", "validation", "test")}
    for name, loaded in data.items():
        if loaded is not None:
            _check_labels(name, loaded[1], hp)
    train_pair = data["train"]
    if train_pair is None:
        raise UserError("channel 'train' is required")
    x, y = train_pair
    log.info("Training a %s on %d rows, %d features (loss %s)", hp["predictor_type"], len(y), x.shape[1], hp["loss"])
    scaler = StandardScaler().fit(x) if hp["normalize_data"] else None
    normalize_label = hp["normalize_label"] if hp["normalize_label"] != "auto" else hp["predictor_type"] == REGRESSOR
    label = None
    if normalize_label and hp["predictor_type"] == REGRESSOR:
        label = (float(np.mean(y)), float(np.std(y)) or 1.0)

    def prepare(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        px = scaler.transform(pair[0]) if scaler is not None else pair[0]
        py = (pair[1] - label[0]) / label[1] if label is not None else pair[1]
        return px, py

    val_pair = data["validation"]
    model, best_epoch = _train_loop(hp, job, prepare(train_pair), prepare(val_pair) if val_pair is not None else None)
    model = _fold(model, scaler, label)
    threshold = 0.0
    if hp["predictor_type"] == BINARY:
        chosen = data["validation"] or data["train"]
        assert chosen is not None
        threshold = choose_threshold(model.decision_function(chosen[0]), chosen[1], hp)
        model.intercept_ = model.intercept_ - threshold
        criterion = hp["binary_classifier_model_selection_criteria"]
        log.info("Binary threshold (on the decision function) %.6g chosen by %s", threshold, criterion)
    for name in ("validation", "test"):
        pair = data[name]
        if pair is not None:
            for metric, value in final_scores(model, pair[0], pair[1], hp).items():
                emit(score_line(job.current_host, name, metric, value))
    job.model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, job.model_dir / MODEL_FILE)
    info = {
        "predictor_type": hp["predictor_type"],
        "feature_dim": int(x.shape[1]),
        "num_classes": hp.get("num_classes", 2 if hp["predictor_type"] == BINARY else None),
        "loss": hp["loss"],
        "best_epoch": best_epoch,
        "threshold": threshold,
    }
    (job.model_dir / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("Stored the model at %s", job.model_dir / MODEL_FILE)


def main() -> None:
    """Entry point of ``python -m trainforge_algorithms.linear_learner``."""
    run(train, algorithm=ALGORITHM)


if __name__ == "__main__":
    main()
    sys.exit(0)
