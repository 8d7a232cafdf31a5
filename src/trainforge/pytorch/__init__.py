"""PyTorch (``sagemaker.pytorch``): scripts in the ``trainforge/pytorch`` images; estimator, model, predictor."""

from trainforge.pytorch.estimator import PyTorch
from trainforge.pytorch.model import PyTorchModel, PyTorchPredictor

__all__ = ["PyTorch", "PyTorchModel", "PyTorchPredictor"]
