"""What every attack transformer shares: validation, the victim, batching, projection."""

import numbers
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from tqdm.auto import tqdm

from ..models._victim import fit_victim, needs_fit, victim_torch_model
from ..utils._dask import is_dask_array, map_row_blocks
from ..utils._differentiable import check_float32_range, check_victim_width
from ..utils._docstrings import fill_doc
from ..utils._torch import (copy_into, eval_mode, make_generator, resolve_device, to_device,
                            to_numpy)
from ..utils._validation import check_bound
from ._constraints import FeatureConstraints, check_eps, check_feature_mask, feature_scale
from ._runs import row_keys
from .functional import project_exact, two_class_scores

FLOAT_DTYPES = [np.float64, np.float32]


def finite(low, *, closed="left", integer=False):
    """Constraint for a finite number ``>= low`` (``> low`` with ``closed="neither"``):
    NaN and inf are refused like any other value out of range."""
    if integer:
        return Interval(Integral, low, None, closed=closed)
    return Interval(Real, low, np.inf, closed="left" if closed == "left" else "neither")


def share(closed="both"):
    """Constraint for a fraction in [0, 1] (``closed`` as in ``Interval``); refuses NaN."""
    return Interval(Real, 0, 1, closed=closed)


# Parameters every attack shares, validated by sklearn's parameter validation at fit
# (``_validate_params``): InvalidParameterError, a ValueError naming the parameter,
# the accepted values and the one given. Subclasses extend these dicts.
ATTACK_PARAMS = {
    "estimator": "no_validation",  # the victim layer checks it (as_torch_model)
    "eps": [finite(0)],
    "norm": "no_validation",  # resolve_norm: "inf"/2 in their accepted spellings
    "targeted": ["boolean"],
    "clip_min": [Real, "array-like", None],  # NaN and shapes: check_bound
    "clip_max": [Real, "array-like", None],
    "batch_size": [finite(1, integer=True)],
    "device": "no_validation",  # resolve_device
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}
CONSTRAINED_ATTACK_PARAMS = {
    **ATTACK_PARAMS,
    "eps": [finite(0), "array-like"],  # arrays: check_eps
    # check_bound and feature_scale check these with messages that list the tabular options
    "clip_min": "no_validation",
    "clip_max": "no_validation",
    "eps_scale": "no_validation",
    "immutable": ["array-like", None],
    "integer_features": ["array-like", None],
}


def _torch_dtype(dtype):
    """The torch float dtype of a numpy float dtype (float32 or float64)."""
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def resolve_norm(norm):
    """Return ``"inf"`` or ``2`` for the accepted spellings of an Lp norm."""
    if isinstance(norm, str) and norm.lower() in ("inf", "linf"):
        return "inf"
    if isinstance(norm, numbers.Real) and not isinstance(norm, bool):
        if norm == np.inf:
            return "inf"
        if norm == 2:
            return 2
    if norm in ("2", "l2", "L2"):
        return 2
    raise ValueError(f'norm={norm!r} is not supported; use norm="inf" or norm=2.')


def outside_bounds(X, lo, hi, tol=1e-6):
    """Row masks of ``X`` with a value below ``lo`` / above ``hi`` (None: no bound)."""
    below, above = np.zeros(len(X), bool), np.zeros(len(X), bool)
    for start in range(0, len(X), 1024):  # row chunks: no full-size boolean temporary
        rows = X[start:start + 1024]
        if lo is not None:
            below[start:start + 1024] = np.any(rows < np.asarray(lo) - tol, axis=1)
        if hi is not None:
            above[start:start + 1024] = np.any(rows > np.asarray(hi) + tol, axis=1)
    return below, above


def _is_data(value):
    return isinstance(value, str) and value == "data"


