"""Built-in algorithms: which jobs run one, the module that implements it, and its metric definitions.

A job runs a built-in algorithm when its image (:func:`trainforge.spec.images.job_image`) has an ``algorithm``
and the job names no script (no ``sagemaker_program`` hyperparameter) and no ``ContainerEntrypoint``: SageMaker's
"algorithm mode" (reference §8.1). The supervisor then runs ``python -m <module>`` in the image's environment;
the server adds the algorithm's metric definitions to a job submitted without any (:func:`metric_definitions`),
so ``train:<metric>``/``validation:<metric>``/``test:<metric>`` are recorded without user regexes. The regexes
use AWS's ``#011`` rendering of a tab, as SageMaker's built-in definitions do; the line formats they match are
documented in ``docs/algorithms.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from trainforge.errors import ValidationError
from trainforge.spec.images import job_image
from trainforge.spec.job import CreateTrainingJobRequest

PROGRAM_HP = "sagemaker_program"
MAX_METRIC_DEFINITIONS = 40
# A metric value as the algorithms print it. A number, not ``\S+``: in AWS's rendering a tab becomes ``#011``, so
# ``\S+`` after ``train-rmse:`` would run on into the next metric of the line.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# Algorithm (as ``Image.algorithm`` names it) -> the module run with ``python -m`` (in runtime/image_files).
MODULES: dict[str, str] = {
    "xgboost": "trainforge_algorithms.xgboost",
    "linear-learner": "trainforge_algorithms.linear_learner",
    "kmeans": "trainforge_algorithms.kmeans",
}

# The metric XGBoost evaluates when eval_metric is not given (as in trainforge_algorithms.xgboost_params).
XGBOOST_DEFAULT_METRICS: dict[str, str] = {
    "binary:logistic": "logloss",
    "binary:logitraw": "logloss",
    "binary:hinge": "error",
    "count:poisson": "poisson-nloglik",
    "multi:softmax": "mlogloss",
    "multi:softprob": "mlogloss",
    "rank:pairwise": "ndcg",
    "rank:ndcg": "ndcg",
    "rank:map": "map",
    "reg:linear": "rmse",
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

LINEAR_LEARNER_SCORES: dict[str, tuple[str, ...]] = {
    "regressor": ("mse", "rmse", "absolute_loss", "r2"),
    "binary_classifier": ("binary_classification_accuracy", "precision", "recall", "binary_f_beta", "roc_auc_score"),
    "multiclass_classifier": (
        "multiclass_accuracy",
        "multiclass_top_k_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f_beta",
    ),
}
KMEANS_SCORES = ("msd", "ssd")


def builtin_algorithm(request: CreateTrainingJobRequest) -> str | None:
    """The built-in algorithm ``request`` runs (``"xgboost"``, ``"linear-learner"``, ``"kmeans"``), or None when
    it runs a script, a container entrypoint, or an image without an algorithm (or an unknown image)."""
    algo = request.AlgorithmSpecification
    if algo.ContainerEntrypoint:
        return None
    if PROGRAM_HP in (request.HyperParameters or {}):
        return None
    try:
        image = job_image(algo.TrainingImage, algo.AlgorithmName)
    except ValidationError:
        return None
    return image.algorithm if image.algorithm in MODULES else None


def _decoded(raw: str | None) -> str | None:
    """A hyperparameter value as text, whether sent as ``str()`` or JSON-encoded."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, str) else raw


