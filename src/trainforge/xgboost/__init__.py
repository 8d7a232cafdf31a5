"""XGBoost framework estimator (``sagemaker.xgboost``): script mode in the ``trainforge/xgboost`` image."""

from trainforge.xgboost.estimator import XGBoost

__all__ = ["XGBoost"]
