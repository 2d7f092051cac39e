"""Deep Neural Rejection: per-layer RBF SVMs, an RBF SVM combiner and a reject option."""

import copy
import numbers

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ..models._victim import fit_victim, needs_fit
from ..utils._differentiable import TorchModel, as_torch_model
from ..utils._docstrings import fill_doc
from ..utils._features import LayerCapture, extract_features, get_layers, layer_names
from ..utils._torch import resolve_device
from ._svm_torch import OvAScores, scaler_module

FLOAT_DTYPES = [np.float64, np.float32]


def default_layers(module, n_layers=3):
    """Names of the last ``n_layers`` ``nn.ReLU`` submodules of ``module``."""
    names = [name for name, m in module.named_modules() if name and isinstance(m, nn.ReLU)]
    return names[-n_layers:]


def _resolve_gamma(estimator, X):
    """Replace a string ``gamma`` ("scale"/"auto") by its value on ``X``, as SVC would.

    Every binary machine of a layer then shares one numeric gamma, visible in the
    fitted estimators' parameters.
    """
    params = estimator.get_params()
    gamma = params.get("gamma")
    if isinstance(gamma, str):
        if gamma == "scale":
            var = X.var()
            value = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        elif gamma == "auto":
            value = 1.0 / X.shape[1]
        else:
            return estimator  # let the estimator raise its own error
        estimator.set_params(gamma=float(value))
    return estimator


def _ovr(template, X):
    template = clone(template)
    if not isinstance(template, OneVsRestClassifier):
        template = OneVsRestClassifier(template)
    _resolve_gamma(template.estimator, X)
    return template


def _layer_features(features, name):
    """A layer's features as float64, refused when not finite.

    X itself is finite and within float32 (checked by ``extract_features``), but a
    network can still overflow on extreme values; the SVMs cannot score such rows,
    and a NaN score would escape the reject option (NaN is never below the
    threshold): fail closed.
    """
    Z = features[name].astype(np.float64)
    bad = ~np.isfinite(Z).all(axis=1)
    if bad.any():
        raise ValueError(
            f"The network's layer {name!r} gives non-finite outputs for {int(bad.sum())} "
            f"of {len(Z)} rows of X (first: row {np.flatnonzero(bad)[0]}): the values are "
            "too large for the network in float32, and DNR cannot score those rows. "
            "Rescale X, or refuse such inputs before they reach DNR."
        )
    return Z


def _ovr_scores(ovr, X, n_classes):
    """(n_samples, n_classes) one-vs-rest decision values (``(-s, s)`` for 2 classes)."""
    scores = ovr.decision_function(X)
    if scores.ndim == 1:
        scores = np.column_stack([-scores, scores])
    if scores.shape[1] != n_classes:
        raise ValueError(
            f"A layer classifier returned {scores.shape[1]} scores for {n_classes} classes."
        )
    return scores


def _fit_and_score(template, X, y, train, test, n_classes):
    model = clone(template).fit(X[train], y[train])
    return test, _ovr_scores(model, X[test], n_classes)


class _DNRModule(nn.Module):
    """The whole DNR decision function as one differentiable module.

    Runs the network (forward hooks collect the requested layer outputs, with
    gradients), standardises each layer's features, applies the per-layer
    one-vs-all SVMs, concatenates their scores and applies the combiner.
    """

    def __init__(self, net, layers, scalers, heads, combiner, threshold):
        super().__init__()
        self.net = net
        self.layers = list(layers)
        self.scalers = nn.ModuleList(scalers)
        self.heads = nn.ModuleList(heads)
        self.combiner = combiner
        self.reject_threshold = float(threshold)

    def layer_outputs(self, x):
        """The standardised outputs of the DNR layers, in the order of ``layers``.

        Also a handle for adaptive attacks, which pull these representations
        towards those of a sample of another class (feature mimicry).
        """
        with LayerCapture(self.net, self.layers) as capture:
            outputs = capture(x)
        return [scaler(outputs[name].to(torch.float64))
                for name, scaler in zip(self.layers, self.scalers)]

    def forward(self, x):
        scores = [head(z) for z, head in zip(self.layer_outputs(x), self.heads)]
        return self.combiner(torch.cat(scores, dim=1)).to(x.dtype)