class BaseAttack(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Base class of the gradient attack transformers (not public).

    Subclasses implement ``_perturb(module, x, y, generator, clip_min, clip_max)``
    on tensors and, optionally, ``_check_attack_params()``.

    Subclasses that set ``_supports_constraints = True`` also take the feature
    constraints ``eps`` as an array, ``eps_scale``, ``immutable``,
    ``integer_features`` and ``clip_min``/``clip_max="data"`` (see
    :mod:`skrobust.attacks._constraints`); their ``_perturb`` then also accepts the
    keyword ``eps`` (the radius of the ball, which replaces ``self.eps``).

    Subclasses whose ``_row_keyed`` is True draw their random starts per row from
    a key that hashes ``random_state`` and the row's values
    (:func:`~skrobust.attacks._runs.row_keys`): their ``_perturb`` also accepts the
    keyword ``keys``, and a row's result does not depend on the batch it is in, the
    batch size or the device. By default that is the case when the attack has a
    true ``random_start`` (keys cost a hash of each row: none for nothing).
    """

    _supports_constraints = False
    _parameter_constraints = ATTACK_PARAMS

    @property
    def _row_keyed(self):
        return bool(getattr(self, "random_start", False))

    @fill_doc
    def fit(self, X, y):
        """Fit the victim (unless it is frozen or a torch module) and record the classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; used to fit a clone of ``estimator`` when it is not frozen.
        {y_fit}

        {returns_self}
        """
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        self._check_params()
        check_float32_range(X)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2 and needs_fit(self.estimator):
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}); training a victim needs at least "
                "2 classes."
            )
        self.seed_ = check_random_state(self.random_state).randint(2**31 - 1)
        if self._supports_constraints:
            self._fit_constraints(X)
        self.estimator_ = self._fit_victim(X, y, y_index)
        # fail at fit, not at transform, on a bad victim or a width it cannot take
        check_victim_width(self.estimator_, X.shape[1])
        self._torch_model().check_n_features(X.shape[1])
        return self

    def _fit_victim(self, X, y, y_index):
        return fit_victim(self.estimator, X, y, y_index, n_classes=len(self.classes_),
                          device=self.device, seed=self.seed_)

    def _torch_model(self):
        # fit trained a skorch clone on indices into classes_
        return victim_torch_model(self.estimator, self.estimator_, self.classes_)

    def _fit_constraints(self, X):
        """Learn the data-dependent constraints: bounds and per-feature scale."""
        # the data's bounds only when asked for: a pass over X each
        for name, reduce in (("clip_min", np.min), ("clip_max", np.max)):
            value = getattr(self, name)
            if _is_data(value):
                setattr(self, name + "_", reduce(X, axis=0).astype(np.float64))
            else:
                setattr(self, name + "_", check_bound(value, name, X.shape[1]))
        self.feature_scale_ = feature_scale(X, self.eps_scale)

    def _constraint_params(self):
        """Names of the feature-constraint parameters that are set (none: the plain
        eps-ball in the clip box)."""
        if not self._supports_constraints:
            return []
        names = ["eps"] if np.ndim(self.eps) != 0 else []
        names += [name for name in ("eps_scale", "immutable", "integer_features")
                  if getattr(self, name) is not None]
        return names + [name for name in ("clip_min", "clip_max")
                        if _is_data(getattr(self, name))]

    def _constraints(self, *, always=False):
        """The resolved :class:`FeatureConstraints`; None on the unconstrained path
        (no constraint set), unless ``always``."""
        if not self._supports_constraints:
            return None
        n_features = self.n_features_in_
        immutable = check_feature_mask(self.immutable, "immutable", n_features)
        integer = check_feature_mask(self.integer_features, "integer_features", n_features)
        if not always and not self._constraint_params():
            return None
        return FeatureConstraints.resolve(self.eps, self.feature_scale_, immutable, integer,
                                          self.clip_min_, self.clip_max_)

    def _bounds(self, n_features):
        if self._supports_constraints:
            return self.clip_min_, self.clip_max_
        return (check_bound(self.clip_min, "clip_min", n_features),
                check_bound(self.clip_max, "clip_max", n_features))

    def _check_params(self):
        self._validate_params()
        n_features = self.n_features_in_
        constrained = self._supports_constraints
        check_eps(self.eps, n_features, allow_array=constrained)
        resolve_norm(getattr(self, "norm", "inf"))
        lo = None if constrained and _is_data(self.clip_min) else check_bound(
            self.clip_min, "clip_min", n_features)
        hi = None if constrained and _is_data(self.clip_max) else check_bound(
            self.clip_max, "clip_max", n_features)
        if constrained:
            feature_scale(np.zeros((1, n_features)), self.eps_scale)
            check_feature_mask(self.immutable, "immutable", n_features)
            check_feature_mask(self.integer_features, "integer_features", n_features)
        if lo is not None and hi is not None and np.any(np.asarray(lo) > np.asarray(hi)):
            raise ValueError(
                f"clip_min > clip_max ({self.clip_min!r} > {self.clip_max!r}); the lower "
                "bound must not exceed the upper bound."
            )
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a positive integer.")
        resolve_device(getattr(self, "device", "cpu"))
        self._check_attack_params()

    def _check_attack_params(self):
        """Hook for subclass-specific parameter checks."""

    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        lo, hi = self._bounds(X.shape[1])
        if self._supports_constraints:  # bounds learned from data also contain X
            lo = None if _is_data(self.clip_min) else lo
            hi = None if _is_data(self.clip_max) else hi
            constraints = self._constraints()
            if constraints is not None:
                constraints.check_integral(X)
        check_float32_range(X)
        below, above = outside_bounds(X, lo, hi)
        for name, outside, extreme in (("clip_min", below, "min"), ("clip_max", above, "max")):
            if outside.any():
                raise ValueError(self._bounds_message(X, name, extreme, outside))
        return X

    def _bounds_message(self, X, name, extreme, rows):
        """Why X is outside a numeric bound, with the ways out (image and tabular)."""
        value = getattr(X[rows], extreme)()
        side = "below" if name == "clip_min" else "above"
        message = (f"X has values {side} {name}={getattr(self, name)!r} ({extreme} "
                   f"{value:.4g}, in {int(rows.sum())} of {len(X)} rows). The default "
                   "bounds [0, 1] are for images scaled into [0, 1]: scale X into "
                   f"[clip_min, clip_max], or set {name}=None to disable the bound")
        if self._supports_constraints:
            message += (f'. For tabular data, {name}="data" learns per-feature bounds '
                        'from the X given to fit, and eps_scale="std" measures eps in '
                        "each feature's standard deviation")
        return message + "."

    @fill_doc
    def transform(self, X):
        """Adversarial examples against the victim's own predictions.

        The labels are the fitted victim's predictions on ``X`` (no label leaking),
        so ``fit_transform(X, y)`` equals ``fit(X, y).transform(X)``. Use
        :meth:`generate` to attack given labels.

        Parameters
        ----------
        {X_attack}

        Returns
        -------
        {X_adv}
        """
        if is_dask_array(X):
            check_is_fitted(self)
            return map_row_blocks(self.transform, X)
        X = self._validate_X(X)
        return self._attack(X, None)

    @fill_doc
    def generate(self, X, y):
        """Adversarial examples for given labels.

        Untargeted (``targeted=False``): move away from the true labels ``y``.
        Targeted: move towards the target labels ``y``.

        Parameters
        ----------
        {X_attack}
        y : array-like or Dask array of shape (n_samples,)
            True labels, or target labels when ``targeted=True``.

        Returns
        -------
        {X_adv}
        """
        if is_dask_array(X):
            check_is_fitted(self)
            return map_row_blocks(self.generate, X, y)
        X_in = X
        X = self._validate_X(X)
        y = column_or_1d(y, warn=True)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
        X_adv = self._attack(X, self._torch_model().encode(y, n_features=X.shape[1]))
        # like transform: a DataFrame under set_output(transform="pandas")
        return _wrap_data_with_container("transform", X_adv, X_in, self)

    def _attack(self, X, y_index):
        """Attack ``X`` batch by batch; memory is the output + O(batch_size x n_features).

        Each batch goes to the victim's device once, in X's dtype; the attack runs in
        float32 there and the final projection (ball, box, feature constraints) is
        done on the batch before its one copy back into the output array, so no
        full-size temporary is ever allocated.
        """
        model = self._torch_model()
        module, device = model.module, model.device
        constraints = self._constraints()
        norm = resolve_norm(self.norm)
        if constraints is None:
            lo, hi = self._bounds(X.shape[1])
            bounds = {dtype: tuple(None if b is None else torch.as_tensor(b, dtype=dtype,
                                                                          device=device)
                                   for b in (lo, hi))
                      for dtype in {torch.float32, _torch_dtype(X.dtype)}}

            def perturb(x0, y, generator, **keys):
                x_adv = self._perturb(module, x0.to(torch.float32, copy=True), y, generator,
                                      *bounds[torch.float32], **keys)
                return project_exact(x_adv, x0, self.eps, norm, *bounds[x0.dtype])
        else:
            def perturb(x0, y, generator, **keys):
                # attack in scaled coordinates z (x = x0 + weight * z), see _constraints
                x = x0.to(torch.float32, copy=True)
                scaled, z_lo, z_hi = constraints.torch_parts(module, x, device)
                z = self._perturb(scaled, torch.zeros_like(x), y, generator, z_lo, z_hi,
                                  eps=constraints.radius, **keys)
                with torch.no_grad():
                    x_adv = to_numpy(scaled.to_input(z))
                return torch.from_numpy(constraints.project(to_numpy(x0), x_adv, norm))

        generator = make_generator(self.seed_, device)
        y_all = None if y_index is None else torch.as_tensor(y_index, device=device)
        X_adv = np.empty(X.shape, dtype=X.dtype)  # C order: every batch is contiguous
        starts = range(0, len(X), self.batch_size)
        with eval_mode(module):
            for start in tqdm(starts, desc=type(self).__name__, unit="batch",
                              disable=not self.verbose, leave=True):
                stop = start + self.batch_size
                x0 = to_device(X[start:stop], device)
                y = self._batch_labels(module, x0, y_all, start, stop)
                keys = {}
                if self._row_keyed:
                    keys["keys"] = torch.as_tensor(row_keys(self.seed_, X[start:stop]),
                                                   device=device)
                copy_into(X_adv[start:stop], perturb(x0, y, generator, **keys))
        return X_adv

    @staticmethod
    def _batch_labels(module, x, y_all, start, stop):
        """Given label indices of the batch (a slice of ``y_all``, already on the
        device), or the victim's predictions on ``x``."""
        if y_all is not None:
            return y_all[start:stop]
        with torch.no_grad():
            logits = module(x.to(torch.float32))
        return two_class_scores(logits).argmax(1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# what an attack learns from the data it is fitted on (feature constraints)
DATA_STATISTICS = ("clip_min_", "clip_max_", "feature_scale_")


def attack_estimator(attack, estimator, X, y):
    """White-box adversarial examples of ``(X, y)`` against a fitted ``estimator``.

    ``attack`` is cloned and pointed at a frozen ``estimator`` (the estimator is
    neither refitted nor modified), then ``generate(X, y)`` is returned. The clone
    is fitted on ``(X, y)``, so an unfitted ``attack`` learns ``clip_min="data"``,
    ``clip_max="data"`` and ``eps_scale`` statistics from ``X``; a fitted
    ``attack`` keeps the ones it learned (e.g. on the training data), so that
    every scored fold is attacked under the same threat model.
    """
    clone_ = clone(attack).set_params(estimator=FrozenEstimator(estimator)).fit(X, y)
    learned = [name for name in DATA_STATISTICS if hasattr(attack, name)]
    if learned:
        if attack.n_features_in_ != clone_.n_features_in_:
            raise ValueError(
                f"X has {clone_.n_features_in_} features, but the fitted attack "
                f"{type(attack).__name__} learned its bounds and scales on "
                f"{attack.n_features_in_}; fit it on data with X's columns."
            )
        for name in learned:
            setattr(clone_, name, getattr(attack, name))
    return clone_.generate(X, y)
