"""Kernel two-sample test on (layer) representations: MMDDriftDetector."""

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, check_scalar, validate_data

from ..utils._differentiable import as_torch_model, check_float32_range
from ..utils._docstrings import fill_doc
from ..utils._features import extract_features
from ..utils._torch import make_generator, resolve_device
from ..utils._validation import refuse_init_params
from ._kernels import (
    _threads_for,
    fisher_combination,
    kernel_gammas,
    median_gamma,
    mmd2_permutation,
    permutation_matrix,
    witness_scores,
)
from ._protocol import detection_rates, drift_result

FLOAT_DTYPES = [np.float64, np.float32]
KERNELS = ("rbf", "rbf_mixture")
INPUT, OUTPUT = "input", "output"

#: With ``standardize=True``, a test divides each feature by the standard deviation
#: of its pooled sample, but never by more than ``SCALE_CAP`` times the reference's
#: own (``ref_scale_``): otherwise a few extreme rows would inflate the scale and
#: shrink every other difference towards 0, hiding any shift.
SCALE_CAP = 4.0
_FLOAT_MAX = np.finfo(np.float64).max


def _peak(F):
    peak = np.abs(F).max(0)
    return np.where(peak > 0, peak, 1.0)


def _mean(F):
    """Column means of a finite float64 array, without overflow."""
    peak = _peak(F)
    return peak * (F / peak).mean(0)


def _std(F):
    """Column standard deviations of a finite float64 array, without overflow."""
    peak = _peak(F)
    return peak * (F / peak).std(0)


def _moments(F):
    """Column means and standard deviations in float64 (1 where a feature is constant)."""
    F = np.asarray(F, dtype=np.float64)
    std = _std(F)
    return _mean(F), np.where(std > 0, std, 1.0)


def _kernel_features(F, layer):
    """Representations as float64 for the kernel: refused when NaN, saturated when infinite.

    The input itself is validated finite; a network can still overflow (float32)
    on extreme finite input and give ``inf`` (kept as the largest float64, an
    isolated point for the kernel) or NaN (which no kernel can score: refused).
    """
    F = np.asarray(F, dtype=np.float64)
    bad = np.flatnonzero(np.isnan(F).any(axis=1))
    if len(bad):
        raise ValueError(
            f"The representations of layer {layer!r} are NaN for {len(bad)} row(s) "
            f"(first: {bad[:5].tolist()}): the network overflows on these inputs, so "
            f"they cannot be tested. Check the range of X.")
    return np.clip(F, -_FLOAT_MAX, _FLOAT_MAX)


#: Constructor arguments that were renamed: old name -> new name.
_RENAMED_PARAMS = {"layer": "layers"}

#: Names that are gone and what replaces them: a clear error instead of a bare
#: AttributeError or TypeError.
_GONE = {
    "layer": "the parameter layer is now layers (a layer name or a list of names, as "
             "in DNRClassifier)",
    "feature_mean_": "the attribute feature_mean_ is now ref_mean_ (a dict by layer name)",
    "feature_scale_": "the attribute feature_scale_ is now ref_scale_ (a dict by layer "
                      "name)",
    "predict": "predict is gone: the detector tests a whole batch, so it has no "
               "per-sample decision; use test(X).is_drift for the batch decision and "
               "score_samples(X) or top_k_suspicious(X) for the rows",
}


def _renamed_params_message(class_name, given):
    old, value = next(iter(given.items()))
    return f"{class_name}: {_GONE[old]}; pass {_RENAMED_PARAMS[old]}={value!r}."


