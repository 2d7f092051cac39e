"""The gradient protocol: how an attack gets a differentiable torch model out of a victim.

Attacks only ever see a :class:`TorchModel`. A victim provides one by being a
``torch.nn.Module``, a fitted skorch ``NeuralNet``, or any object with a
``_skrobust_torch_model()`` method returning a :class:`TorchModel` (skrobust's own
estimators implement it), or a fitted scikit-learn ``Pipeline``/classifier made of
differentiable steps (re-expressed in torch by :func:`sklearn_to_torch`).
``sklearn.frozen.FrozenEstimator`` is unwrapped.
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from ._torch import module_device

SUPPORTED_VICTIMS = (
    "a fitted skorch NeuralNet classifier, a torch.nn.Module returning logits, a "
    "skrobust estimator, or a scikit-learn Pipeline/classifier of differentiable steps "
    "(scalers, PCA, linear models, SVC, MLPClassifier), each optionally wrapped in "
    "sklearn.frozen.FrozenEstimator; for other models use the black-box "
    "SquareAttackTransformer"
)


@dataclass(frozen=True)
class TorchModel:
    """A differentiable view of a victim.

    Attributes
    ----------
    module : torch.nn.Module
        Maps a float32 tensor of shape ``(n_samples, n_features)`` to class scores
        (logits) of shape ``(n_samples, n_classes)``.
    device : torch.device
        Where ``module`` lives; inputs are moved there.
    classes : ndarray of shape (n_classes,) or None
        Label of each score column, or None when the labels are the column indices.
    """

    module: torch.nn.Module
    device: torch.device
    classes: np.ndarray | None = None

    def encode(self, y, *, name="y"):
        """Map labels ``y`` to score-column indices (int64), with a clear error."""
        y = np.asarray(y)
        if self.classes is None:
            if not np.issubdtype(y.dtype, np.integer) and not (
                np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)
            ):
                raise ValueError(
                    f"{name} must hold integer class indices for a victim without "
                    f"classes_, got dtype {y.dtype}."
                )
            return y.astype(np.int64)
        index = np.searchsorted(self.classes, y)
        index = np.clip(index, 0, len(self.classes) - 1)
        unknown = self.classes[index] != y
        if np.any(unknown):
            raise ValueError(
                f"{name} contains labels {np.unique(y[unknown])[:5].tolist()} that the "
                f"victim does not know; its classes are {self.classes.tolist()}."
            )
        return index.astype(np.int64)


def as_torch_model(estimator):
    """Return the :class:`TorchModel` of a victim, or raise a clear error.

    Parameters
    ----------
    estimator : object
        The victim (see module docstring for what is supported).

    Returns
    -------
    TorchModel

    Raises
    ------
    TypeError
        If the victim is not differentiable through this protocol.
    sklearn.exceptions.NotFittedError
        If the victim is a skorch net that has not been initialised/fitted.
    """
    from sklearn.frozen import FrozenEstimator

    if isinstance(estimator, FrozenEstimator):
        return as_torch_model(estimator.estimator)
    if hasattr(estimator, "_skrobust_torch_model"):
        return estimator._skrobust_torch_model()
    if isinstance(estimator, torch.nn.Module):
        return TorchModel(estimator, module_device(estimator))
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        NeuralNet = ()
    if isinstance(estimator, NeuralNet):
        if not getattr(estimator, "initialized_", False):
            raise NotFittedError(
                f"The victim {type(estimator).__name__} is not fitted: fit it first, or "
                "pass it unfitted without FrozenEstimator so that fit trains a clone."
            )
        module = estimator.module_
        return TorchModel(module, module_device(module))
    from sklearn.base import BaseEstimator

    if isinstance(estimator, BaseEstimator):
        from ._sklearn_torch import check_convertible, sklearn_classes, sklearn_to_torch

        try:
            check_convertible(estimator)
        except TypeError as exc:
            raise TypeError(
                f"Cannot attack a {type(estimator).__name__} with gradients: {exc}"
            ) from None
        module = sklearn_to_torch(estimator)
        return TorchModel(module, torch.device("cpu"), sklearn_classes(estimator))
    raise TypeError(
        f"Cannot attack a {type(estimator).__name__} with gradients: the victim must be "
        f"{SUPPORTED_VICTIMS}."
    )
