"""Helpers shared by the privacy attacks."""

import functools

import numpy as np
import torch
from sklearn.utils.validation import check_array

from ..utils._differentiable import as_torch_model


def predict_proba_with_classes(estimator, X, *, batch_size=256):
    """Class probabilities of a fitted model and the label of each column.

    Uses ``estimator.predict_proba`` and ``estimator.classes_`` when there is a
    ``predict_proba``; otherwise the softmax of the logits of the model's torch
    module (a torch module, a fitted skorch net, a frozen estimator).

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
    classes : ndarray of shape (n_classes,) or None
        None when the columns are the class indices.
    """
    X = check_array(X, dtype=[np.float32, np.float64])
    if hasattr(estimator, "predict_proba") and not isinstance(estimator, torch.nn.Module):
        proba = np.asarray(estimator.predict_proba(X.astype(np.float32)), dtype=np.float64)
        classes = getattr(estimator, "classes_", None)
        return proba, None if classes is None else np.asarray(classes)
    model = as_torch_model(estimator)
    proba = model.predict_scores(X, batch_size=batch_size,
                                 transform=functools.partial(torch.softmax, dim=1),
                                 dtype=np.float64)
    return proba, model.classes
