"""Built-in XGBoost (reference §8): ``python -m trainforge_algorithms.xgboost``.

Trains on the ``train`` channel (required), evaluates on ``train`` and ``validation`` (optional) every round and
prints XGBoost's own per-round line ``[<i>]\\ttrain-<metric>:<v>\\tvalidation-<metric>:<v>``. With
``early_stopping_rounds`` it stops when the last evaluation metric has not improved on ``validation`` (on
``train`` when there is no validation channel) for that many rounds, keeps the best iteration, and prints
``Stopping. Best iteration:`` followed by that iteration's line. The model is saved as
``SM_MODEL_DIR/xgboost-model`` (XGBoost's JSON model format; ``xgboost.Booster().load_model`` reads it).

On several hosts, the hosts whose ``train`` share has rows train together in one XGBoost ring, as in SageMaker's
image (``sagemaker_xgboost_container.distributed.rabit_run``); the first of them prints the per-round lines and
saves the model.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np

from . import xgboost_data, xgboost_params
from .job import AlgorithmJob, UserError, emit, run
from .xgboost_params import XGBoostConfig, metric_base

log = logging.getLogger("trainforge_algorithms.xgboost")

MODEL_FILE = "xgboost-model"
TRAIN = "train"
VALIDATION = "validation"


def _class_predictions(preds: np.ndarray, objective: str) -> np.ndarray:
    if preds.ndim == 2:
        return np.argmax(preds, axis=1)
    if objective == "binary:logitraw":
        return (preds > 0).astype(np.float64)
    if objective in ("binary:logistic", "reg:logistic"):
        return (preds > 0.5).astype(np.float64)
    return np.rint(preds)


def custom_metric_value(name: str, preds: np.ndarray, labels: np.ndarray, objective: str) -> float:
    """One Python-side metric (``accuracy``, ``f1``, ``mse``, ``r2``, ...) of predictions against labels.

    Classification metrics use predicted classes (probability > 0.5, margin > 0, argmax of class
    probabilities); ``f1``/``precision``/``recall`` average as ``binary`` for binary objectives and ``macro``
    otherwise.
    """
    from sklearn import metrics as skm

    base = metric_base(name)
    if base in ("mse", "r2"):
        values = np.argmax(preds, axis=1).astype(np.float64) if preds.ndim == 2 else preds
        if base == "mse":
            return float(np.mean((values - labels) ** 2))
        return float(skm.r2_score(labels, values))
    predicted = _class_predictions(preds, objective)
    binary = objective.startswith("binary:") or objective == "reg:logistic"
    if base == "accuracy":
        return float(skm.accuracy_score(labels, predicted))
    if base == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(labels, predicted))
    kind, _, average = base.partition("_")
    if not average:
        average = "binary" if binary else "macro"
    scorer = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[kind]
    try:
        return float(scorer(labels, predicted, average=average, zero_division=0))
    except ValueError as exc:
        raise UserError(f"eval_metric '{name}': {exc}") from None


def _custom_metric(config: XGBoostConfig) -> Callable[[np.ndarray, Any], list[tuple[str, float]]] | None:
    names = config.custom_metrics
    if not names:
        return None

    def evaluate(preds: np.ndarray, dmatrix: Any) -> list[tuple[str, float]]:
        labels = dmatrix.get_label()
        return [(name, custom_metric_value(name, preds, labels, config.objective)) for name in names]

    return evaluate


def _load(job: AlgorithmJob, config: XGBoostConfig) -> tuple[xgboost_data.Dataset, xgboost_data.Dataset | None]:
    train = job.channels[TRAIN]
    kind = xgboost_data.parse_content_type(train.content_type, channel=TRAIN)
    validation = job.channels.get(VALIDATION)
    if validation is not None:
        val_kind = xgboost_data.parse_content_type(validation.content_type, channel=VALIDATION)
        if val_kind != kind:
            raise UserError(
                f"channel 'validation' holds {val_kind} data but channel 'train' holds {kind}: both channels must "
                "use the same ContentType"
            )
    log.info("Reading %s data", kind)
    train_data = xgboost_data.load_channel(train, kind, csv_weights=config.csv_weights)
    if train_data is None:
        raise NoTrainingData(f"channel 'train' has no data: no rows in the data files under {train.path}")
    val_data = None
    if validation is not None:
        val_data = xgboost_data.load_channel(validation, kind, csv_weights=config.csv_weights)
        if val_data is None:
            raise UserError(f"channel 'validation' has no data: no rows in the data files under {validation.path}")
    if kind != xgboost_data.LIBSVM and val_data is not None and val_data.num_features != train_data.num_features:
        raise UserError(
            f"channel 'validation' has {val_data.num_features} feature columns but channel 'train' has "
            f"{train_data.num_features}: both must have the same columns"
        )
    xgboost_data.align_features(train_data, val_data)
    return train_data, val_data


class NoTrainingData(UserError):
    """This host's ``train`` channel holds no rows."""


