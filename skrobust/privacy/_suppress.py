"""Suppress-privacy training: magnitude masking of weights on a cubic schedule.

The numerics are plain tensor functions (:func:`cubic_sparsity`,
:func:`suppress_schedule`, :func:`magnitude_mask`); the masking runs in a private
skorch callback added to a clone of the user's net; :class:`SuppressPrivacyClassifier`
is the scikit-learn shell around it.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import Callback

from ..models._skorch import default_net, fit_net, is_skorch_net, size_net
from ..utils._differentiable import TorchModel, as_torch_model
from ..utils._torch import make_generator, resolve_device, torch_seed

FLOAT_DTYPES = [np.float64, np.float32]

# MindArmour: noise is added to kept weights larger than this share of the layer's
# largest magnitude, the resulting bound clipped to [NOISE_FLOOR, NOISE_CEIL].
NOISE_SHARE, NOISE_FLOOR, NOISE_CEIL = 0.75, 0.1, 0.5


@dataclass(frozen=True)
class MaskLayer:
    """Which parameter to suppress and how (MindArmour's ``MaskLayerDes``).

    Parameters
    ----------
    name : str
        A parameter name as in ``module.named_parameters()`` (``"fc1.weight"``), or
        a layer name (``"fc1"``), which means that layer's ``weight``.
    min_kept : int, default=0
        Minimum number of weights never suppressed in this parameter.
    lower_clip : float or None, default=None
        If set, kept weights whose magnitude is below it are pushed to
        ``+-lower_clip`` at each suppress operation (MindArmour uses 0.005).
    upper_bound : float or None, default=None
        If set, kept weights are clipped to ``[-upper_bound, upper_bound]`` at each
        suppress operation (MindArmour's default is 1.2).
    noise : float or None, default=None
        If set, uniform noise in ``[-noise, noise]`` is added at each suppress
        operation to the kept weights larger than ``0.75 * max|w|`` (that bound
        clipped to [0.1, 0.5]); MindArmour uses 0.01.

    References
    ----------
    MindArmour, ``mindarmour.privacy.sup_privacy.MaskLayerDes``, Huawei, 2021.

    Examples
    --------
    >>> from skrobust.privacy import MaskLayer
    >>> MaskLayer("conv2.weight", min_kept=150, lower_clip=0.005)
    MaskLayer(name='conv2.weight', min_kept=150, lower_clip=0.005, upper_bound=None, noise=None)
    """

    name: str
    min_kept: int = 0
    lower_clip: float | None = None
    upper_bound: float | None = None
    noise: float | None = None


def _as_mask_layer(spec, index):
    if isinstance(spec, MaskLayer):
        layer = spec
    elif isinstance(spec, str):
        layer = MaskLayer(spec)
    elif isinstance(spec, dict):
        try:
            layer = MaskLayer(**spec)
        except TypeError as exc:
            raise ValueError(
                f"mask_layers[{index}]={spec!r} is not a valid layer description ({exc}); "
                "use keys name, min_kept, lower_clip, upper_bound and noise."
            ) from None
    else:
        raise TypeError(
            f"mask_layers[{index}] is a {type(spec).__name__}; use a MaskLayer, a dict "
            "of MaskLayer fields or a parameter name."
        )
    if not isinstance(layer.name, str) or not layer.name:
        raise ValueError(f"mask_layers[{index}] has name={layer.name!r}; use a parameter name.")
    if (not isinstance(layer.min_kept, numbers.Integral) or isinstance(layer.min_kept, bool)
            or layer.min_kept < 0):
        raise ValueError(
            f"mask_layers[{index}] ({layer.name!r}) has min_kept={layer.min_kept!r}; "
            "use an integer >= 0."
        )
    for field in ("lower_clip", "upper_bound", "noise"):
        value = getattr(layer, field)
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)
                                  or not np.isfinite(value) or value <= 0):
            raise ValueError(
                f"mask_layers[{index}] ({layer.name!r}) has {field}={value!r}; use a "
                "positive float or None."
            )
    if (layer.lower_clip is not None and layer.upper_bound is not None
            and layer.lower_clip > layer.upper_bound):
        raise ValueError(
            f"mask_layers[{index}] ({layer.name!r}) has lower_clip={layer.lower_clip} > "
            f"upper_bound={layer.upper_bound}."
        )
    return layer


def check_mask_layers(mask_layers):
    """Validate ``mask_layers`` into a tuple of :class:`MaskLayer` (None stays None)."""
    if mask_layers is None:
        return None
    if isinstance(mask_layers, (str, dict, MaskLayer)):
        mask_layers = [mask_layers]
    layers = tuple(_as_mask_layer(spec, i) for i, spec in enumerate(mask_layers))
    if not layers:
        raise ValueError(
            "mask_layers is empty: no weight would be suppressed. Give at least one "
            "parameter name, or mask_layers=None to mask every weight matrix/kernel."
        )
    names = [layer.name for layer in layers]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"mask_layers names {duplicated} more than once; name each once.")
    return layers


def resolve_mask_layers(module, layers):
    """Map :class:`MaskLayer` descriptions to ``{parameter name: MaskLayer}`` of ``module``.

    ``layers=None`` selects every parameter with 2 or more dimensions (weight
    matrices and convolution kernels, not biases).
    """
    params = dict(module.named_parameters())
    if layers is None:
        resolved = {name: MaskLayer(name) for name, p in params.items() if p.dim() >= 2}
        if not resolved:
            raise ValueError(
                "the module has no weight matrix or kernel to mask; give mask_layers."
            )
        return resolved
    resolved = {}
    for layer in layers:
        name = layer.name if layer.name in params else f"{layer.name}.weight"
        if name not in params:
            raise ValueError(
                f"mask_layers names {layer.name!r}, which is neither a parameter nor a "
                f"layer with a weight of the module; its parameters are {list(params)}."
            )
        if name in resolved:
            raise ValueError(f"mask_layers names the parameter {name!r} twice.")
        resolved[name] = layer
    return resolved


def cubic_sparsity(t, sparse_start, sparse_end):
    """MindArmour's cubic ramp: ``sparse_end + (sparse_start - sparse_end) * (1 - t)**3``.

    Parameters
    ----------
    t : float or ndarray
        Progress in [0, 1] between the first and the last suppress operation.
    sparse_start, sparse_end : float
        Sparsity at ``t=0`` and at ``t=1``.

    Returns
    -------
    float or ndarray
        Target fraction of suppressed weights.

    Examples
    --------
    >>> from skrobust.privacy._suppress import cubic_sparsity
    >>> round(float(cubic_sparsity(0.5, 0.0, 0.8)), 6)
    0.7
    """
    t = np.clip(t, 0.0, 1.0)
    return sparse_end + (sparse_start - sparse_end) * (1.0 - t) ** 3


def suppress_schedule(batches_per_epoch, start_epoch, end_epoch, mask_times,
                      sparse_start, sparse_end):
    """When the suppress operations run and the sparsity each one targets.

    The window holds every batch of epochs ``start_epoch`` to ``end_epoch`` (1-based,
    inclusive). ``min(mask_times, n_window_batches)`` operations are spread evenly
    over it, the first on its first batch and the last on its last batch; the k-th
    of n targets ``cubic_sparsity(k / (n - 1))`` (a single one targets ``sparse_end``).

    Returns
    -------
    steps : ndarray of int
        Global 0-based batch index after whose optimiser step each operation runs.
    targets : ndarray of float
        Target sparsity of each operation.
    """
    first = (start_epoch - 1) * batches_per_epoch
    n_window = (end_epoch - start_epoch + 1) * batches_per_epoch
    n_ops = int(min(mask_times, n_window))
    if n_ops == 1:
        return np.array([first + n_window - 1]), np.array([float(sparse_end)])
    offsets = np.round(np.linspace(0, n_window - 1, n_ops)).astype(np.int64)
    targets = cubic_sparsity(np.arange(n_ops) / (n_ops - 1), sparse_start, sparse_end)
    return first + offsets, targets


def magnitude_mask(weight, sparsity, *, min_kept=0, previous=None):
    """Boolean mask (True = kept) suppressing the smallest-magnitude weights.

    ``floor(sparsity * n)`` weights are suppressed, at most ``n - min_kept``, at
    least those already suppressed in ``previous`` (masks only grow).

    Examples
    --------
    >>> import torch
    >>> from skrobust.privacy._suppress import magnitude_mask
    >>> magnitude_mask(torch.tensor([0.3, -0.1, 0.2, 0.05]), 0.5).tolist()
    [True, False, True, False]
    """
    n = weight.numel()
    n_suppressed = min(int(np.floor(sparsity * n + 1e-9)), max(n - min_kept, 0))
    score = weight.detach().abs().flatten().clone()
    if previous is not None:
        n_suppressed = max(n_suppressed, int((~previous).sum()))
        score[~previous.flatten()] = -1.0  # already suppressed: always first
    keep = torch.ones(n, dtype=torch.bool, device=weight.device)
    if n_suppressed > 0:
        # k-th smallest magnitude (much cheaper than a sort); ties at it go by index
        threshold = torch.kthvalue(score, n_suppressed).values
        below = score < threshold
        ties = torch.nonzero(score == threshold).flatten()
        keep[below] = False
        keep[ties[:n_suppressed - int(below.sum())]] = False
    return keep.reshape(weight.shape)


class _SuppressMasker(Callback):
    """skorch callback that suppresses weights on the cubic schedule (private).

    Gradients of suppressed weights are zeroed before each optimiser step and the
    mask is re-applied after it, so momentum or weight decay cannot revive them.
    """

    def __init__(self, start_epoch=3, end_epoch=10, mask_times=1000, sparse_start=0.0,
                 sparse_end=0.95, mask_layers=None, seed=0, verbose=0):
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.mask_times = mask_times
        self.sparse_start = sparse_start
        self.sparse_end = sparse_end
        self.mask_layers = mask_layers
        self.seed = seed
        self.verbose = verbose

    def initialize(self):
        self.masks_ = {}
        self.factors_ = {}
        self.records_ = []
        self.steps_ = None
        self.batch_ = 0
        self.epoch_ = 0
        self.generator_ = None
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # state is reset by initialize() (net.initialize, called by fit); partial_fit
        # continues the schedule and keeps the masks
        self.layers_ = resolve_mask_layers(net.module_, check_mask_layers(self.mask_layers))
        self.params_ = {name: p for name, p in net.module_.named_parameters()
                        if name in self.layers_}
        if getattr(self, "generator_", None) is None:
            device = next(iter(self.params_.values())).device
            self.generator_ = make_generator(self.seed, device)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.epoch_ += 1
        if self.steps_ is None:
            self.batches_per_epoch_ = max(len(net.get_iterator(dataset_train, training=True)), 1)
            self.steps_, self.targets_ = suppress_schedule(
                self.batches_per_epoch_, self.start_epoch, self.end_epoch,
                self.mask_times, self.sparse_start, self.sparse_end)
            self.next_op_ = 0

    def on_grad_computed(self, net, named_parameters, training=None, **kwargs):
        pairs = [(self.params_[name].grad, factor) for name, factor in self.factors_.items()
                 if self.params_[name].grad is not None]
        if pairs:
            torch._foreach_mul_(*map(list, zip(*pairs)))

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        with torch.no_grad():
            if self.factors_:
                torch._foreach_mul_([self.params_[name] for name in self.factors_],
                                    list(self.factors_.values()))
            while self.next_op_ < len(self.steps_) and self.steps_[self.next_op_] <= self.batch_:
                self._suppress(net, float(self.targets_[self.next_op_]))
                self.next_op_ += 1
        self.batch_ += 1

    def on_epoch_end(self, net, **kwargs):
        if self.verbose and self.start_epoch <= self.epoch_ <= self.end_epoch:
            print(f"suppress-privacy: epoch {self.epoch_}, sparsity "
                  f"{self.sparsity()[1]:.4f}")

    def _suppress(self, net, target):
        for name, param in self.params_.items():
            layer = self.layers_[name]
            keep = magnitude_mask(param, target, min_kept=layer.min_kept,
                                  previous=self.masks_.get(name))
            self.masks_[name] = keep
            self.factors_[name] = keep.to(param.dtype)  # 0/1 multipliers
            self._adjust_kept(param, keep, layer)
            param.mul_(keep)
            self._clear_optimizer_state(net, param, keep)
        _, overall = self.sparsity()
        self.records_.append((self.epoch_, self.batch_, target, overall))

    def _adjust_kept(self, param, keep, layer):
        """MindArmour's one-off changes of the kept weights at a suppress operation."""
        w = param.data
        if layer.lower_clip is not None:
            small = keep & (w.abs() < layer.lower_clip)
            floor = torch.where(w >= 0, layer.lower_clip, -layer.lower_clip).to(w.dtype)
            w.copy_(torch.where(small, floor, w))
        if layer.upper_bound is not None:
            w.clamp_(-layer.upper_bound, layer.upper_bound)
        if layer.noise is not None and keep.any():
            largest = float(w.abs().max())  # suppressed weights are 0: the kept maximum
            bound = min(NOISE_CEIL, max(NOISE_FLOOR, NOISE_SHARE * largest))
            large = keep & (w.abs() > bound)
            noise = torch.rand(w.shape, generator=self.generator_, device=w.device,
                               dtype=w.dtype) * (2 * layer.noise) - layer.noise
            w.add_(noise * large)

    @staticmethod
    def _clear_optimizer_state(net, param, keep):
        """Zero the optimiser state (momentum, Adam moments) of suppressed weights."""
        for name in getattr(net, "_optimizers", ["optimizer"]):
            optimizer = getattr(net, name + "_", None)
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(keep)

    def sparsity(self):
        """Per-parameter and overall fraction of exactly-zero masked weights."""
        per_layer, zeros, total = {}, 0, 0
        for name, param in self.params_.items():
            n_zero = int((param.detach() == 0).sum())
            per_layer[name] = n_zero / param.numel()
            zeros += n_zero
            total += param.numel()
        return per_layer, zeros / max(total, 1)


def _net_prefix(estimator):
    """``set_params`` prefix of the skorch net inside ``estimator`` (meta-estimators
    are followed through their ``estimator`` parameter)."""
    from sklearn.frozen import FrozenEstimator

    prefix = ""
    while not is_skorch_net(estimator):
        if isinstance(estimator, FrozenEstimator):
            raise TypeError(
                "estimator is a FrozenEstimator, but suppress-privacy training trains the "
                "net: pass the unfitted skorch net (or meta-estimator) instead."
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


def _fitted_net(estimator):
    """The fitted skorch net inside a fitted (meta-)estimator."""
    while not is_skorch_net(estimator):
        estimator = estimator.estimator_
    return estimator


class SuppressPrivacyClassifier(ClassifierMixin, BaseEstimator):
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
    skorch callback appended to the clone's ``callbacks``.

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

    def fit(self, X, y):
        """Train a clone of ``estimator`` with suppress operations.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}); a classifier needs at least 2 classes."
            )
        estimator = default_net() if self.estimator is None else clone(self.estimator)
        prefix = _net_prefix(estimator)
        params = estimator.get_params()
        self._check_params(params[prefix + "max_epochs"])
        self.seed_ = check_random_state(self.random_state).randint(2**31 - 1)
        masker = _SuppressMasker(
            start_epoch=self.start_epoch, end_epoch=self.end_epoch,
            mask_times=self.mask_times, sparse_start=self.sparse_start,
            sparse_end=self.sparse_end, mask_layers=check_mask_layers(self.mask_layers),
            seed=self.seed_, verbose=self.verbose)
        callbacks = params.get(prefix + "callbacks")
        callbacks = [] if callbacks in (None, "disable") else list(callbacks)
        # the device goes to the net and to every meta-estimator around it
        levels = [prefix[:i] for i in range(0, len(prefix) + 1, len("estimator__"))]
        device = {level + "device": str(resolve_device(self.device)) for level in levels
                  if level + "device" in params}
        estimator.set_params(**{prefix + "callbacks": callbacks + [masker]}, **device)
        if prefix:
            with torch_seed(self.seed_):
                estimator.fit(np.asarray(X, dtype=np.float32), y_index.astype(np.int64))
        else:
            size_net(estimator, X.shape[1], len(self.classes_))
            fit_net(estimator, X, y_index, self.seed_)
        self.estimator_ = estimator
        net = _fitted_net(estimator)
        masker = next(cb for _, cb in net.callbacks_ if isinstance(cb, _SuppressMasker))
        self.masks_ = {name: keep.cpu().numpy() for name, keep in masker.masks_.items()}
        self.layer_sparsity_, self.sparsity_ = masker.sparsity()
        records = np.array(masker.records_, dtype=np.float64).reshape(-1, 4)
        self.schedule_ = Bunch(
            epoch=records[:, 0].astype(np.int64), batch=records[:, 1].astype(np.int64),
            target_sparsity=records[:, 2], sparsity=records[:, 3],
            batches_per_epoch=int(getattr(masker, "batches_per_epoch_", 0)))
        return self

    def predict_proba(self, X):
        """Class probabilities of the trained net.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns ordered as ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return np.asarray(self.estimator_.predict_proba(X.astype(np.float32)))

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def __skrobust_torch_model__(self):
        check_is_fitted(self)
        model = as_torch_model(self.estimator_)
        return TorchModel(model.module, model.device, self.classes_)