class DNRClassifier(ClassifierMixin, BaseEstimator):
    """Deep Neural Rejection: RBF SVMs on several layers of a net, combined, with a reject option.

    For each of ``layers`` of a trained network, one-vs-all RBF SVMs (one binary
    SVM per class) are trained on the (standardised) layer outputs; their per-class
    scores are concatenated and fed to a combiner of one-vs-all RBF SVMs, whose
    per-class scores are the output of DNR. A sample whose highest combined score is
    below ``threshold_`` is rejected (predicted as ``reject_label``). RBF scores
    decay far from the training data, so inputs with anomalous internal
    representations, as adversarial examples often have, get low scores everywhere.

    **Data protocol.** The combiner is trained on *cross-validated* layer scores
    (``cv`` folds: each sample's layer scores come from SVMs that did not see it),
    then the layer SVMs are refitted on all the data, as ``StackingClassifier`` does
    (and secml's ``fit_forward``); so the combiner never learns from over-fitted
    layer scores. The reject threshold is the ``reject_rate`` quantile of the best
    *cross-validated combiner* scores of those out-of-fold layer scores, i.e. of
    scores of samples no SVM was trained on, so ``reject_rate`` holds on new clean
    data from the training distribution, not only on the training set (on MNIST,
    DNR fitted on 2000 test digits 5000-6999 at ``reject_rate=0.1`` rejected 9.0 %
    of digits 7000-9999). Data from another distribution are rejected more often
    (19 % of test digits 0-1999, which come from another NIST source): that is the point of DNR, and
    :meth:`compute_threshold` recalibrates on a held-out set when needed. When
    ``estimator`` is not frozen, ``fit`` first trains it on a stratified
    ``estimator_fraction`` of the data and fits DNR on the rest (the paper trains
    the CNN and DNR on different halves of the training set).

    All scores are per class and differentiable: :meth:`__skrobust_torch_model__`
    re-expresses the net, the standardisation, every SVM (support vectors, dual
    coefficients, intercepts, gamma) and the combiner in torch, so the attack
    transformers attack DNR end to end.

    Parameters
    ----------
    estimator : FrozenEstimator, torch.nn.Module or unfitted skorch net, default=None
        The network. A ``FrozenEstimator`` of a trained skorch net (the common case)
        or a ``torch.nn.Module`` is used as is; an unfitted skorch classifier is
        cloned and trained by ``fit`` on its own split of the data (see above). If
        None, a small MLP from :mod:`skrobust.models` is trained that way. Any
        other victim the attacks take (e.g. a scikit-learn ``MLPClassifier``, which
        skrobust re-expresses in torch) is fitted the same way, as the attack
        transformers fit theirs.
    layers : list of str, default=None
        Names of the layers (as in ``module.named_modules()``) whose outputs feed the
        layer classifiers. None takes the last three ``nn.ReLU`` layers (fewer if
        the net has fewer).
    layer_clf : classifier with decision_function, default=None
        Template of the binary layer classifier, cloned per layer and per class
        (one-vs-all through :class:`~sklearn.multiclass.OneVsRestClassifier`). None
        means ``SVC(kernel="rbf", C=1.0, gamma="scale")``. A string ``gamma`` is
        resolved on each layer's (standardised) training features. Gradient attacks
        need ``SVC`` with an RBF or linear kernel, or a linear model.
    combiner : classifier with decision_function, default=None
        Template of the binary combiner classifier (one-vs-all, like ``layer_clf``),
        trained on the concatenated layer scores. None means
        ``SVC(kernel="rbf", C=1.0, gamma="scale")``.
    layer_params : dict of str to dict, default=None
        Per-layer parameter overrides of ``layer_clf``, e.g.
        ``{"relu4": {"C": 1}, "relu2": {"gamma": 1e-3}}``. A plain parameter, so
        ``set_params`` and ``GridSearchCV`` reach it.
    standardize : bool, default=True
        Standardise each layer's features (zero mean, unit variance on the training
        data) before its classifier; the scale-aware default ``gamma="scale"`` then
        suits any layer width.
    cv : int, default=5
        Folds of the stratified cross-validation that produces the combiner's
        training scores and the scores on which the threshold is calibrated
        (reduced to the smallest class count when that is smaller; at least 2).
    threshold : float, default=None
        Reject threshold on the highest combined score. None calibrates it in
        ``fit`` on cross-validated scores so that a fraction ``reject_rate`` of
        clean samples is rejected.
    reject_rate : float in [0, 1), default=0.1
        Fraction of clean samples to reject when ``threshold`` is None; 0 disables
        rejection.
    reject_label : int, float or str, default=-1
        Label predicted for rejected samples. It must not be one of the classes;
        with string classes choose a string (e.g. ``"reject"``).
    estimator_fraction : float in (0, 1), default=0.5
        Fraction of the data used to train a non-frozen ``estimator``; DNR is fitted
        on the remaining samples. Ignored for a frozen estimator.
    batch_size : int, default=256
        Samples per forward pass of the network.
    device : str or torch.device, default="cpu"
        Device on which a non-frozen network is trained. A frozen network is used on
        its own device.
    n_jobs : int, default=None
        Parallel jobs over the binary SVM fits (joblib semantics).
    random_state : int, RandomState instance or None, default=None
        Seeds the data split, the folds and the training of a non-frozen network.

    Attributes
    ----------
    estimator_ : FrozenEstimator, skorch net, torch.nn.Module or estimator
        The network (the given one when frozen or a torch module, else the fitted
        clone).
    layers_ : list of str
        The layers used.
    layer_scalers_ : dict of str to StandardScaler or None
        Per-layer standardisation.
    layer_clfs_ : dict of str to OneVsRestClassifier
        Fitted one-vs-all layer classifiers, by layer name.
    combiner_ : OneVsRestClassifier
        Fitted one-vs-all combiner.
    threshold_ : float
        Reject threshold in use (``-inf`` when nothing is rejected).
    classes_ : ndarray of shape (n_classes,)
        The real classes (never ``reject_label``).
    n_features_in_ : int
        Number of input features.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.

    See Also
    --------
    skrobust.metrics.rejection_rate : Fraction of rejected samples.
    skrobust.metrics.robust_accuracy_with_rejection_score : Accuracy on adversarial
        examples where a rejection counts as correct.

    Notes
    -----
    ``score`` is the accuracy of ``predict``: rejecting a clean sample counts as an
    error. :meth:`compute_threshold` recalibrates ``threshold_`` on held-out data;
    to carry a threshold through ``clone`` (grid searches), pass ``threshold=``.

    References
    ----------
    A. Sotgiu, A. Demontis, M. Melis, B. Biggio, G. Fumera, X. Feng and F. Roli,
    "Deep neural rejection against adversarial examples", EURASIP Journal on
    Information Security 2020:5 (2020).

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import make_classification
    >>> from skrobust.defenses import DNRClassifier
    >>> from skrobust.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=6, n_informative=4,
    ...                            n_classes=3, random_state=0)
    >>> _ = torch.manual_seed(0)
    >>> net = MLP(n_features=6, n_classes=3, hidden_units=(32, 32))  # a torch module is used as is
    >>> dnr = DNRClassifier(net, reject_rate=0.1, cv=3, random_state=0).fit(X, y)
    >>> dnr.layers_
    ['relu1', 'relu2']
    >>> dnr.decision_function(X[:4]).shape
    (4, 3)
    >>> set(dnr.predict(X)) <= {-1, 0, 1, 2}
    True
    """

    def __init__(self, estimator=None, *, layers=None, layer_clf=None, combiner=None,
                 layer_params=None, standardize=True, cv=5, threshold=None,
                 reject_rate=0.1, reject_label=-1, estimator_fraction=0.5,
                 batch_size=256, device="cpu", n_jobs=None, random_state=None):
        self.estimator = estimator
        self.layers = layers
        self.layer_clf = layer_clf
        self.combiner = combiner
        self.layer_params = layer_params
        self.standardize = standardize
        self.cv = cv
        self.threshold = threshold
        self.reject_rate = reject_rate
        self.reject_label = reject_label
        self.estimator_fraction = estimator_fraction
        self.batch_size = batch_size
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        rate = self.reject_rate
        if (not isinstance(rate, numbers.Real) or isinstance(rate, bool)
                or not 0 <= rate < 1):
            raise ValueError(
                f"reject_rate={rate!r} must be a float in [0, 1): the fraction of clean "
                "samples to reject (0 disables rejection)."
            )
        if self.threshold is not None and (
                not isinstance(self.threshold, numbers.Real) or np.isnan(self.threshold)):
            raise ValueError(
                f"threshold={self.threshold!r} must be a float or None (None calibrates "
                "it from reject_rate)."
            )
        if not isinstance(self.cv, numbers.Integral) or isinstance(self.cv, bool) or self.cv < 2:
            raise ValueError(f"cv={self.cv!r} must be an integer >= 2 (number of folds).")
        frac = self.estimator_fraction
        if not isinstance(frac, numbers.Real) or not 0 < frac < 1:
            raise ValueError(
                f"estimator_fraction={frac!r} must be a float in (0, 1): the fraction of "
                "the data used to train a non-frozen network."
            )
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a positive integer.")
        if self.layer_params is not None and (
                not isinstance(self.layer_params, dict)
                or not all(isinstance(v, dict) for v in self.layer_params.values())):
            raise ValueError(
                f"layer_params={self.layer_params!r} must be a dict from layer name to a "
                'dict of parameters, e.g. {"relu4": {"C": 1}}.'
            )
        for name, template in (("layer_clf", self.layer_clf), ("combiner", self.combiner)):
            if template is not None and not hasattr(template, "decision_function"):
                raise TypeError(
                    f"{name}={type(template).__name__} has no decision_function; DNR needs "
                    "per-class scores: use e.g. SVC(kernel='rbf')."
                )
        resolve_device(self.device)

    def _check_layers(self, module):
        if self.layers is None:
            layers = default_layers(module)
            if not layers:
                raise ValueError(
                    f"The network has no nn.ReLU layer to default to; pass layers= with "
                    f"names from {layer_names(module)}."
                )
        else:
            layers = [self.layers] if isinstance(self.layers, str) else list(self.layers)
            if not layers:
                raise ValueError("layers is empty; give at least one layer name.")
            get_layers(module, layers)  # an unknown name: the error lists the valid ones
            if len(set(layers)) != len(layers):
                raise ValueError(f"layers={layers!r} contains duplicates.")
        extra = set(self.layer_params or {}) - set(layers)
        if extra:
            raise ValueError(
                f"layer_params has keys {sorted(extra)} that are not in layers={layers}."
            )
        return layers

    # --------------------------------------------------------------------- fit
    def _fit_network(self, X, y, y_index, rng):
        """The victim (the given one, or a clone fitted on its own split) and DNR's rows."""
        if not needs_fit(self.estimator):
            return self.estimator, np.arange(len(X))
        try:
            net_idx, dnr_idx = train_test_split(
                np.arange(len(X)), train_size=self.estimator_fraction, stratify=y_index,
                random_state=rng.randint(2**31 - 1))
        except ValueError as exc:
            raise ValueError(
                "Cannot split the data between the network and DNR with "
                f"estimator_fraction={self.estimator_fraction}: {exc} Give more samples "
                "per class, or a frozen trained network."
            ) from exc
        net = fit_victim(self.estimator, X[net_idx], y[net_idx], y_index[net_idx],
                         n_classes=len(self.classes_), device=self.device, seed=self.seed_)
        return net, dnr_idx

    @fill_doc
    def fit(self, X, y):
        """Fit (or take) the network, the layer classifiers, the combiner and the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs of the network.
        {y_fit}

        {returns_classifier}
        """
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        self._check_params()
        self.classes_, y_index = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}); DNR needs at least 2 classes."
            )
        if np.isin(np.asarray([self.reject_label], dtype=object),
                   self.classes_.astype(object)).any():
            raise ValueError(
                f"reject_label={self.reject_label!r} is one of the classes; choose a label "
                "outside classes_ (e.g. -1 or 'reject')."
            )
        rng = check_random_state(self.random_state)
        self.seed_ = rng.randint(2**31 - 1)
        self.estimator_, dnr_idx = self._fit_network(X, y, y_index, rng)
        self.layers_ = self._check_layers(as_torch_model(self.estimator_).module)
        X_dnr, y_dnr = X[dnr_idx], y_index[dnr_idx]
        counts = np.bincount(y_dnr, minlength=n_classes)
        n_folds = int(min(self.cv, counts.min()))
        if n_folds < 2:
            raise ValueError(
                f"Each class needs at least 2 samples for DNR's cross-validation; the "
                f"smallest class has {counts.min()} among the {len(y_dnr)} samples DNR is "
                "fitted on."
            )
        folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=self.seed_)
                     .split(X_dnr, y_dnr))
        features = extract_features(self.estimator_, X_dnr, self.layers_,
                                    batch_size=self.batch_size)
        layer_params = self.layer_params or {}
        self.layer_scalers_, self.layer_clfs_ = {}, {}
        oof_scores = []
        parallel = Parallel(n_jobs=self.n_jobs)
        for name in self.layers_:
            Z = _layer_features(features, name)
            scaler = StandardScaler().fit(Z) if self.standardize else None
            if scaler is not None:
                Z = scaler.transform(Z)
            template = clone(SVC(kernel="rbf", gamma="scale") if self.layer_clf is None
                             else self.layer_clf)
            if name in layer_params:
                template.set_params(**layer_params[name])
            ovr = _ovr(template, Z)
            oof_scores.append(self._cross_val_scores(parallel, ovr, Z, y_dnr, folds, n_classes))
            self.layer_scalers_[name] = scaler
            self.layer_clfs_[name] = clone(ovr).fit(Z, y_dnr)
        Z = np.hstack(oof_scores)
        template = SVC(kernel="rbf", gamma="scale") if self.combiner is None else self.combiner
        combiner = _ovr(template, Z)
        self.combiner_ = clone(combiner).fit(Z, y_dnr)
        if self.threshold is not None:
            self.threshold_ = float(self.threshold)
        elif self.reject_rate == 0:
            self.threshold_ = -np.inf
        else:
            held_out = self._cross_val_scores(parallel, combiner, Z, y_dnr, folds, n_classes)
            self.threshold_ = float(np.quantile(held_out.max(1), self.reject_rate))
        return self

    @staticmethod
    def _cross_val_scores(parallel, template, Z, y, folds, n_classes):
        scores = np.empty((len(Z), n_classes))
        for test, fold_scores in parallel(
                delayed(_fit_and_score)(template, Z, y, train, test, n_classes)
                for train, test in folds):
            scores[test] = fold_scores
        return scores

    # ----------------------------------------------------------------- predict
    def _layer_scores(self, X):
        features = extract_features(self.estimator_, X, self.layers_, batch_size=self.batch_size)
        n_classes = len(self.classes_)
        scores = []
        for name in self.layers_:
            Z = _layer_features(features, name)
            if self.layer_scalers_[name] is not None:
                Z = self.layer_scalers_[name].transform(Z)
            scores.append(_ovr_scores(self.layer_clfs_[name], Z, n_classes))
        return np.hstack(scores)

    @fill_doc
    def decision_function(self, X):
        """Combined per-class scores; the reject rule compares their maximum with ``threshold_``.

        {parameters_X}

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            Combiner scores (float64), columns in the order of ``classes_``. With two
            classes, as in scikit-learn, the score ``s`` of ``classes_[1]`` only: the
            class scores are ``(-s, s)`` and a sample is rejected when
            ``|s| < threshold_``.
        """
        scores = self._scores(X)
        return scores[:, 1] if len(self.classes_) == 2 else scores

    def _scores(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        return _ovr_scores(self.combiner_, self._layer_scores(X), len(self.classes_))

    def _labels(self, scores):
        labels = self.classes_[scores.argmax(1)]
        if self.threshold_ == -np.inf:
            return labels  # nothing is ever rejected: keep the classes' dtype
        reject = scores.max(1) < self.threshold_
        label = np.asarray(self.reject_label)
        if labels.dtype.kind in "iuf" and label.dtype.kind in "iuf":
            labels = labels.astype(np.result_type(labels.dtype, label.dtype))
        elif labels.dtype.kind in "US" and label.dtype.kind in "US":
            labels = labels.astype(np.result_type(labels.dtype, label.dtype))
        else:
            labels = labels.astype(object)
        labels[reject] = self.reject_label
        return labels

    @fill_doc
    def predict(self, X):
        """Predicted classes, with ``reject_label`` where the best score is below ``threshold_``.

        {parameters_X}

        {returns_y_pred}
            A class of ``classes_`` or ``reject_label``.
        """
        return self._labels(self._scores(X))

    def compute_threshold(self, X, reject_rate):
        """Set ``threshold_`` so that a fraction ``reject_rate`` of ``X`` is rejected.

        ``X`` should be clean data not used to fit DNR (e.g. a validation set).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean held-out inputs.
        reject_rate : float in [0, 1)
            Fraction of ``X`` to reject.

        Returns
        -------
        threshold : float
            The new ``threshold_``.
        """
        check_is_fitted(self)
        if (not isinstance(reject_rate, numbers.Real) or isinstance(reject_rate, bool)
                or not 0 <= reject_rate < 1):
            raise ValueError(f"reject_rate={reject_rate!r} must be a float in [0, 1).")
        best = self._scores(X).max(1)
        self.threshold_ = -np.inf if reject_rate == 0 else float(np.quantile(best, reject_rate))
        return self.threshold_

    # ------------------------------------------------------------------- torch
    def __skrobust_torch_model__(self):
        """The gradient protocol: net, standardisation, SVMs and combiner in torch."""
        check_is_fitted(self)
        model = as_torch_model(self.estimator_)
        net = model.module
        if any(m.training for m in net.modules()):
            # DNR predicts with the net in eval mode (extract_features); the torch
            # model must too, without switching the caller's module
            net = copy.deepcopy(net)
        scalers = [scaler_module(self.layer_scalers_[name]) for name in self.layers_]
        heads = [OvAScores(self.layer_clfs_[name]) for name in self.layers_]
        module = _DNRModule(net, self.layers_, scalers, heads,
                            OvAScores(self.combiner_), self.threshold_)
        for part in (*scalers, *heads, module.combiner):
            part.to(model.device)
        return TorchModel(module.eval(), model.device, self.classes_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
