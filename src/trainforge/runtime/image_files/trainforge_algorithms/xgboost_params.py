"""Built-in XGBoost's hyperparameters (reference §8.3): names, ranges, cross-field rules, and what goes to
``xgboost.train``.

:func:`validate` returns an :class:`XGBoostConfig` or raises :class:`~trainforge_algorithms.job.UserError` naming
the hyperparameter and its rule. ``reg:linear`` is accepted and trained as ``reg:squarederror`` (logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .hyperparameters import (
    Hyperparameter,
    Interval,
    InvalidValue,
    Schema,
    boolean,
    choice,
    custom,
    integer,
    item_list,
    real,
)
from .job import UserError

log = logging.getLogger("trainforge_algorithms.xgboost")

ALGORITHM = "XGBoost"

MAXIMIZE_METRICS = frozenset(
    {
        "accuracy",
        "auc",
        "aucpr",
        "balanced_accuracy",
        "f1",
        "f1_binary",
        "f1_macro",
        "map",
        "ndcg",
        "precision",
        "precision_macro",
        "precision_micro",
        "r2",
        "recall",
        "recall_macro",
        "recall_micro",
    }
)
MINIMIZE_METRICS = frozenset(
    {
        "aft-nloglik",
        "cox-nloglik",
        "error",
        "gamma-deviance",
        "gamma-nloglik",
        "interval-regression-accuracy",
        "logloss",
        "mae",
        "mape",
        "merror",
        "mlogloss",
        "mphe",
        "mse",
        "poisson-nloglik",
        "rmse",
        "rmsle",
        "tweedie-nloglik",
    }
)
# Metrics XGBoost does not compute itself: evaluated in Python on the predictions (scikit-learn).
CUSTOM_METRICS = frozenset(
    {
        "accuracy",
        "balanced_accuracy",
        "f1",
        "f1_binary",
        "f1_macro",
        "mse",
        "precision",
        "precision_macro",
        "precision_micro",
        "r2",
        "recall",
        "recall_macro",
        "recall_micro",
    }
)
THRESHOLD_METRICS = ("error", "ndcg", "map")

OBJECTIVES = (
    "binary:logistic",
    "binary:logitraw",
    "binary:hinge",
    "count:poisson",
    "multi:softmax",
    "multi:softprob",
    "rank:pairwise",
    "rank:ndcg",
    "rank:map",
    "reg:linear",
    "reg:squarederror",
    "reg:logistic",
    "reg:gamma",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:absoluteerror",
    "reg:tweedie",
    "survival:aft",
    "survival:cox",
)
DEFAULT_OBJECTIVE = "reg:squarederror"
# The metric XGBoost evaluates when eval_metric is not given (also in trainforge.spec.algorithms).
DEFAULT_METRICS = {
    "binary:logistic": "logloss",
    "binary:logitraw": "logloss",
    "binary:hinge": "error",
    "count:poisson": "poisson-nloglik",
    "multi:softmax": "mlogloss",
    "multi:softprob": "mlogloss",
    "rank:pairwise": "ndcg",
    "rank:ndcg": "ndcg",
    "rank:map": "map",
    "reg:squarederror": "rmse",
    "reg:logistic": "rmse",
    "reg:gamma": "gamma-nloglik",
    "reg:pseudohubererror": "mphe",
    "reg:squaredlogerror": "rmsle",
    "reg:absoluteerror": "mae",
    "reg:tweedie": "tweedie-nloglik@1.5",
    "survival:aft": "aft-nloglik",
    "survival:cox": "cox-nloglik",
}
UPDATERS_TREE = (
    "grow_colmaker",
    "distcol",
    "grow_histmaker",
    "grow_local_histmaker",
    "grow_skmaker",
    "grow_quantile_histmaker",
    "sync",
    "refresh",
    "prune",
)
UPDATERS_GROW = ("grow_colmaker", "distcol", "grow_histmaker", "grow_local_histmaker", "grow_quantile_histmaker")
UPDATERS_LINEAR = ("shotgun", "coord_descent")
# Accepted for compatibility with SageMaker's list; XGBoost 2.x and later no longer read them.
NO_EFFECT = (
    "predictor",
    "dsplit",
    "sketch_eps",
    "lambda_bias",
    "single_precision_histogram",
    "deterministic_histogram",
    "prob_buffer_row",
)
# Hyperparameters of the algorithm itself, not passed to xgboost.train's params.
ALGORITHM_ONLY = (
    "num_round",
    "csv_weights",
    "early_stopping_rounds",
    "eval_metric",
    "_tuning_objective_metric",
    "save_model_on_termination",
    "use_dask_gpu_training",
    "_kfold",
    "_num_cv_round",
)


def metric_base(metric: str) -> str:
    """``error@0.7`` -> ``error``."""
    return metric.split("@", 1)[0]


def _metric(text: str) -> str:
    name, at, threshold = text.partition("@")
    if name not in MAXIMIZE_METRICS and name not in MINIMIZE_METRICS:
        if name.startswith("tweedie-nloglik"):
            return text
        raise InvalidValue(f"unknown metric {text!r}")
    if at:
        if name not in THRESHOLD_METRICS:
            raise InvalidValue(f"{text!r}: only {', '.join(THRESHOLD_METRICS)} take an @threshold")
        try:
            float(threshold.rstrip("-"))
        except ValueError:
            raise InvalidValue(f"{text!r}: the threshold after @ must be a number") from None
    return text


def _parse_tuple(raw: str) -> list[int]:
    text = raw.strip()
    if not (text.startswith("(") and text.endswith(")")) and not (text.startswith("[") and text.endswith("]")):
        raise InvalidValue("a tuple of -1, 0 and 1 such as (1,0,-1)")
    items = [p.strip() for p in text[1:-1].split(",") if p.strip()]
    try:
        values = [int(p) for p in items]
    except ValueError:
        raise InvalidValue("a tuple of -1, 0 and 1 such as (1,0,-1)") from None
    if not values or any(v not in (-1, 0, 1) for v in values):
        raise InvalidValue("a tuple of -1, 0 and 1 such as (1,0,-1)")
    return values


def _parse_nested(raw: str) -> list[list[int]]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidValue("a nested list of feature indices such as [[0,1],[2,3,4]]") from None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(g, list) and g and all(isinstance(i, int) and i >= 0 for i in g) for g in value)
    ):
        raise InvalidValue("a nested list of feature indices such as [[0,1],[2,3,4]]")
    return value


def _tuning_metric(raw: str) -> str:
    channel, sep, metric = raw.strip().partition(":")
    if not sep or channel not in ("train", "validation"):
        raise InvalidValue("<channel>:<metric> such as validation:rmse")
    _metric(metric)
    return raw.strip()


def _updater(text: str) -> str:
    if text not in UPDATERS_TREE and text not in UPDATERS_LINEAR:
        raise InvalidValue(f"unknown updater {text!r}")
    return text


def _true_false(name: str) -> Hyperparameter:
    return choice(name, ("true", "false"))


SCHEMA = Schema(
    ALGORITHM,
    [
        integer("num_round", Interval(min=1), required=True, doc="number of boosting rounds"),
        integer("csv_weights", Interval(0, 1), default=0, doc="1: column 1 of CSV data holds instance weights"),
        integer("early_stopping_rounds", Interval(min=1), doc="stop when validation has not improved this long"),
        choice("booster", ("gbtree", "gblinear", "dart")),
        integer("verbosity", Interval(0, 3)),
        integer("nthread", Interval(min=1)),
        real("eta", Interval(0, 1)),
        real("gamma", Interval(min=0)),
        integer("max_depth", Interval(min=0)),
        real("min_child_weight", Interval(min=0)),
        real("max_delta_step", Interval(min=0)),
        real("subsample", Interval(0, 1, min_open=True)),
        real("colsample_bytree", Interval(0, 1, min_open=True)),
        real("colsample_bylevel", Interval(0, 1, min_open=True)),
        real("colsample_bynode", Interval(0, 1, min_open=True)),
        real("lambda", Interval(min=0)),
        real("alpha", Interval(min=0)),
        choice("tree_method", ("auto", "exact", "approx", "hist", "gpu_hist")),
        real("sketch_eps", Interval(0, 1, min_open=True, max_open=True)),
        real("scale_pos_weight", Interval(min=0, min_open=True)),
        item_list("updater", _updater, "updater plugins (grow_colmaker, prune, refresh, shotgun, ...)"),
        choice("dsplit", ("row", "col")),
        integer("refresh_leaf", Interval(0, 1)),
        choice("process_type", ("default", "update")),
        choice("grow_policy", ("depthwise", "lossguide")),
        integer("max_leaves", Interval(min=0)),
        integer("max_bin", Interval(min=0)),
        choice("predictor", ("auto", "cpu_predictor", "gpu_predictor")),
        custom("monotone_constraints", _parse_tuple, "a tuple of -1, 0 and 1 such as (1,0,-1)"),
        custom("interaction_constraints", _parse_nested, "a nested list of feature indices such as [[0,1],[2,3,4]]"),
        choice("sample_type", ("uniform", "weighted")),
        choice("normalize_type", ("tree", "forest")),
        real("rate_drop", Interval(0, 1)),
        integer("one_drop", Interval(0, 1)),
        real("skip_drop", Interval(0, 1)),
        real("lambda_bias", Interval(0, 1)),
        real("tweedie_variance_power", Interval(1, 2, min_open=True, max_open=True)),
        choice("objective", OBJECTIVES),
        integer("num_class", Interval(min=2)),
        real("base_score", Interval(min=0)),
        item_list("eval_metric", _metric, "metrics (rmse, mae, logloss, error, error@t, auc, ...; see docs)"),
        integer("seed", Interval(-(2**31), 2**31 - 1, min_open=True, max_open=True)),
        integer("num_parallel_tree", Interval(min=1)),
        _true_false("save_model_on_termination"),
        choice("aft_loss_distribution", ("normal", "logistic", "extreme")),
        real("aft_loss_distribution_scale", Interval(min=0)),
        _true_false("single_precision_histogram"),
        _true_false("deterministic_histogram"),
        choice("sampling_method", ("uniform", "gradient_based")),
        real("prob_buffer_row", Interval(min=1, min_open=True)),
        boolean("use_dask_gpu_training"),
        custom("_tuning_objective_metric", _tuning_metric, "<channel>:<metric> such as validation:rmse"),
        integer("_kfold", Interval(min=2)),
        integer("_num_cv_round", Interval(min=1)),
    ],
    aliases={"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"},
)


@dataclass
class XGBoostConfig:
    """What the algorithm needs after validation.

    ``params`` goes to ``xgboost.train``; ``metrics`` is the evaluation metric list in the user's order (empty:
    the objective's default); ``stop_metric`` is the metric early stopping watches on ``validation``.
    """

    params: dict[str, Any]
    num_round: int
    objective: str
    num_class: int | None
    csv_weights: int = 0
    early_stopping_rounds: int | None = None
    metrics: list[str] = field(default_factory=list)
    save_model_on_termination: bool = False

    @property
    def native_metrics(self) -> list[str]:
        """Metrics XGBoost computes itself, in order."""
        return [m for m in self.metrics if metric_base(m) not in CUSTOM_METRICS]

    @property
    def custom_metrics(self) -> list[str]:
        """Metrics computed in Python from the predictions, in order."""
        return [m for m in self.metrics if metric_base(m) in CUSTOM_METRICS]

    @property
    def stop_metric(self) -> str:
        """The last evaluation metric (the objective's default when none is given)."""
        return self.metrics[-1] if self.metrics else DEFAULT_METRICS.get(self.objective, "rmse")

    @property
    def maximize(self) -> bool:
        """Whether a larger ``stop_metric`` is better."""
        return metric_base(self.stop_metric) in MAXIMIZE_METRICS


def _is_classification(objective: str) -> bool:
    return objective.startswith(("binary:", "multi:"))


def _cross_checks(values: Mapping[str, Any], objective: str) -> None:
    given_objective = "objective" in values
    num_class = values.get("num_class")
    if objective.startswith("multi:") and num_class is None:
        raise UserError(f"hyperparameter 'num_class' is required with objective '{objective}': an integer >= 2")
    if num_class is not None and not given_objective:
        raise UserError(
            "hyperparameter 'num_class' is only for multi-class objectives: set objective to multi:softmax or "
            "multi:softprob, or remove num_class"
        )
    metrics = [metric_base(m) for m in values.get("eval_metric", [])]
    if "auc" in metrics and not objective.startswith(("binary:", "rank:")):
        raise UserError(
            f"hyperparameter 'eval_metric': 'auc' applies only to classification (binary:*) and ranking (rank:*) "
            f"objectives, not '{objective}'"
        )
    if "aft-nloglik" in metrics and objective != "survival:aft":
        raise UserError("hyperparameter 'eval_metric': 'aft-nloglik' applies only to objective 'survival:aft'")
    custom = [m for m in metrics if m in CUSTOM_METRICS and m not in ("mse", "r2")]
    if custom and not _is_classification(objective):
        raise UserError(
            f"hyperparameter 'eval_metric': '{custom[0]}' applies only to classification objectives "
            f"(binary:*, multi:*), not '{objective}'"
        )
    tree_method = values.get("tree_method")
    if "monotone_constraints" in values and tree_method not in ("exact", "hist"):
        raise UserError(
            "hyperparameter 'monotone_constraints' needs tree_method 'exact' or 'hist' (set tree_method explicitly)"
        )
    if "interaction_constraints" in values and tree_method not in ("exact", "hist", "approx"):
        raise UserError(
            "hyperparameter 'interaction_constraints' needs tree_method 'exact', 'hist' or 'approx' "
            "(set tree_method explicitly)"
        )
    updaters = values.get("updater")
    if updaters:
        if values.get("booster") == "gblinear":
            if len(updaters) != 1 or updaters[0] not in UPDATERS_LINEAR:
                raise UserError(
                    "hyperparameter 'updater': booster 'gblinear' takes exactly one of shotgun, coord_descent"
                )
        elif values.get("process_type") == "update":
            if any(u not in ("refresh", "prune") for u in updaters):
                raise UserError("hyperparameter 'updater': process_type 'update' takes only refresh and prune")
        else:
            if any(u not in UPDATERS_TREE for u in updaters):
                raise UserError(f"hyperparameter 'updater': tree boosters take {', '.join(UPDATERS_TREE)}")
            if sum(u in UPDATERS_GROW for u in updaters) > 1:
                raise UserError(
                    f"hyperparameter 'updater': give at most one tree grow plugin ({', '.join(UPDATERS_GROW)})"
                )
    if "_kfold" in values or "_num_cv_round" in values:
        raise UserError(
            "hyperparameter '_kfold'/'_num_cv_round': k-fold cross-validation is not available in trainforge's "
            "built-in XGBoost; remove these hyperparameters"
        )
    if values.get("use_dask_gpu_training"):
        raise UserError(
            "hyperparameter 'use_dask_gpu_training': Dask GPU training is not available in trainforge's built-in "
            "XGBoost; remove it or set it to false"
        )


def validate(raw: Mapping[str, str], *, num_cpus: int | None = None) -> XGBoostConfig:
    """Validate the raw hyperparameters and build the training configuration.

    ``nthread`` defaults to ``num_cpus`` (the job's ``SM_NUM_CPUS``) when given.
    """
    values = SCHEMA.validate(raw)
    objective = values.get("objective", DEFAULT_OBJECTIVE)
    if objective == "reg:linear":
        log.info("objective 'reg:linear' is deprecated in XGBoost: training with 'reg:squarederror' (the same loss)")
        objective = "reg:squarederror"
        values["objective"] = objective
    _cross_checks(values, objective)
    metrics = list(dict.fromkeys(values.get("eval_metric", [])))
    tuning = values.get("_tuning_objective_metric")
    if tuning:
        tuned = tuning.split(":", 1)[1]
        if tuned in metrics:
            metrics.remove(tuned)
        metrics.append(tuned)
    params: dict[str, Any] = {}
    for name, value in values.items():
        if name in ALGORITHM_ONLY:
            continue
        if name in NO_EFFECT:
            log.info("hyperparameter '%s' has no effect in XGBoost 2.x and later; ignored", name)
            continue
        if name == "updater":
            value = ",".join(value)
        elif name == "monotone_constraints":
            value = "(" + ",".join(str(v) for v in value) + ")"
        elif name == "interaction_constraints":
            value = json.dumps(value)
        params[name] = value
    params["objective"] = objective
    if num_cpus is not None and "nthread" not in params:
        params["nthread"] = num_cpus
    native = [m for m in metrics if metric_base(m) not in CUSTOM_METRICS]
    if native:
        params["eval_metric"] = native
    elif metrics:
        # Only Python-side metrics were asked for: keep XGBoost from adding its default metric after them.
        params["disable_default_eval_metric"] = 1
    return XGBoostConfig(
        params=params,
        num_round=values["num_round"],
        objective=objective,
        num_class=values.get("num_class"),
        csv_weights=values.get("csv_weights", 0),
        early_stopping_rounds=values.get("early_stopping_rounds"),
        metrics=metrics,
        save_model_on_termination=values.get("save_model_on_termination") == "true",
    )