class _StopOnSignal:
    """With ``save_model_on_termination``: SIGTERM ends training after the current round (the model is saved)."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        # Only set the flag: writing to stdout from a signal handler can interleave with a print in progress.
        self.requested = True


def _xgboost_error(exc: Exception) -> UserError:
    text = str(exc).split("Stack trace:", 1)[0].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = " ".join(lines)
    if message.startswith("[") and "]" in message:
        message = message.split("]", 1)[1].strip()
        head, sep, rest = message.partition(": ")
        if sep and ("/" in head or head.endswith((".cc", ".cu", ".h"))):
            message = rest
    return UserError(f"XGBoost training failed: {message or type(exc).__name__}")


def _in_order(xgb: Any, callbacks: list[Any]) -> Any:
    """One callback running ``callbacks`` in list order, each of them every time.

    XGBoost keeps its callbacks in a set and stops at the first that ends training, so the per-round line of
    the last round could be skipped; here the line is always printed before training ends.
    """

    class InOrder(xgb.callback.TrainingCallback):
        def before_training(self, model: Any) -> Any:
            for callback in callbacks:
                model = callback.before_training(model)
            return model

        def after_training(self, model: Any) -> Any:
            for callback in callbacks:
                model = callback.after_training(model)
            return model

        def before_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return any([callback.before_iteration(model, epoch, evals_log) for callback in callbacks])

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return any([callback.after_iteration(model, epoch, evals_log) for callback in callbacks])

    return InOrder()


def _round_printer(xgb: Any) -> Any:
    """XGBoost's per-round line ``[<i>]\t<data>-<metric>:<value>``, printed once per round.

    On one host that is XGBoost's own ``EvaluationMonitor``; in a ring of hosts the first one prints it to its own
    output (XGBoost would route it through the tracker, which adds a timestamp).
    """
    from xgboost import collective

    if not collective.is_distributed():
        return xgb.callback.EvaluationMonitor()

    class RankZeroPrinter(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if collective.get_rank() == 0 and evals_log:
                line = f"[{epoch}]"
                for data, metrics in evals_log.items():
                    for name, values in metrics.items():
                        line += f"\t{data}-{name}:{float(values[-1]):.5f}"
                emit(line)
            return False

    return RankZeroPrinter()


def _best_iteration_line(evals_result: dict[str, dict[str, list[float]]], best: int) -> str:
    parts = [f"[{best}]"]
    for data_name, metrics in evals_result.items():
        for metric, values in metrics.items():
            if best < len(values):
                parts.append(f"{data_name}-{metric}:{values[best]:.5f}")
    return "\t".join(parts)


def train(job: AlgorithmJob) -> None:
    """Validate, load, train and save; raises :class:`UserError` for bad input.

    On several hosts the hosts with training data train together in one XGBoost ring (``rabit_run``: a host whose
    ``train`` share is empty, e.g. under ``ShardedByS3Key``, leaves with exit code 0) and the first of them saves the
    model; on one host an empty ``train`` channel is an error.
    """
    from sagemaker_xgboost_container.distributed import rabit_run

    config = xgboost_params.validate(job.hyperparameters, num_cpus=job.num_cpus)
    job.check_channels(algorithm="XGBoost", required=(TRAIN,), optional=(VALIDATION,))
    data: tuple[xgboost_data.Dataset, xgboost_data.Dataset | None] | None
    if len(job.hosts) > 1:
        try:
            data = _load(job, config)
        except NoTrainingData as empty:
            log.info("%s", empty)
            data = None
    else:
        data = _load(job, config)
    rabit_run(
        _train,
        {"job": job, "config": config, "data": data},
        include_in_training=data is not None,
        hosts=job.hosts,
        current_host=job.current_host,
        update_rabit_args=True,
    )


def _train(
    job: AlgorithmJob,
    config: XGBoostConfig,
    data: tuple[xgboost_data.Dataset, xgboost_data.Dataset | None],
    is_master: bool,
) -> None:
    train_data, val_data = data
    import xgboost as xgb  # after validating the input: importing xgboost takes seconds

    log.info("Train matrix has %d rows and %d features", train_data.num_rows, train_data.num_features)
    dtrain = xgboost_data.to_dmatrix(train_data)
    evals = [(dtrain, TRAIN)]
    if val_data is not None:
        log.info("Validation matrix has %d rows and %d features", val_data.num_rows, val_data.num_features)
        evals.append((xgboost_data.to_dmatrix(val_data), VALIDATION))
    callbacks: list[Any] = [_round_printer(xgb)]
    if config.early_stopping_rounds is not None:
        data_name = VALIDATION if val_data is not None else TRAIN
        log.info(
            "Early stopping: %d rounds without improvement of %s on '%s'",
            config.early_stopping_rounds,
            config.stop_metric,
            data_name,
        )
        callbacks.append(
            xgb.callback.EarlyStopping(
                rounds=config.early_stopping_rounds,
                metric_name=config.stop_metric if config.metrics else None,
                data_name=data_name,
                maximize=config.maximize if config.metrics else None,
                save_best=config.params.get("booster") != "gblinear",
            )
        )
    if config.save_model_on_termination:
        stopper = _StopOnSignal()
        signal.signal(signal.SIGTERM, stopper.handler)

        class _Stop(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                if stopper.requested:
                    log.info(
                        "SIGTERM received: stopped after round %d; saving the model (save_model_on_termination)", epoch
                    )
                return stopper.requested

        callbacks.append(_Stop())
    evals_result: dict[str, dict[str, list[float]]] = {}
    try:
        booster = xgb.train(
            config.params,
            dtrain,
            num_boost_round=config.num_round,
            evals=evals,
            custom_metric=_custom_metric(config),
            callbacks=[_in_order(xgb, callbacks)],
            evals_result=evals_result,
            verbose_eval=False,
        )
    except UserError:
        raise
    except Exception as exc:
        raise _xgboost_error(exc) from None
    rounds = booster.num_boosted_rounds()
    if config.early_stopping_rounds is not None:
        best = getattr(booster, "best_iteration", None)
        done = max((len(values) for metrics in evals_result.values() for values in metrics.values()), default=0)
        if best is not None and done < config.num_round:
            emit("Stopping. Best iteration:")
            emit(_best_iteration_line(evals_result, int(best)))
    if not is_master:
        log.info("Trained %d boosting rounds with the other hosts; the first host saves the model", rounds)
        return
    save_model(booster, job)
    log.info("Stored the trained model (%d boosting rounds) at %s", rounds, job.model_dir / MODEL_FILE)


def save_model(booster: Any, job: AlgorithmJob) -> None:
    """Save ``booster`` as ``<model_dir>/xgboost-model`` in XGBoost's JSON format (written, then renamed)."""
    job.model_dir.mkdir(parents=True, exist_ok=True)
    tmp = job.model_dir / f".{MODEL_FILE}.json"
    booster.save_model(str(tmp))
    os.replace(tmp, job.model_dir / MODEL_FILE)


def main() -> None:
    """Entry point of ``python -m trainforge_algorithms.xgboost``."""
    run(train, algorithm="XGBoost")


if __name__ == "__main__":
    main()
    sys.exit(0)
