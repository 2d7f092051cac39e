"""Adversarial training of a skorch classifier as a scikit-learn meta-estimator."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_scalar, validate_data

from ..attacks import FGSMTransformer, PGDTransformer
from ..attacks._base import BaseAttack, outside_bounds
from ..models._skorch import (default_net, fit_net, is_skorch_net, size_net,
                              use_array_batches)
from ..models._trained_net import TrainedNetClassifierMixin
from ..utils._differentiable import unfrozen
from ..utils._torch import check_bfloat16_autocast, resolve_device, torch_seed
from ..utils._validation import refuse_init_params
from ._adversarial_net import Adversary, RobustCheckpoint, adversarial_class, bound_tensor

FLOAT_DTYPES = [np.float64, np.float32]
# the attack names and the transformer each stands for, with its own defaults
_ATTACKS = {"fgsm": FGSMTransformer, "pgd": PGDTransformer}
# attack parameters the trainer took itself before they moved to the attack object
_REMOVED_PARAMS = ("eps", "step_size", "n_iter", "random_start", "norm", "clip_min",
                   "clip_max")
# PGD of the catastrophic-overfitting guard
_GUARD_N_ITER = 10


def _removed_params_message(class_name, given):
    """How to say the removed attack parameters ``given`` now."""
    removed = list(given)
    text = ", ".join(f"{name}={value!r}" for name, value in given.items())
    iterative = {"step_size", "n_iter", "random_start"} & set(removed)
    attack = "PGDTransformer" if iterative else "FGSMTransformer"
    return (f"{class_name} does not take {text}: the training attack's parameters "
            f"belong to the attack object. Use attack={attack}({text}) (from "
            f"skrobust.attacks), and attack__{removed[0]}=... in set_params or a "
            "GridSearchCV grid.")


class AdversarialTrainer(TrainedNetClassifierMixin, ClassifierMixin, BaseEstimator):
    """Train a skorch classifier on adversarial examples of each batch.

    At every training step, a share ``replace_ratio`` of the batch is replaced by
    adversarial examples crafted against the *current* weights, then one optimiser
    step is taken on the mixed batch. The examples are crafted with the tensor-level
    attack of the ``attack`` transformer, with the module in eval mode (batch-norm
    statistics are not updated by the attack's forward passes, each submodule's mode
    is restored for the update) and with input gradients only (the attack never
    writes to the parameters' ``.grad``).

    The published recipes are one line each:

    - Natural Adversarial Defense, NAD (MindArmour): half of each batch replaced by
      its FGSM examples,
      ``AdversarialTrainer(net, attack=FGSMTransformer(eps=0.3), replace_ratio=0.5)``.
    - Fast FGSM training with random start (Wong et al. 2020): uniform start in
      the ``eps``-ball and one step of ``1.25 * eps`` on every sample,
      ``AdversarialTrainer(net, attack=PGDTransformer(eps=0.1, step_size=0.125,
      n_iter=1, random_start=True))``.
    - PGD adversarial training (Madry et al. 2018): ``n_iter`` PGD steps from a
      random start on every sample, ``AdversarialTrainer(net,
      attack=PGDTransformer(eps=0.3, step_size=0.075, n_iter=10, random_start=True))``
      (``step_size = 2.5 * eps / n_iter``).

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier, FrozenEstimator of a fitted one, or None, \
default=None
        The net to train. It is cloned (never modified) and trained on
        :class:`~sklearn.preprocessing.LabelEncoder` indices; its module must return
        logits, so use ``criterion=torch.nn.CrossEntropyLoss``. A
        ``FrozenEstimator`` around a fitted net is fine-tuned: training starts from
        a copy of its weights (MindArmour's ``batch_defense`` after normal
        training). If None, a small MLP from :mod:`skrobust.models` sized to the data.
        Its parameters are reachable as ``estimator__lr``, ``estimator__max_epochs``, ...
        skorch's default ``DataLoader`` iterators become
        :func:`~skrobust.models.array_batches` in the clone (the same batches, faster).
    attack : {"fgsm", "pgd"}, FGSMTransformer or PGDTransformer, default="fgsm"
        The training attack, the one place where its parameters are said: ``eps``,
        ``norm``, ``clip_min``/``clip_max`` (the input domain; ``fit`` rejects
        training data outside it), and for PGD ``step_size``, ``n_iter``,
        ``random_start`` and ``n_restarts``. An attack object's parameters are
        reachable as ``attack__eps``, ``attack__n_iter``, ... in ``set_params`` and
        in a :class:`~sklearn.model_selection.GridSearchCV` grid. ``"fgsm"`` and
        ``"pgd"`` stand for ``FGSMTransformer()`` and ``PGDTransformer()`` with their
        own defaults (``eps=0.3``; PGD: 40 steps of 0.01, no random start); give an
        object to change them (a name has no nested parameters: ``attack__eps``
        needs ``attack=FGSMTransformer()`` or another object). The attack's
        ``estimator`` must be None (the trainer always attacks the net being
        trained); its ``device``, ``batch_size`` and ``random_state`` are not used
        (the trainer's apply). Targeted attacks and
        feature constraints (``immutable``, ``integer_features``, ``eps_scale``, an
        array ``eps``, ``clip_min="data"``) are not applied in training and raise a
        ``ValueError``.
    replace_ratio : float, default=1.0
        Share of each batch replaced by adversarial examples, in [0, 1] (rounded up
        to whole samples, drawn at random per batch). 0 trains on clean data.
    warm_start : bool, default=False
        If True and the trainer was fitted before (same features and classes),
        ``fit`` continues training ``estimator_`` as it is (its own ``max_epochs``,
        ``lr``, optimiser state; change them with ``estimator_.set_params``) with
        the current attack, instead of starting anew. Use it to train clean first
        (``replace_ratio=0``) and fine-tune adversarially after.
    robust_val_fraction : float or None, default=None
        Guard against catastrophic overfitting (the sudden loss of robustness of
        fast FGSM training). If set, this fraction of the training data is held out
        (the net's ``train_split`` is replaced), after every epoch the accuracy on
        PGD examples of it (10 steps of ``2.5 * eps / 10`` from a random start, in
        the attack's ``eps``, ``norm`` and bounds) is recorded as
        ``valid_robust_acc`` in ``estimator_.history``, and the weights of the best
        epoch are restored at the end of ``fit``.
    device : str or torch.device, default="cpu"
        Device on which the net is trained (forwarded to ``estimator``).
    mixed_precision : bool, default=False
        If True, the training forward passes (the crafting of the adversarial
        examples and the training step) run under :func:`torch.autocast` with
        bfloat16 on ``device``; the weights, their gradients, the loss and the
        optimiser stay in float32, and predictions, validation and the robust
        checkpoint run in float32. It pays where the device has fast bfloat16
        matrix products and convolutions (NVIDIA GPUs from Ampere on, CPUs with
        AVX512-BF16 or AMX): on a CPU with AVX512-BF16 an epoch of PGD-5 training
        takes 0.58x the float32 time for a LeNet5 and for a ResNet-18, with the
        same robust accuracy (see :ref:`adversarial-training-guide`).
    random_state : int, RandomState instance or None, default=None
        Seeds the net's initialisation, batch shuffling, random starts, replaced
        rows and the validation split. An int gives identical runs on CPU.
    verbose : int, default=0
        0: silent. 1: skorch's epoch log. 2: also skorch's progress bar.

    Attributes
    ----------
    estimator_ : skorch NeuralNetClassifier
        The trained net (an instance of a private subclass of the given net's class
        that adds the adversarial step), trained on indices into ``classes_``.
    attack_ : FGSMTransformer or PGDTransformer
        The training attack: a clone of ``attack``, or the transformer a name stands
        for (unfitted).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.
    best_epoch_ : int or None
        With ``robust_val_fraction``, the (1-based) epoch whose weights were kept;
        else None.

    See Also
    --------
    skrobust.attacks.FGSMTransformer : The single-step attack.
    skrobust.attacks.PGDTransformer : The iterative attack.
    skrobust.metrics.make_adversarial_scorer : Score robustness in a grid search.

    Notes
    -----
    Robust accuracy measured with the training attack overestimates robustness:
    evaluate with a stronger attack (PGD with many steps and restarts) against the
    trained model itself.

    Earlier development versions (0.1.0.dev0) took the attack's parameters (``eps``,
    ``step_size``, ``n_iter``, ``random_start``, ``norm``, ``clip_min``,
    ``clip_max``); they now belong to the attack object, and passing them raises a
    ``TypeError`` that says how to write them.

    References
    ----------
    I. J. Goodfellow, J. Shlens and C. Szegedy, "Explaining and harnessing
    adversarial examples", ICLR 2015.

    A. Madry, A. Makelov, L. Schmidt, D. Tsipras and A. Vladu, "Towards deep learning
    models resistant to adversarial attacks", ICLR 2018.

    E. Wong, L. Rice and J. Z. Kolter, "Fast is better than free: revisiting
    adversarial training", ICLR 2020.

    MindSpore, "MindArmour: NaturalAdversarialDefense",
    https://gitee.com/mindspore/mindarmour.

    Examples
    --------
    >>> import torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import FGSMTransformer
    >>> from skrobust.defenses import AdversarialTrainer
    >>> from skrobust.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    >>> X = minmax_scale(X)
    >>> net = NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss,
    ...                           optimizer=torch.optim.Adam, lr=0.01, max_epochs=10,
    ...                           train_split=None)
    >>> clf = AdversarialTrainer(net, attack=FGSMTransformer(eps=0.05),
    ...                          replace_ratio=0.5, random_state=0)
    >>> clf.fit(X, y).score(X, y) > 0.8
    True
    >>> clf.set_params(attack__eps=0.1, estimator__max_epochs=20).get_params()["attack__eps"]
    0.1
    """

    @refuse_init_params(_REMOVED_PARAMS, _removed_params_message)
    def __init__(self, estimator=None, *, attack="fgsm", replace_ratio=1.0,
                 warm_start=False, robust_val_fraction=None, device="cpu",
                 mixed_precision=False, random_state=None, verbose=0):
        self.estimator = estimator
        self.attack = attack
        self.replace_ratio = replace_ratio
        self.warm_start = warm_start
        self.robust_val_fraction = robust_val_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    def _resolve_attack(self):
        """The training attack as an unfitted transformer (a clone of ``attack``)."""
        attack = self.attack
        if isinstance(attack, str) and attack in _ATTACKS:
            return _ATTACKS[attack]()
        if not isinstance(attack, BaseAttack) or not hasattr(attack, "_perturb"):
            raise ValueError(
                f'attack={attack!r} is not supported; use "fgsm", "pgd", or a gradient '
                "attack transformer such as FGSMTransformer(eps=0.1) or "
                "PGDTransformer(eps=0.1, step_size=0.025, n_iter=10, random_start=True)."
            )
        if attack.estimator is not None:
            raise ValueError(
                f"attack has estimator={type(attack.estimator).__name__}, but the "
                "training attack always attacks the net being trained: leave the "
                "attack's estimator=None."
            )
        if getattr(attack, "targeted", False):
            raise ValueError("attack must be untargeted (targeted=False) for "
                             "adversarial training.")
        constrained = attack._constraint_params()
        if constrained:
            raise ValueError(
                f"attack sets feature constraints ({', '.join(constrained)}), which "
                "adversarial training does not apply: use a scalar eps and numeric "
                "clip_min/clip_max, without eps_scale, immutable or integer_features."
            )
        return clone(attack)

    def _check_params(self):
        check_scalar(self.replace_ratio, "replace_ratio", numbers.Real,
                     min_val=0.0, max_val=1.0)
        if self.robust_val_fraction is not None:
            check_scalar(self.robust_val_fraction, "robust_val_fraction", numbers.Real,
                         min_val=0.0, max_val=1.0, include_boundaries="neither")
        if not isinstance(self.mixed_precision, (bool, np.bool_)):
            raise ValueError(f"mixed_precision={self.mixed_precision!r} must be True or "
                             "False.")
        if self.mixed_precision:
            check_bfloat16_autocast(resolve_device(self.device))
        attack = self._resolve_attack()
        # the transformer's own checks (eps, norm, bounds, step_size, n_iter)
        attack.n_features_in_ = self.n_features_in_
        try:
            attack._check_params()
        finally:
            del attack.n_features_in_
        return attack

    def _check_bounds(self, X):
        """Refuse training data outside the attack's input domain."""
        below, above = outside_bounds(X, self.attack_.clip_min, self.attack_.clip_max)
        for name, rows, side in (("clip_min", below, "below"), ("clip_max", above, "above")):
            if rows.any():
                raise ValueError(
                    f"X has values {side} the attack's {name}="
                    f"{getattr(self.attack_, name)!r} (in {int(rows.sum())} of {len(X)} "
                    "rows); scale X into [clip_min, clip_max] or set "
                    f"attack__{name}=None to disable the bound."
                )

    def _make_net(self, n_classes):
        """An unfitted net of the adversarial class, from the estimator's parameters."""
        estimator = unfrozen(self.estimator)
        fine_tune = estimator is not self.estimator  # a FrozenEstimator of a fitted net
        if estimator is None:
            estimator = default_net()
        elif not is_skorch_net(estimator):
            raise TypeError(
                f"estimator={type(estimator).__name__} is not a skorch classifier: "
                "pass a skorch NeuralNetClassifier (optionally a fitted one wrapped in "
                "FrozenEstimator to fine-tune it), or None for a default MLP."
            )
        if fine_tune and not getattr(estimator, "initialized_", False):
            raise ValueError("estimator is a FrozenEstimator of an unfitted net; fit the "
                             "net first, or pass it unwrapped to train from scratch.")
        params = clone(estimator).get_params(deep=False)
        net = adversarial_class(type(estimator))(**params)
        if not fine_tune:  # a fitted net keeps its size
            size_net(net, self.n_features_in_, n_classes)
        net.set_params(device=str(resolve_device(self.device)),
                       verbose=int(self.verbose >= 1))
        callbacks = [] if net.callbacks in (None, "disable") else list(net.callbacks)
        if self.verbose >= 2:
            from skorch.callbacks import ProgressBar

            callbacks.append(("progress_bar", ProgressBar()))
        if self.robust_val_fraction is not None:
            from skorch.dataset import ValidSplit

            device = resolve_device(self.device)
            guard = PGDTransformer(
                eps=self.attack_.eps, step_size=2.5 * self.attack_.eps / _GUARD_N_ITER,
                n_iter=_GUARD_N_ITER, norm=self.attack_.norm, random_start=True)
            callbacks.append(("robust_checkpoint", RobustCheckpoint(
                guard, *self._clip_tensors(device), seed=self.seed_)))
            net.set_params(train_split=ValidSplit(self.robust_val_fraction,
                                                  stratified=False,
                                                  random_state=self.seed_))
        net.set_params(callbacks=callbacks)
        if fine_tune:
            net.initialize()
            net.module_.load_state_dict(estimator.module_.state_dict())
            self._check_outputs(net, np.zeros((1, self.n_features_in_), np.float32))
        return net

    def _clip_tensors(self, device):
        return (bound_tensor(self.attack_.clip_min, "clip_min", self.n_features_in_, device),
                bound_tensor(self.attack_.clip_max, "clip_max", self.n_features_in_, device))

    def fit(self, X, y):
        """Train a clone of the net on adversarial batches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs within the attack's ``[clip_min, clip_max]``.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted trainer.
        """
        warm = self.warm_start and hasattr(self, "estimator_")
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES, reset=not warm)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if warm and not np.array_equal(encoder.classes_, self.classes_):
            raise ValueError(
                f"warm_start=True but y has classes {encoder.classes_.tolist()} instead "
                f"of {self.classes_.tolist()}; set warm_start=False to start anew."
            )
        if len(encoder.classes_) < 2:
            raise ValueError(f"y has 1 class ({encoder.classes_[0]!r}); a classifier "
                             "needs at least 2 classes.")
        self.attack_ = self._check_params()
        self._check_bounds(X)
        self.classes_ = encoder.classes_
        self.seed_ = check_random_state(self.random_state).randint(2**31 - 1)
        if not warm:
            self.estimator_ = self._make_net(len(self.classes_))
        net = self.estimator_
        device = resolve_device(self.device)
        seed = self.seed_ + (len(net.history) if warm else 0)
        net.adversary_ = Adversary(self.attack_, float(self.replace_ratio),
                                   *self._clip_tensors(device), seed, device,
                                   mixed_precision=bool(self.mixed_precision))
        X32 = np.asarray(X, dtype=np.float32)
        y_index = encoder.transform(y).astype(np.int64)
        try:
            if warm or getattr(net, "initialized_", False):
                use_array_batches(net)  # fit_net swaps them on the other path
                with torch_seed(seed):
                    net.partial_fit(X32, y_index)
            else:
                fit_net(net, X32, y_index, seed)
        finally:
            del net.adversary_
        self._check_outputs(net, X32[:1])
        checkpoint = dict(net.callbacks_).get("robust_checkpoint")
        self.best_epoch_ = None if checkpoint is None else checkpoint.best_epoch_
        return self

    def _check_outputs(self, net, x):
        n_outputs = net.forward(x).shape[1]
        if n_outputs != len(self.classes_):
            raise ValueError(
                f"The net returns {n_outputs} scores per sample but y has "
                f"{len(self.classes_)} classes; give its module one logit per class."
            )
