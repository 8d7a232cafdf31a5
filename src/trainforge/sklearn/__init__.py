"""Scikit-learn framework estimator (``sagemaker.sklearn``)."""

from trainforge.sklearn.estimator import SKLearn

__all__ = ["SKLearn"]