class MMDDriftDetector(BaseEstimator):
    """Kernel maximum-mean-discrepancy two-sample test against a reference sample.

    ``fit(X_ref)`` stores the representations of trusted inputs: ``X`` itself
    (``estimator=None``, for tabular data) or the output of one or several layers of
    a trained network. ``test(X)`` then asks whether a batch ``X`` comes from the
    same distribution, with the unbiased MMD^2 statistic and a permutation test;
    deeper layers of a classifier separate natural from adversarial inputs far better
    than the pixels (the "LADIS" protocol). The pooled kernel matrix is computed once
    per test, in row blocks, and all permutations are one matrix product.

    Parameters
    ----------
    estimator : fitted skorch classifier, FrozenEstimator, torch.nn.Module or None, \
default=None
        Network whose layer representations are tested; used as is (never
        refitted). If None, the test runs on ``X`` itself.
    layers : str, list of str or None, default=None
        Layer name(s) as in ``module.named_modules()``; ``"input"`` is ``X`` itself
        and ``"output"`` the network's logits. None means ``"input"`` without an
        estimator and ``"output"`` with one. Several layers give one p-value per
        layer, combined with Fisher's method. (Called ``layer`` before; that name
        now raises a ``TypeError`` that says so.)
    kernel : {"rbf", "rbf_mixture"}, default="rbf"
        ``"rbf"`` is ``exp(-gamma ||x - y||^2)``; ``"rbf_mixture"`` averages five RBF
        kernels whose bandwidths are the base one times ``2^-2, ..., 2^2`` (robust to
        a poorly chosen bandwidth, at a small cost in power at the ideal one).
    gamma : "median" or float, default="median"
        Precision of the (base) RBF kernel; ``"median"`` uses the median heuristic
        ``1 / (2 median ||x_i - x_j||^2)`` on the reference representations of each
        layer, so the test never looks at the tested batch to choose it.
    standardize : bool, default=False
        Centre and scale every feature to unit variance before the kernel, so that
        features with a larger spread no longer dominate the distance. The bandwidth
        is chosen on the reference standardised by its own moments; each test
        standardises its pooled sample (tested batch and reference rows together), a
        symmetric transformation that keeps the permutation test exact (moments of
        the reference alone would make rare features of the batch look extreme and
        inflate the false-positive rate). The pooled scale of a feature is capped at
        ``SCALE_CAP = 4`` times the reference's own (``ref_scale_``): otherwise
        a few extreme rows of the batch would inflate it and shrink every other
        difference towards 0, hiding any shift.
    class_matched : bool, default=False
        Draw the reference sample with the same predicted-class counts as the tested
        batch (needs ``estimator``), so a batch that is just unbalanced across
        classes is not flagged. Each test then uses ``len(X)`` reference samples and
        permutes labels within each predicted class (the exact null of this
        stratified design; free permutations would make it conservative).
    n_permutations : int, default=100
        Random relabellings of the pooled sample for the null distribution.
    alpha : float, default=0.05
        Significance level of ``test`` and ``detection_rate``; in (0, 1).
    batch_size : int, default=256
        Samples per forward pass of ``estimator``.
    block_size : int, default=1024
        Rows of the pooled kernel matrix computed at once (bounds the memory).
    device : str or torch.device, default="cpu"
        Where the kernels are computed.
    random_state : int, RandomState instance or None, default=None
        Seeds the permutations and the subsampling; a fitted detector gives the
        same p-value for the same input.

    Attributes
    ----------
    estimator_ : object or None
        The network (the given one) or None.
    layers_ : list of str
        The tested layers (``["input"]`` without an estimator).
    X_ref_ : dict of str to ndarray of shape (n_ref, n_layer_features)
        Reference representations by layer name (one entry per layer, also with a
        single layer: ``X_ref_["input"]`` without an estimator).
    gamma_ : dict of str to float
        Base RBF precision by layer name.
    ref_mean_, ref_scale_ : dict of str to ndarray of shape (n_layer_features,) or None
        Mean and standard deviation of the reference representations by layer name
        (``standardize=True`` only, else None): they choose the bandwidth, cap the
        pooled scale of each test and standardise ``score_samples``. (Called
        ``feature_mean_`` / ``feature_scale_`` before, a name the attacks use for
        the units of their budget.)
    ref_classes_ : ndarray of shape (n_ref,) or None
        Predicted class index of every reference sample when ``class_matched``.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.
    n_features_in_ : int
        Number of features of ``X``.

    See Also
    --------
    mmd2_unbiased : The statistic on two arrays.

    Notes
    -----
    The statistic is the unbiased estimator of Gretton et al. (2012, Lemma 6)::

        MMD^2_u = sum_{i != j} k(x_i, x_j) / (n(n-1)) + sum_{i != j} k(y_i, y_j) / (m(m-1))
                  - 2 sum_{i, j} k(x_i, y_j) / (nm)

    Its permutation p-value ``(1 + #{null >= observed}) / (1 + n_permutations)`` is
    never 0 and is exact in finite samples: on clean data the test rejects with
    probability at most ``alpha``. With several layers the per-layer p-values are
    combined with Fisher's ``-2 sum log p_l`` computed on the same permutations
    (non-parametric combination), which stays calibrated however dependent the
    layers are.

    ``test``, ``score`` and ``score_samples`` act on a batch (a two-sample test), so
    a row's witness score depends on the other rows of the batch. There is no
    ``predict``: scikit-learn's ``predict(X)`` gives one answer per sample, while
    this detector's decision is about the whole batch (``test(X).is_drift``).

    Extreme values cannot blind the test. Kernels are computed in float64 on
    features centred on the reference; a squared distance that overflows float64
    (values beyond about 1e154) is ``+inf``, whose kernel value is the exact limit
    0, so such a row is an isolated point, unlike every other row.
    A network's ``inf`` representations are kept as the largest float64; NaN
    representations (a network overflowing on extreme input), NaN or infinite
    input, a reference whose median-heuristic bandwidth overflows and a
    non-finite statistic raise ``ValueError``: a batch is never reported as "no
    drift" because of a value the test could not handle.

    References
    ----------
    A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf and A. Smola, "A kernel
    two-sample test", JMLR 13, 2012.
    F. Pesarin, "Multivariate Permutation Tests", Wiley, 2001 (non-parametric
    combination).

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.detection import MMDDriftDetector
    >>> rng = np.random.RandomState(0)
    >>> detector = MMDDriftDetector(random_state=0).fit(rng.randn(200, 5))
    >>> detector.test(rng.randn(100, 5)).is_drift
    False
    >>> result = detector.test(rng.randn(100, 5) + 0.5)
    >>> result.is_drift, result.p_value < 0.05
    (True, True)
    """

    @refuse_init_params(_RENAMED_PARAMS, _renamed_params_message)
    def __init__(self, estimator=None, *, layers=None, kernel="rbf", gamma="median",
                 standardize=False, class_matched=False, n_permutations=100,
                 alpha=0.05, batch_size=256, block_size=1024, device="cpu",
                 random_state=None):
        self.estimator = estimator
        self.layers = layers
        self.kernel = kernel
        self.gamma = gamma
        self.standardize = standardize
        self.class_matched = class_matched
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.batch_size = batch_size
        self.block_size = block_size
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        check_scalar(self.n_permutations, "n_permutations", numbers.Integral, min_val=1)
        check_scalar(self.alpha, "alpha", numbers.Real, min_val=0.0, max_val=1.0,
                     include_boundaries="neither")
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.block_size, "block_size", numbers.Integral, min_val=1)
        if self.kernel not in KERNELS:
            raise ValueError(
                f'kernel={self.kernel!r} is not supported; use "rbf" or "rbf_mixture".')
        if not (isinstance(self.gamma, str) and self.gamma == "median"):
            if (not isinstance(self.gamma, numbers.Real) or isinstance(self.gamma, bool)
                    or not np.isfinite(self.gamma) or self.gamma <= 0):
                raise ValueError(
                    f'gamma={self.gamma!r} must be "median" or a positive finite float.')
        if self.class_matched and self.estimator is None:
            raise ValueError(
                "class_matched=True needs the predicted classes of a network; pass "
                "estimator=<fitted classifier> or set class_matched=False.")
        resolve_device(self.device)

    def _resolve_layers(self):
        layers = self.layers
        if self.estimator is None:
            if layers not in (None, INPUT, [INPUT], (INPUT,)):
                raise ValueError(
                    f"layers={layers!r} needs a network; without an estimator only "
                    f"layers=None or 'input' (X itself) is possible.")
            return [INPUT]
        if layers is None:
            return [OUTPUT]
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError(
                f"layers={layers!r} must be a layer name or a non-empty list of names.")
        if len(set(names)) != len(names):
            raise ValueError(f"layers={layers!r} contains duplicate names.")
        return names

    # -------------------------------------------------------------- features
    def _forward(self, X, names, need_classes):
        """Raw representations {layer: array} and predicted class indices (or None)."""
        feats = {}
        if INPUT in names:
            feats[INPUT] = X
        hidden = [name for name in names if name not in (INPUT, OUTPUT)]
        if hidden:
            feats.update(extract_features(self.estimator_, X, hidden,
                                          batch_size=self.batch_size))
        classes = None
        if OUTPUT in names or need_classes:
            model = as_torch_model(self.estimator_)
            check_float32_range(X)  # as extract_features: the network is float32
            model.check_n_features(X.shape[1])
            logits = model.predict_scores(X, batch_size=self.batch_size,
                                          transform=lambda out: out.flatten(1),
                                          dtype=np.float32)
            if OUTPUT in names:
                feats[OUTPUT] = logits
            if need_classes:
                classes = logits.argmax(1)
        return {name: feats[name] for name in names}, classes

    def __getattr__(self, name):
        """Only called for missing attributes: names that are gone say what replaced them."""
        if name in _GONE:
            raise AttributeError(f"{type(self).__name__}: {_GONE[name]}.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _representations(self, X):
        return self._forward(X, self.layers_, self.class_matched)

    # ------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Store the reference representations and choose the kernel bandwidth.

        Parameters
        ----------
        X : array-like of shape (n_ref, n_features)
            Trusted reference inputs (at least 2).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted detector.
        """
        X = validate_data(self, X, dtype=FLOAT_DTYPES, ensure_min_samples=2)
        self._check_params()
        self.layers_ = self._resolve_layers()
        if self.estimator is not None:
            # clear TypeError / NotFittedError, and expected vs given width, early
            as_torch_model(self.estimator).check_n_features(X.shape[1])
        self.estimator_ = self.estimator
        self.seed_ = int(check_random_state(self.random_state).randint(2**31 - 1))
        feats, classes = self._forward(X, self.layers_, self.class_matched)
        means, scales, gammas = {}, {}, {}
        for name, f in feats.items():
            f = _kernel_features(f, name)
            if self.standardize:
                means[name], scales[name] = _moments(f)
                f = (f - means[name]) / scales[name]
            gammas[name] = (median_gamma(f, random_state=self.seed_)
                            if isinstance(self.gamma, str) else float(self.gamma))
            if not (np.isfinite(gammas[name]) and gammas[name] > 0):
                raise ValueError(
                    f"The median heuristic gives gamma={gammas[name]!r} for layer "
                    f"{name!r}: the reference's squared distances overflow float64. "
                    f"Rescale X or set standardize=True.")
        if INPUT in feats:  # never keep a view of the caller's array
            feats[INPUT] = np.array(feats[INPUT], copy=True)
        self.X_ref_ = feats
        self.gamma_ = gammas
        self.ref_mean_ = means if self.standardize else None
        self.ref_scale_ = scales if self.standardize else None
        self.ref_classes_ = classes
        return self

    # ------------------------------------------------------------------ tests
    def _validate(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=FLOAT_DTYPES, reset=False,
                             ensure_min_samples=2)

    def _reference_rows(self, rng, classes, size):
        """Rows of the reference for one test: all, a random subset or class-matched."""
        n_ref = len(self.X_ref_[self.layers_[0]])
        if self.class_matched:
            rows = []
            for label, count in zip(*np.unique(classes, return_counts=True)):
                candidates = np.flatnonzero(self.ref_classes_ == label)
                take = min(count, len(candidates))
                rows.append(rng.choice(candidates, take, replace=False))
            rows = np.sort(np.concatenate(rows)) if rows else np.empty(0, dtype=int)
            if len(rows) < 2:
                raise ValueError(
                    "class_matched=True found fewer than 2 reference samples with the "
                    "predicted classes of X; fit on a larger reference set.")
            return rows
        if size is None or size >= n_ref:
            return np.arange(n_ref)
        return np.sort(rng.choice(n_ref, size, replace=False))

    def _run_test(self, feats, ref_rows, generator, classes=None):
        device = resolve_device(self.device)
        refs, gammas = self.X_ref_, self.gamma_
        n = len(next(iter(feats.values())))
        N = n + len(ref_rows)
        stats = {}
        with _threads_for(N):
            strata = (np.concatenate([classes, self.ref_classes_[ref_rows]])
                      if self.class_matched else None)
            U = permutation_matrix(N, n, self.n_permutations, generator, device, strata)
            for name in self.layers_:
                Z = torch.as_tensor(self._pooled(feats[name], refs[name][ref_rows], name),
                                    device=device)
                stats[name] = mmd2_permutation(
                    Z, n, kernel_gammas(gammas[name], self.kernel), U,
                    block_size=self.block_size).cpu().numpy()
        per_layer = {name: drift_result(s, self.alpha) for name, s in stats.items()}
        if len(self.layers_) == 1:
            return drift_result(stats[self.layers_[0]], self.alpha, per_layer)
        fisher = fisher_combination(np.stack([stats[name] for name in self.layers_]))
        return drift_result(fisher, self.alpha, per_layer)

    def _pooled(self, F, R, name):
        """The pooled sample (batch ``F``, then reference rows ``R``) the kernel sees.

        float64, centred on the reference rows (distances do not change, rounding
        does); with ``standardize``, divided by the pooled standard deviation capped
        at ``SCALE_CAP`` times the reference's; saturated at the largest float64.
        """
        Z = np.concatenate([_kernel_features(F, name), np.asarray(R, dtype=np.float64)])
        with np.errstate(over="ignore"):  # overflows are saturated: isolated points
            Z -= _mean(Z[len(F):])
            np.clip(Z, -_FLOAT_MAX, _FLOAT_MAX, out=Z)
            if self.standardize:
                std = _std(Z)
                cap = SCALE_CAP * np.asarray(self.ref_scale_[name])
                Z /= np.fmin(np.where(std > 0, std, 1.0), cap)
                np.clip(Z, -_FLOAT_MAX, _FLOAT_MAX, out=Z)
        return Z

    @fill_doc
    def test(self, X):
        """Two-sample test of the batch ``X`` against the whole reference.

        {batch_parameters}

        Returns
        -------
        result : DriftResult
            Statistic, p-value, critical value, decision at ``alpha``, the
            permutation null and the per-layer results.
        """
        X = self._validate(X)
        feats, classes = self._representations(X)
        rng = np.random.RandomState(self.seed_)
        rows = self._reference_rows(rng, classes, None)
        return self._run_test(feats, rows, make_generator(self.seed_, "cpu"), classes)

    @fill_doc
    def score(self, X, y=None):
        """Permutation p-value that ``X`` comes from the reference distribution.

        Higher means more similar (scikit-learn's "higher is better").

        {batch_parameters}
        y : None
            Ignored.

        Returns
        -------
        p_value : float
        """
        return self.test(X).p_value

    @fill_doc
    def score_samples(self, X):
        """Witness-function score of each sample of the batch (low = suspicious).

        The empirical MMD witness ``f(x) = mean_r k(x, r) - mean_{x' != x} k(x, x')``
        (reference rows ``r``, the other rows ``x'`` of the batch) is high where the
        reference is denser than the batch and low where the batch concentrates
        away from the reference. Averaged over layers.

        {batch_parameters}

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Higher is more normal, as in scikit-learn's outlier detectors.
        """
        X = self._validate(X)
        feats, _ = self._representations(X)
        device = resolve_device(self.device)
        scores = np.zeros(len(X))
        for name in self.layers_:
            F, R = self._scoring_view(feats[name], name)
            scores += witness_scores(
                torch.as_tensor(F, device=device), torch.as_tensor(R, device=device),
                kernel_gammas(self.gamma_[name], self.kernel),
                block_size=self.block_size).cpu().numpy()
        if not np.isfinite(scores).all():  # cannot happen with the safe kernel: fail closed
            raise ValueError("The witness scores are not finite; X cannot be scored.")
        return (scores / len(self.layers_)).astype(X.dtype, copy=False)

    def _scoring_view(self, F, name):
        """Batch ``F`` and reference of layer ``name`` as ``score_samples`` sees them.

        float64, centred on the reference (standardised by its moments with
        ``standardize``), saturated at the largest float64.
        """
        F = _kernel_features(F, name)
        R = np.asarray(self.X_ref_[name], dtype=np.float64)
        if self.standardize:
            mean, scale = self.ref_mean_[name], self.ref_scale_[name]
        else:
            mean, scale = _mean(R), 1.0
        with np.errstate(over="ignore"):  # saturated: isolated points
            return tuple(np.clip((A - mean) / scale, -_FLOAT_MAX, _FLOAT_MAX)
                         for A in (F, R))

    def top_k_suspicious(self, X, k=100):
        """Indices of the ``k`` most suspicious samples of ``X``, most suspicious first.

        Ranks by :meth:`score_samples` (lowest witness first).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        k : int, default=100
            Number of indices (all samples when ``k >= n_samples``).

        Returns
        -------
        indices : ndarray of shape (min(k, n_samples),)
        """
        check_scalar(k, "k", numbers.Integral, min_val=1)
        scores = self.score_samples(X)
        return np.argsort(scores, kind="stable")[:k]

    def detection_rate(self, X, *, n_repeats=100, sample_size=100):
        """Fraction of repeated tests of random subsets that detect drift at ``alpha``.

        Each repeat draws ``sample_size`` rows of ``X`` and ``sample_size`` reference
        rows (class-matched when ``class_matched``), both without replacement, and
        tests them. On data from the reference distribution this is the
        false-positive rate (at most ``alpha`` up to Monte-Carlo error); on shifted or
        adversarial data it is the power.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Pool of tested samples (at least ``sample_size``).
        n_repeats : int, default=100
            Number of tests.
        sample_size : int, default=100
            Samples per side of each test (at least 2).

        Returns
        -------
        rate : float or dict
            The detection rate; with several layers a dict from layer name to its
            rate, plus ``"combined"`` for Fisher's combination.
        """
        X = self._validate(X)
        check_scalar(n_repeats, "n_repeats", numbers.Integral, min_val=1)
        check_scalar(sample_size, "sample_size", numbers.Integral, min_val=2)
        n_ref = len(self.X_ref_[self.layers_[0]])
        if sample_size > len(X) or (sample_size > n_ref and not self.class_matched):
            raise ValueError(
                f"sample_size={sample_size} exceeds the {len(X)} samples of X or the "
                f"{n_ref} reference samples; lower sample_size or give more data.")
        feats, classes = self._representations(X)
        rng = np.random.RandomState(self.seed_)
        generator = make_generator(self.seed_, "cpu")

        def test_rows(rows):
            sub = {name: f[rows] for name, f in feats.items()}
            sub_classes = None if classes is None else classes[rows]
            ref_rows = self._reference_rows(rng, sub_classes, sample_size)
            return self._run_test(sub, ref_rows, generator, sub_classes)

        rates = detection_rates(test_rows, len(X), self.layers_, n_repeats=n_repeats,
                                sample_size=sample_size, rng=rng)
        if len(self.layers_) == 1:
            return rates[self.layers_[0]]
        return rates