def _items(raw: str | None) -> list[str]:
    text = _decoded(raw)
    if not text:
        return []
    text = text.strip()
    if text.startswith("["):
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            return [str(item).strip() for item in decoded if str(item).strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


def xgboost_metrics(hyperparameters: Mapping[str, str]) -> list[str]:
    """The metrics built-in XGBoost evaluates: ``eval_metric`` (plus the metric of
    ``_tuning_objective_metric``), else the objective's default metric."""
    metrics = list(dict.fromkeys(_items(hyperparameters.get("eval_metric"))))
    tuning = _decoded(hyperparameters.get("_tuning_objective_metric"))
    if tuning and ":" in tuning:
        tuned = tuning.split(":", 1)[1].strip()
        if tuned and tuned not in metrics:
            metrics.append(tuned)
    if not metrics:
        objective = (_decoded(hyperparameters.get("objective")) or "reg:squarederror").strip()
        metrics = [XGBOOST_DEFAULT_METRICS.get(objective, "rmse")]
    return metrics


def xgboost_regex(channel: str, metric: str) -> str:
    """The regex of ``<channel>:<metric>`` on XGBoost's per-round line (AWS form, tab as ``#011``)."""
    return rf".*\[[0-9]+\].*#011{channel}-{re.escape(metric)}:{NUMBER}"


def epoch_regex(channel: str, metric: str) -> str:
    """The regex of a per-epoch line ``#quality_metric: host=<h>, epoch=<e>, <channel> <metric> <loss>=<v>``."""
    return rf"#quality_metric: host=\S+, epoch=[0-9]+, {channel} {re.escape(metric)} <loss>={NUMBER}"


def score_regex(channel: str, metric: str) -> str:
    """The regex of a final score line ``#<channel>_score (<h>) : ('<metric>', <v>)``."""
    return rf"#{channel}_score \([^)]*\) : \('{re.escape(metric)}', {NUMBER}\)"


def metric_definitions(algorithm: str, hyperparameters: Mapping[str, str] | None) -> list[dict[str, str]]:
    """The metric definitions (``Name``, ``Regex``) of a built-in algorithm's log lines, at most 40.

    XGBoost: ``train:<m>`` and ``validation:<m>`` for each evaluated metric. linear-learner:
    ``train:objective_loss``, ``validation:objective_loss`` and ``validation:<m>``/``test:<m>`` of its predictor
    type's scores (all types' when ``predictor_type`` is missing or unknown). kmeans: ``train:msd``, ``test:msd``,
    ``test:ssd``.
    """
    hps = dict(hyperparameters or {})
    defs: list[dict[str, str]] = []
    if algorithm == "xgboost":
        for metric in xgboost_metrics(hps):
            for channel in ("train", "validation"):
                defs.append({"Name": f"{channel}:{metric}", "Regex": xgboost_regex(channel, metric)})
    elif algorithm == "linear-learner":
        for channel in ("train", "validation"):
            defs.append({"Name": f"{channel}:objective_loss", "Regex": epoch_regex(channel, "objective_loss")})
        kind = (_decoded(hps.get("predictor_type")) or "").strip()
        groups = [LINEAR_LEARNER_SCORES[kind]] if kind in LINEAR_LEARNER_SCORES else LINEAR_LEARNER_SCORES.values()
        scores = list(dict.fromkeys(name for group in groups for name in group))
        for channel in ("validation", "test"):
            for metric in scores:
                defs.append({"Name": f"{channel}:{metric}", "Regex": score_regex(channel, metric)})
    elif algorithm == "kmeans":
        defs.append({"Name": "train:msd", "Regex": epoch_regex("train", "msd")})
        for metric in KMEANS_SCORES:
            defs.append({"Name": f"test:{metric}", "Regex": score_regex("test", metric)})
    return defs[:MAX_METRIC_DEFINITIONS]


def with_metric_definitions(request: CreateTrainingJobRequest, wire: dict[str, Any]) -> dict[str, Any]:
    """``wire`` (the request as stored) with the built-in algorithm's metric definitions added to
    ``AlgorithmSpecification`` when the job runs one and defines none itself; otherwise ``wire`` unchanged.

    Deterministic, so resubmitting the same request stores the same spec; every other field (HyperParameters
    included) is left byte-identical.
    """
    algorithm = builtin_algorithm(request)
    if algorithm is None or request.AlgorithmSpecification.MetricDefinitions:
        return wire
    definitions = metric_definitions(algorithm, request.HyperParameters)
    if not definitions:
        return wire
    spec = dict(wire.get("AlgorithmSpecification") or {})
    spec["MetricDefinitions"] = definitions
    return {**wire, "AlgorithmSpecification": spec}
