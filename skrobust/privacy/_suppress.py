"""Suppress-privacy training: magnitude masking of weights on a cubic schedule.

:class:`SuppressPrivacyClassifier` is the scikit-learn shell: it validates, clones
the user's net, appends the private masking callback (:mod:`._masker`) and trains.
The numerics live in :mod:`._schedule` (when and how much) and :mod:`._masks`
(which weights).
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ..models._skorch import default_net, fit_net, is_skorch_net, size_net
from ..models._trained_net import TrainedNetClassifierMixin, trained_net
from ..models._victim import needs_fit
from ..utils._docstrings import fill_doc
from ..utils._torch import resolve_device
from ._masker import _SuppressMasker
from ._masks import check_mask_layers

FLOAT_DTYPES = [np.float64, np.float32]
# the parameters of the cubic schedule, handed to the masker as one dict
SCHEDULE_PARAMS = ("start_epoch", "end_epoch", "mask_times", "sparse_start", "sparse_end")


def _net_prefix(estimator):
    """``set_params`` prefix of the skorch net inside ``estimator`` (meta-estimators
    are followed through their ``estimator`` parameter)."""
    prefix = ""
    while not is_skorch_net(estimator):
        if not needs_fit(estimator):
            raise TypeError(
                f"estimator is a {type(estimator).__name__}, which is used as is, but "
                "suppress-privacy training trains the net: pass the unfitted skorch net "
                "(or meta-estimator) instead."
            )
        inner = getattr(estimator, "estimator", None)
        if inner is None:
            raise TypeError(
                f"estimator={type(estimator).__name__} holds no skorch net: give a skorch "
                "NeuralNetClassifier, or a skrobust meta-estimator wrapping one (e.g. "
                "AdversarialTrainer)."
            )
        estimator, prefix = inner, prefix + "estimator__"
    return prefix


class SuppressPrivacyClassifier(TrainedNetClassifierMixin, ClassifierMixin, BaseEstimator):
    """Suppress-privacy training of a skorch classifier (MindArmour's Suppress-Privacy).

    During training the smallest-magnitude weights of the masked parameters are
    set to zero in steps, following a cubic ramp from ``sparse_start`` to
    ``sparse_end``, so that only a few percent of the weights remain; the sparse
    model leaks less of its training images to inversion attacks
    (:class:`ImageInversionAttack`).

    ``min(mask_times, n)`` suppress operations are spread evenly over the ``n``
    training batches of epochs ``start_epoch`` to ``end_epoch`` (1-based,
    inclusive), the first on the first batch and the last on the last batch. The
    defaults follow the tutorial for 60,000 samples (1,875 batches of 32 per
    epoch: one operation every 15 batches); with fewer batches the number of
    operations is capped at the number of batches in the window, one per batch.
    The operation k of n (counted from 0) suppresses, in every masked parameter,
    the smallest-magnitude weights up to the sparsity
    ``sparse_end + (sparse_start - sparse_end) * (1 - k / (n - 1))**3``, so the last
    one reaches ``sparse_end``. Suppressed weights stay exactly zero until the end
    of training: their gradients are zeroed before every optimiser step, the
    mask is re-applied after it and their optimiser state (momentum, Adam moments)
    is cleared.

    The net is cloned and trained on label indices; the masking runs in a private
    skorch callback appended to the clone's ``callbacks``. skorch's default
    ``DataLoader`` iterators become :func:`~skrobust.models.array_batches` in the
    clone (the same batches, faster).

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier or meta-estimator, default=None
        Unfitted classifier returning logits, trained with a cross-entropy loss
        (``criterion=torch.nn.CrossEntropyLoss``). A skrobust meta-estimator that
        wraps a skorch net through an ``estimator`` parameter (e.g.
        ``AdversarialTrainer``) works too. If None, a small MLP from
        :mod:`skrobust.models`, sized in ``fit``. Its parameters are reachable as
        ``estimator__<name>``.
    start_epoch : int, default=3
        First epoch (1-based) with suppress operations, ``0 < start_epoch``.
    end_epoch : int, default=10
        Last epoch with suppress operations, ``start_epoch <= end_epoch <= max_epochs``
        of the net. Later epochs train the remaining weights.
    mask_times : int, default=1000
        Number of suppress operations, capped at the number of batches in the
        window.
    sparse_start : float, default=0.0
        Sparsity targeted by the first operation, ``0 <= sparse_start < sparse_end``.
    sparse_end : float, default=0.95
        Sparsity reached by the last operation, ``sparse_end < 1``.
    mask_layers : list of MaskLayer, dict or str, default=None
        Parameters to suppress, with per-parameter settings (see :class:`MaskLayer`;
        a dict holds its fields, a string is a parameter name with the default
        settings). If None, every parameter with 2 or more dimensions (weight
        matrices and convolution kernels, not biases) is masked.
    device : str or torch.device, default="cpu"
        Device on which the net is trained.
    random_state : int, RandomState instance or None, default=None
        Seeds the net's initialisation and shuffling and the optional weight noise.
    verbose : int, default=0
        Print the sparsity at the end of each epoch of the window when > 0 (the
        net's own output is controlled by ``estimator__verbose``).

    Attributes
    ----------
    estimator_ : skorch NeuralNetClassifier or meta-estimator
        The trained clone (trained on indices into ``classes_``).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    masks_ : dict of str to ndarray of bool
        Final mask of each masked parameter, True where the weight is kept.
    layer_sparsity_ : dict of str to float
        Fraction of exactly-zero weights in each masked parameter after training.
    sparsity_ : float
        Fraction of exactly-zero weights over all masked parameters.
    schedule_ : Bunch
        The suppress operations run: arrays ``epoch`` (1-based), ``batch`` (global
        0-based batch index), ``target_sparsity`` and ``sparsity`` (overall,
        after the operation); ``batches_per_epoch``.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.

    See Also
    --------
    ImageInversionAttack : Measures how much a model's features leak its inputs.
    membership_inference : Loss- and confidence-threshold membership inference.

    Notes
    -----
    Differences from MindArmour: masks only grow (a suppressed weight is never
    revived), the first suppress operation is not skipped when the first layer's
    weights are small, and the schedule's progress runs over the operations
    actually performed so that the last one reaches ``sparse_end`` exactly.

    References
    ----------
    MindArmour, "Suppress Privacy" tutorial and ``mindarmour.privacy.sup_privacy``
    (``SuppressCtrl``, ``MaskLayerDes``), Huawei, 2021.

    M. Zhu and S. Gupta, "To prune, or not to prune: exploring the efficacy of
    pruning for model compression", ICLR Workshop 2018 (the cubic schedule).

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import make_classification
    >>> from skorch import NeuralNetClassifier
    >>> from skrobust.models import MLP
    >>> from skrobust.privacy import SuppressPrivacyClassifier
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> net = NeuralNetClassifier(MLP, module__hidden_units=(32,), max_epochs=4,
    ...                           criterion=torch.nn.CrossEntropyLoss, lr=0.1,
    ...                           train_split=None, verbose=0)
    >>> clf = SuppressPrivacyClassifier(net, start_epoch=1, end_epoch=3,
    ...                                 sparse_end=0.9, random_state=0).fit(X, y)
    >>> round(clf.sparsity_, 2)
    0.9
    >>> clf.score(X, y) > 0.8
    True
    """

    def __init__(self, estimator=None, *, start_epoch=3, end_epoch=10, mask_times=1000,
                 sparse_start=0.0, sparse_end=0.95, mask_layers=None, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.mask_times = mask_times
        self.sparse_start = sparse_start
        self.sparse_end = sparse_end
        self.mask_layers = mask_layers
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self, max_epochs):
        for name in ("start_epoch", "end_epoch", "mask_times"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if not self.start_epoch <= self.end_epoch <= max_epochs:
            raise ValueError(
                f"The schedule needs 0 < start_epoch <= end_epoch <= max_epochs, got "
                f"start_epoch={self.start_epoch}, end_epoch={self.end_epoch} and the net's "
                f"max_epochs={max_epochs}; lower end_epoch or raise estimator__max_epochs."
            )
        for name in ("sparse_start", "sparse_end"):
            value = getattr(self, name)
            if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                    or not np.isfinite(value)):
                raise ValueError(f"{name}={value!r} must be a float in [0, 1).")
        if not 0.0 <= self.sparse_start < self.sparse_end < 1.0:
            raise ValueError(
                f"The schedule needs 0 <= sparse_start < sparse_end < 1, got "
                f"sparse_start={self.sparse_start} and sparse_end={self.sparse_end}."
            )
        check_mask_layers(self.mask_layers)
        resolve_device(self.device)

    @fill_doc
    def fit(self, X, y):
        """Train a clone of ``estimator`` with suppress operations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        {y_fit}

        {returns_classifier}
        """
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}); a classifier needs at least 2 classes."
            )
        prefix = "" if self.estimator is None else _net_prefix(self.estimator)
        estimator = default_net() if self.estimator is None else clone(self.estimator)
        params = estimator.get_params()
        self._check_params(params[prefix + "max_epochs"])
        self.seed_ = check_random_state(self.random_state).randint(2**31 - 1)
        masker = _SuppressMasker({name: getattr(self, name) for name in SCHEDULE_PARAMS},
                                 mask_layers=check_mask_layers(self.mask_layers),
                                 seed=self.seed_, verbose=self.verbose)
        callbacks = params.get(prefix + "callbacks")
        callbacks = [] if callbacks in (None, "disable") else list(callbacks)
        # the device goes to the net and to every meta-estimator around it
        levels = [prefix[:i] for i in range(0, len(prefix) + 1, len("estimator__"))]
        device = {level + "device": str(resolve_device(self.device)) for level in levels
                  if level + "device" in params}
        estimator.set_params(**{prefix + "callbacks": callbacks + [masker]}, **device)
        if not prefix:
            size_net(estimator, X.shape[1], len(self.classes_))
        self.estimator_ = fit_net(estimator, X, y_index, self.seed_)
        net = trained_net(estimator)
        masker = next(cb for _, cb in net.callbacks_ if isinstance(cb, _SuppressMasker))
        self.masks_ = {name: keep.cpu().numpy() for name, keep in masker.masks_.items()}
        self.layer_sparsity_, self.sparsity_ = masker.sparsity()
        records = np.array(masker.records_, dtype=np.float64).reshape(-1, 4)
        self.schedule_ = Bunch(
            epoch=records[:, 0].astype(np.int64), batch=records[:, 1].astype(np.int64),
            target_sparsity=records[:, 2], sparsity=records[:, 3],
            batches_per_epoch=int(getattr(masker, "batches_per_epoch_", 0)))
        return self
