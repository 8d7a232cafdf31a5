"""Built-in k-means on scikit-learn: ``python -m trainforge_algorithms.kmeans``.

Web-scale k-means as SageMaker describes it: mini-batch k-means (``MiniBatchKMeans.partial_fit``) over the
``train`` channel for ``epochs`` passes with ``k * extra_center_factor`` centers, then a local Lloyd's k-means
(``KMeans``) that reduces those centers, weighted by their cluster sizes, to ``k``. Channels ``train``
(required) and ``test``: CSV without a header and without a label, ``feature_dim`` columns. Per epoch it prints
``#quality_metric: host=<h>, epoch=<e>, train msd <loss>=<v>``; at the end ``#train_score (<h>) : ('msd', <v>)``
and, with a test channel, ``#test_score (<h>) : ('msd'|'ssd', <v>)`` for each of ``eval_metrics``. The model is
``model.joblib``: a fitted scikit-learn ``KMeans`` whose ``cluster_centers_`` are the ``k`` centers.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from typing import Any

import numpy as np

from . import tabular
from .hyperparameters import Interval, InvalidValue, Schema, auto_or, choice, custom, integer, real
from .job import AlgorithmJob, UserError, emit, metric_line, run, score_line

log = logging.getLogger("trainforge_algorithms.kmeans")

ALGORITHM = "kmeans"
EVAL_METRICS = ("msd", "ssd")
EXPECTATION = "built-in kmeans expects CSV without a header and without a label column: features only"
MODEL_FILE = "model.joblib"


def _eval_metrics(raw: str) -> list[str]:
    text = raw.strip()
    items: list[Any]
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = []
        if not isinstance(items, list):
            items = []
    else:
        items = [p.strip() for p in text.split(",")]
    names = [str(i).strip().lower() for i in items]
    if not names or any(n not in EVAL_METRICS for n in names):
        raise InvalidValue('a list of msd and ssd such as ["msd", "ssd"]')
    return list(dict.fromkeys(names))


SCHEMA = Schema(
    ALGORITHM,
    [
        integer("k", Interval(min=1), required=True),
        integer("feature_dim", Interval(min=1), required=True),
        integer("mini_batch_size", Interval(min=1), default=5000),
        integer("epochs", Interval(min=1), default=1),
        choice("init_method", ("random", "kmeans++"), default="random"),
        integer("local_lloyd_max_iter", Interval(min=1), default=300),
        real("local_lloyd_tol", Interval(min=0), default=0.0001),
        choice("local_lloyd_init_method", ("random", "kmeans++"), default="kmeans++"),
        auto_or(integer("local_lloyd_num_trials", Interval(min=1)), default="auto"),
        auto_or(integer("extra_center_factor", Interval(min=1)), default="auto"),
        integer("half_life_time_size", Interval(min=0)),
        custom("eval_metrics", _eval_metrics, 'a list of msd and ssd such as ["msd", "ssd"]', default=["msd"]),
    ],
)


def validate(raw: dict[str, str]) -> dict[str, Any]:
    """Typed hyperparameters; raises :class:`UserError`."""
    hp = SCHEMA.validate(raw)
    if "half_life_time_size" in raw:
        log.info("hyperparameter 'half_life_time_size' is accepted for compatibility; no effect here")
    return hp


def _load(job: AlgorithmJob, name: str, feature_dim: int) -> np.ndarray | None:
    channel = job.channels.get(name)
    if channel is None:
        return None
    tabular.require_csv(channel, algorithm=ALGORITHM)
    matrix = tabular.read_csv(channel, expectation=EXPECTATION)
    if matrix.shape[0] == 0:
        raise UserError(f"channel '{name}' has no data: no rows in the data files under {channel.path}")
    if matrix.shape[1] != feature_dim:
        raise UserError(
            f"channel '{name}' has {matrix.shape[1]} columns but hyperparameter feature_dim is {feature_dim}; "
            "kmeans data has no label column: every column is a feature"
        )
    if np.isnan(matrix).any():
        raise UserError(f"channel '{name}' has empty values; built-in kmeans needs every value")
    return matrix


def squared_distances(model: Any, x: np.ndarray) -> np.ndarray:
    """Each row's squared distance to its nearest center."""
    return np.min(model.transform(x), axis=1) ** 2


def _extra_factor(hp: dict[str, Any], k: int, rows: int) -> int:
    factor = hp["extra_center_factor"]
    if factor == "auto":
        factor = max(1, math.ceil(math.log(k + 1)))
    return max(1, min(int(factor), rows // k))


def train(job: AlgorithmJob) -> None:
    """Validate, load, cluster, report and save; raises :class:`UserError` for bad input."""
    import joblib
    from sklearn.cluster import KMeans, MiniBatchKMeans

    hp = validate(job.hyperparameters)
    job.check_channels(algorithm=ALGORITHM, required=("train",), optional=("test",))
    x = _load(job, "train", hp["feature_dim"])
    if x is None:
        raise UserError("channel 'train' is required")
    test = _load(job, "test", hp["feature_dim"])
    k = hp["k"]
    if len(x) < k:
        raise UserError(f"hyperparameter 'k' = {k} but channel 'train' has only {len(x)} rows: k must be <= rows")
    factor = _extra_factor(hp, k, len(x))
    batch = max(hp["mini_batch_size"], k * factor)
    init = "k-means++" if hp["init_method"] == "kmeans++" else "random"
    log.info("k-means: k=%d, %d centers during mini-batch passes, %d rows, %d features", k, k * factor, *x.shape)
    sketch = MiniBatchKMeans(n_clusters=k * factor, init=init, batch_size=batch, random_state=0, n_init=1)
    rng = np.random.default_rng(0)
    for epoch in range(hp["epochs"]):
        order = rng.permutation(len(x))
        first = order[: max(batch, k * factor)]
        sketch.partial_fit(x[first])
        for start in range(len(first), len(x), batch):
            sketch.partial_fit(x[order[start : start + batch]])
        emit(metric_line(job.current_host, epoch, "train", "msd", float(np.mean(squared_distances(sketch, x)))))
    centers = sketch.cluster_centers_
    sizes = np.bincount(sketch.predict(x), minlength=len(centers)).astype(np.float64)
    keep = sizes > 0 if (sizes > 0).sum() >= k else np.ones(len(centers), dtype=bool)
    trials = 1 if hp["local_lloyd_num_trials"] == "auto" else hp["local_lloyd_num_trials"]
    final = KMeans(
        n_clusters=k,
        init="k-means++" if hp["local_lloyd_init_method"] == "kmeans++" else "random",
        max_iter=hp["local_lloyd_max_iter"],
        tol=hp["local_lloyd_tol"],
        n_init=trials,
        random_state=0,
    )
    final.fit(centers[keep], sample_weight=np.maximum(sizes[keep], 1e-12))
    emit(score_line(job.current_host, "train", "msd", float(np.mean(squared_distances(final, x)))))
    if test is not None:
        distances = squared_distances(final, test)
        values = {"msd": float(np.mean(distances)), "ssd": float(np.sum(distances))}
        for metric in hp["eval_metrics"]:
            emit(score_line(job.current_host, "test", metric, values[metric]))
    job.model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(final, job.model_dir / MODEL_FILE)
    log.info("Stored %d centers at %s", k, job.model_dir / MODEL_FILE)


def main() -> None:
    """Entry point of ``python -m trainforge_algorithms.kmeans``."""
    run(train, algorithm=ALGORITHM)


if __name__ == "__main__":
    main()
    sys.exit(0)
