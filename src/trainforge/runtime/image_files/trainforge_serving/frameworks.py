"""The framework containers' default handlers (reference §7.3).

- ``generic`` (``trainforge/python:*`` and anything else): the inference toolkit's defaults; ``model_fn`` and
  ``predict_fn`` must come from the script.
- ``sklearn``: ``model_fn`` loads the model directory's only ``*.joblib`` file (``model.joblib`` first), else its
  only ``*.pkl`` file, with joblib; with none or several it asks for a ``model_fn``. ``input_fn`` decodes like the
  toolkit, CSV and JSON to float32 (a one-line CSV becomes one row); ``predict_fn`` is ``model.predict(data)``.
- ``xgboost`` (script mode): ``model_fn`` loads ``xgboost-model``; CSV and LIBSVM requests become a ``DMatrix``,
  JSON/NPY arrays too; ``predict_fn`` is ``model.predict(dmatrix)``.
- ``pytorch``: ``model_fn`` is required; requests decode to a float tensor, ``predict_fn`` runs the model in eval
  mode without gradients, tensors are answered as lists.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from . import codecs
from .errors import HandlerConfigError
from .handlers import Defaults

FRAMEWORKS = ("sklearn", "xgboost", "xgboost-algorithm", "pytorch", "generic")
SKLEARN_PATTERNS = ("model.joblib", "*.joblib", "*.pkl")
XGBOOST_MODEL = "xgboost-model"


def _program() -> str:
    return os.environ.get("SAGEMAKER_PROGRAM") or "the inference script (SAGEMAKER_PROGRAM)"


def generic_model_fn(model_dir: str) -> Any:
    """The toolkit's default: there is none."""
    raise HandlerConfigError(
        f"model_fn is required: define model_fn(model_dir) in {_program()} returning the model loaded from {model_dir}"
    )


def generic_input_fn(input_data: Any, content_type: str) -> Any:
    """The toolkit's ``default_input_fn``: the body decoded to a numpy array."""
    return codecs.decode(input_data, content_type)


def generic_predict_fn(data: Any, model: Any) -> Any:
    """The toolkit's default: there is none."""
    raise NotImplementedError(f"predict_fn is required: define predict_fn(input_data, model) in {_program()}")


def generic_output_fn(prediction: Any, accept: str) -> Any:
    """The toolkit's ``default_output_fn``: the prediction encoded as ``accept``."""
    return codecs.encode(prediction, accept), accept


def sklearn_model_file(model_dir: str) -> Path:
    """The file the SKLearn default ``model_fn`` loads (see the module doc); an error naming what it found."""
    directory = Path(model_dir)
    if (directory / "model.joblib").is_file():
        return directory / "model.joblib"
    for pattern in ("*.joblib", "*.pkl"):
        found = sorted(p for p in directory.glob(pattern) if p.is_file())
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise HandlerConfigError(
                f"model_fn is required: {model_dir} holds several {pattern} files ({names}); define "
                f"model_fn(model_dir) in {_program()} to say which to load"
            )
    raise HandlerConfigError(
        f"model_fn is required: define model_fn(model_dir) in {_program()} (the default loads the model directory's "
        f"only model.joblib, *.joblib or *.pkl file, and {model_dir} has none)"
    )


def sklearn_model_fn(model_dir: str) -> Any:
    """Load the model directory's only joblib/pickle file with joblib."""
    path = sklearn_model_file(model_dir)
    import joblib

    return joblib.load(path)


def sklearn_input_fn(input_data: Any, content_type: str) -> Any:
    """Decode like the toolkit; CSV and JSON to float32, a one-line CSV as one row."""
    array = codecs.decode(input_data, content_type)
    if content_type in codecs.UTF8_TYPES and isinstance(array, np.ndarray):
        array = array.astype(np.float32)
        if content_type == codecs.CSV and array.ndim == 1:
            array = array.reshape(1, -1)
    return array


def sklearn_predict_fn(data: Any, model: Any) -> Any:
    """``model.predict(data)``."""
    return model.predict(data)


def xgboost_model_fn(model_dir: str) -> Any:
    """Load ``<model_dir>/xgboost-model`` (XGBoost's JSON/UBJSON/binary format, else a pickled booster)."""
    path = Path(model_dir) / XGBOOST_MODEL
    if not path.is_file():
        raise HandlerConfigError(
            f"model_fn is required: the default loads {XGBOOST_MODEL} and {model_dir} has none; define "
            f"model_fn(model_dir) in {_program()}"
        )
    return load_booster(path)


def load_booster(path: Path) -> Any:
    """An ``xgboost.Booster`` from ``path``: XGBoost's own formats first, then a pickle."""
    import xgboost

    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
        return booster
    except xgboost.core.XGBoostError:
        with open(path, "rb") as handle:
            return pickle.load(handle)


def xgboost_input_fn(input_data: Any, content_type: str) -> Any:
    """CSV/LIBSVM (and JSON/NPY arrays) as a ``DMatrix``."""
    from . import xgboost_algorithm

    return xgboost_algorithm.to_dmatrix(input_data, content_type)


def xgboost_predict_fn(data: Any, model: Any) -> Any:
    """``model.predict(dmatrix)``."""
    return model.predict(data)


def pytorch_model_fn(model_dir: str) -> Any:
    """PyTorch has no default ``model_fn``."""
    raise HandlerConfigError(
        f"PyTorch models need a model_fn: define model_fn(model_dir) in {_program()} returning the model loaded "
        f"from {model_dir} (the PyTorch container has no default)"
    )


def pytorch_input_fn(input_data: Any, content_type: str) -> Any:
    """The body decoded like the toolkit, as a float tensor (CSV/JSON) or a tensor of the array's type."""
    import torch

    array = codecs.decode(input_data, content_type)
    if content_type in codecs.UTF8_TYPES:
        return torch.FloatTensor(np.asarray(array, dtype=np.float32))
    return torch.from_numpy(np.asarray(array))


def pytorch_predict_fn(data: Any, model: Any) -> Any:
    """The model in eval mode, called without gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        return model(data)


def defaults_for(framework: str) -> Defaults:
    """The default handlers of ``framework`` (one of :data:`FRAMEWORKS`)."""
    if framework == "sklearn":
        return Defaults(sklearn_model_fn, sklearn_input_fn, sklearn_predict_fn, generic_output_fn)
    if framework == "xgboost":
        return Defaults(xgboost_model_fn, xgboost_input_fn, xgboost_predict_fn, generic_output_fn)
    if framework == "pytorch":
        return Defaults(pytorch_model_fn, pytorch_input_fn, pytorch_predict_fn, generic_output_fn)
    if framework == "xgboost-algorithm":
        from . import xgboost_algorithm

        return xgboost_algorithm.defaults()
    if framework == "generic":
        return Defaults(generic_model_fn, generic_input_fn, generic_predict_fn, generic_output_fn)
    raise HandlerConfigError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
