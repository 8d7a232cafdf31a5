"""The server's copy of the built-in XGBoost metric table agrees with the one the job uses.

The job-side module cannot import trainforge (image environments do not contain it) and ``spec`` does not import
``runtime``, so the table is written twice; this test keeps the two from drifting apart.
"""

from __future__ import annotations

from trainforge.runtime.image_files.trainforge_algorithms import xgboost_params
from trainforge.spec.algorithms import XGBOOST_DEFAULT_METRICS


def test_default_metric_per_objective_is_the_same_on_both_sides() -> None:
    for objective, metric in xgboost_params.DEFAULT_METRICS.items():
        assert XGBOOST_DEFAULT_METRICS[objective] == metric, objective
    extra = set(XGBOOST_DEFAULT_METRICS) - set(xgboost_params.DEFAULT_METRICS)
    assert extra <= {"reg:linear"}  # the deprecated name the job maps to reg:squarederror
    assert XGBOOST_DEFAULT_METRICS["reg:linear"] == xgboost_params.DEFAULT_METRICS["reg:squarederror"]
