"""Prediction of the classifiers that train a net here on label indices.

:class:`~skrobust.defenses.AdversarialTrainer` and
:class:`~skrobust.privacy.SuppressPrivacyClassifier` fit a clone of a skorch net (or of
a meta-estimator around one) as ``estimator_`` on indices into ``classes_``. What they
predict, and what attacks see of them, is written once in
:class:`TrainedNetClassifierMixin`.
"""

from dataclasses import replace
from functools import partial

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils._differentiable import as_torch_model
from ..utils._docstrings import fill_doc
from ..utils._torch import is_skorch_net

FLOAT_DTYPES = [np.float64, np.float32]


def trained_net(estimator):
    """The fitted skorch net inside a fitted (meta-)estimator.

    Meta-estimators are followed through their ``estimator_``.

    Parameters
    ----------
    estimator : object
        A fitted skorch net, or a fitted meta-estimator whose ``estimator_`` (at
        some depth) is one.

    Returns
    -------
    net : skorch NeuralNet
    """
    while not is_skorch_net(estimator):
        estimator = estimator.estimator_
    return estimator


def _inference_batch_size(net, n_samples):
    """Rows per forward pass as the net's own ``forward`` would take them.

    skorch's validation iterator: ``iterator_valid__batch_size`` if set, else
    ``batch_size``; -1 (or None) means all rows in one batch.
    """
    size = getattr(net, "iterator_valid__batch_size", net.batch_size)
    return max(int(n_samples), 1) if size is None or size == -1 else int(size)


class TrainedNetClassifierMixin:
    """``predict_proba``, ``predict`` and the torch-model hook of a net trained here.

    For classifiers that fit a clone of a net (or of a meta-estimator around one) as
    ``estimator_`` on indices into ``classes_`` and whose module returns logits. The
    scores come from the same :class:`~skrobust.utils.TorchModel` that attacks and
    scorers differentiate (``__skrobust_torch_model__``), run in eval mode without
    gradients in the net's own batch size, so a prediction and an attack always see
    the same model. Goes left of ``ClassifierMixin``.
    """

    def __skrobust_torch_model__(self):
        """The trained module, its score columns labelled by ``classes_``.

        ``estimator_`` is always trained here on indices into ``classes_`` (a frozen
        net is fine-tuned on a copy), so its columns are ``classes_``.

        Returns
        -------
        TorchModel
        """
        check_is_fitted(self)
        return replace(as_torch_model(self.estimator_), classes=self.classes_)

    def _net_outputs(self, X, transform, dtype=None):
        """The trained module's outputs on ``X``, mapped by ``transform``, as numpy.

        ``dtype="X"`` returns them in X's float dtype (after validation).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        batch_size = _inference_batch_size(trained_net(self.estimator_), len(X))
        return self.__skrobust_torch_model__().predict_scores(
            X, batch_size=batch_size, transform=transform,
            dtype=X.dtype if dtype == "X" else dtype)

    @fill_doc
    def predict_proba(self, X):
        """Class probabilities: the softmax of the net's logits.

        {parameters_X}

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities of ``classes_`` (columns in that order), in X's float dtype.
        """
        return self._net_outputs(X, partial(torch.softmax, dim=1), dtype="X")

    @fill_doc
    def predict(self, X):
        """Predicted class labels: the class of the largest logit.

        {parameters_X}

        {returns_y_pred}
            Labels from ``classes_``.
        """
        index = self._net_outputs(X, partial(torch.argmax, dim=1))
        return self.classes_[index]
