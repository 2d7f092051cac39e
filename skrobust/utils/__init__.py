"""Utilities: layer features and the numpy/torch helpers the estimators share."""

from ._differentiable import TorchModel, as_torch_model
from ._features import LayerCapture, extract_features, layer_names
from ._sklearn_torch import register_sklearn_converter, sklearn_to_torch
from ._torch import eval_mode, make_generator, resolve_device, to_numpy, to_tensor

__all__ = [
    "LayerCapture",
    "TorchModel",
    "as_torch_model",
    "eval_mode",
    "extract_features",
    "layer_names",
    "make_generator",
    "register_sklearn_converter",
    "resolve_device",
    "sklearn_to_torch",
    "to_numpy",
    "to_tensor",
]
