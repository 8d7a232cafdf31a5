"""Scikit-learn: the framework estimator, model and predictor (``sagemaker.sklearn``)."""

from trainforge.sklearn.estimator import SKLearn
from trainforge.sklearn.model import SKLearnModel, SKLearnPredictor

__all__ = ["SKLearn", "SKLearnModel", "SKLearnPredictor"]
