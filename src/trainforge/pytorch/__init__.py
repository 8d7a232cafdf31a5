"""PyTorch framework estimator (``sagemaker.pytorch``): scripts in the ``trainforge/pytorch`` images."""

from trainforge.pytorch.estimator import PyTorch

__all__ = ["PyTorch"]
