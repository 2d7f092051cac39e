"""The victim's life cycle: fit a clone (or use the given model as is), then view it in torch.

Shared by the attack transformers and by :class:`~skrobust.privacy.ImageInversionAttack`,
which take the same ``estimator`` parameter without sharing a base class.
"""

import torch
from sklearn.base import BaseEstimator, clone
from sklearn.frozen import FrozenEstimator

from ..utils._differentiable import (SUPPORTED_VICTIMS, TorchModel, as_torch_model,
                                     has_torch_hook, unfrozen)
from ..utils._sklearn_torch import check_convertible, is_convertible
from ..utils._torch import is_skorch_net, resolve_device
from ._skorch import default_net, fit_net, size_net


def needs_fit(estimator):
    """Whether ``fit`` trains a clone of ``estimator`` rather than using it as is.

    A :class:`~sklearn.frozen.FrozenEstimator` or a ``torch.nn.Module`` is used as
    is; anything else (None for the default net, a skorch net, a scikit-learn
    estimator) is cloned and fitted.

    Parameters
    ----------
    estimator : object or None
        The ``estimator`` parameter as the user gave it.

    Returns
    -------
    bool
    """
    return not isinstance(estimator, (FrozenEstimator, torch.nn.Module))


def _convertible_error(estimator):
    """Why a scikit-learn estimator cannot be re-expressed in torch ("" if it can)."""
    if not isinstance(estimator, BaseEstimator):
        return ""
    try:
        check_convertible(estimator)
    except TypeError as exc:
        return str(exc)
    return ""


def fit_victim(estimator, X, y, y_index, *, n_classes, device, seed):
    """The fitted victim: ``estimator`` itself, or a fitted clone of it.

    Parameters
    ----------
    estimator : object or None
        The ``estimator`` parameter: None (the default net), an unfitted skorch net,
        a scikit-learn estimator skrobust can re-express in torch, an estimator with
        ``__skrobust_torch_model__``, or a frozen estimator / torch module (used as is).
    X : ndarray of shape (n_samples, n_features)
        Training data.
    y : ndarray of shape (n_samples,)
        Labels, for scikit-learn estimators.
    y_index : ndarray of shape (n_samples,)
        ``y`` as indices into the sorted classes, for skorch nets.
    n_classes : int
        Number of classes; sizes the default net.
    device : str or torch.device
        Device of a skorch net trained here.
    seed : int
        Seed of the net's initialisation and batch shuffling.

    Returns
    -------
    estimator_ : object
        The fitted victim.

    Raises
    ------
    TypeError
        If ``estimator`` cannot be attacked with gradients (the message says why).
    """
    if not needs_fit(estimator):
        return estimator
    if estimator is None:
        net = default_net()
    elif is_skorch_net(estimator):
        net = clone(estimator)
    elif has_torch_hook(estimator) or is_convertible(estimator):
        return clone(estimator).fit(X, y)
    else:
        detail = _convertible_error(estimator)
        raise TypeError(
            f"estimator={type(estimator).__name__} cannot be attacked with gradients: "
            f"it must be {SUPPORTED_VICTIMS}." + (f" Here: {detail}" if detail else "")
        )
    net.set_params(device=str(resolve_device(device)))
    size_net(net, X.shape[1], n_classes)
    return fit_net(net, X, y_index, seed)


def victim_torch_model(estimator, estimator_, classes):
    """The :class:`~skrobust.utils.TorchModel` of a victim returned by :func:`fit_victim`.

    Parameters
    ----------
    estimator : object or None
        The ``estimator`` parameter as the user gave it.
    estimator_ : object
        What :func:`fit_victim` returned for it.
    classes : ndarray of shape (n_classes,) or None
        The labels ``y_index`` indexes into; used only when a skorch net was trained
        here on those indices (then the model's columns map to these labels).

    Returns
    -------
    TorchModel
    """
    model = as_torch_model(estimator_)
    if needs_fit(estimator) and is_skorch_net(estimator_):
        model = TorchModel(model.module, model.device, classes)
    return model


def model_name(estimator):
    """A short name of a victim: its torch module's class when it has one.

    Unwraps :class:`~sklearn.frozen.FrozenEstimator` and a fitted ``estimator_``.

    Parameters
    ----------
    estimator : object
        The victim.

    Returns
    -------
    str
    """
    estimator = unfrozen(estimator)
    estimator = getattr(estimator, "estimator_", estimator)
    return type(getattr(estimator, "module_", estimator)).__name__
