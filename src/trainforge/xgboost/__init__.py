"""XGBoost (``sagemaker.xgboost``): script mode in the ``trainforge/xgboost`` image; estimator, model, predictor."""

from trainforge.xgboost.estimator import XGBoost
from trainforge.xgboost.model import XGBoostModel, XGBoostPredictor

__all__ = ["XGBoost", "XGBoostModel", "XGBoostPredictor"]
