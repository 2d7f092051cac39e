"""skorch glue shared by every estimator that trains a net."""

import inspect

import numpy as np
import torch
from torch import nn

from ..utils._torch import is_skorch_net, torch_seed
from ._mlp import MLP

__all__ = ["default_net", "fit_net", "is_skorch_net", "size_net"]


def default_net(**params):
    """The small MLP classifier used when an estimator is given ``estimator=None``.

    Sized in fit by :func:`size_net`; logits with cross-entropy, Adam, no internal
    validation split, silent.
    """
    from skorch import NeuralNetClassifier

    defaults = dict(
        module=MLP,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-2,
        max_epochs=20,
        batch_size=128,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
    )
    defaults.update(params)
    return NeuralNetClassifier(**defaults)


def size_net(net, n_features, n_classes):
    """Fill ``module__n_features`` / ``module__n_classes`` when the module class takes
    them and the user did not set them. Modifies ``net`` (a clone) in place."""
    module = net.module
    if not isinstance(module, type):
        return net
    accepted = inspect.signature(module).parameters
    given = net.get_params(deep=False)
    updates = {
        f"module__{name}": value
        for name, value in (("n_features", n_features), ("n_classes", n_classes))
        if name in accepted and f"module__{name}" not in given
    }
    if updates:
        net.set_params(**updates)
    return net


def fit_net(net, X, y_index, seed):
    """Fit a skorch net on float32 X and int64 class indices, reproducibly.

    Module initialisation and batch shuffling draw from torch's global generator,
    which is seeded with ``seed`` inside and restored afterwards.
    """
    with torch_seed(seed):
        return net.fit(np.asarray(X, dtype=np.float32), np.asarray(y_index, dtype=np.int64))
