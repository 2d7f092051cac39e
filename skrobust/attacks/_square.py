"""Square Attack: a score-based black-box attack that needs only ``predict_proba``."""

import hashlib
import numbers

import numpy as np
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_scalar
from tqdm.auto import tqdm

from ..models._skorch import is_skorch_net
from ..utils._differentiable import TorchModel, as_torch_model
from ..utils._torch import eval_mode, module_device, to_tensor
from ._base import CONSTRAINED_ATTACK_PARAMS, BaseAttack, _needs_fit, finite, share

_P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
               (6000, 128), (8000, 256))


def p_schedule(p_init, iteration, n_queries):
    """Share of the features changed at ``iteration``: Andriushchenko et al.'s
    piecewise-constant schedule, halving ``p_init`` at fixed fractions of the budget."""
    it = int(iteration / n_queries * 10000)
    for bound, divisor in _P_SCHEDULE:
        if it <= bound:
            return p_init / divisor
    return p_init / 512


def _row_generators(seed, X):
    """One numpy Generator per row, seeded by ``seed`` and the row's values."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    gens = []
    for row in X:
        digest = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        words = np.frombuffer(digest, dtype=np.uint32)
        gens.append(np.random.default_rng([int(seed), *map(int, words)]))
    return gens


class SquareAttackTransformer(BaseAttack):
    """Square Attack (L-inf) as a scikit-learn transformer: black-box, score-based.

    Random search that needs only the victim's scores (``predict_proba``, else
    ``decision_function``), so non-differentiable models (random forests, gradient
    boosting, pipelines with one-hot encoders) can be attacked. Each sample starts
    from ``x + eps * s`` with random signs ``s`` per feature; each query then sets a
    random subset of the features to ``x_j +- eps_j`` and keeps the change if the
    margin ``score(y) - max_{k != y} score(k)`` (on log-probabilities) does not
    increase. The subset holds a share ``p`` of the features, decreasing from
    ``p_init`` on the paper's schedule. For images the paper's subset is a square
    patch of pixels; for tabular data, where neighbouring columns are unrelated,
    it is a random subset of features. A sample stops once the victim is fooled.

    Randomness is drawn per row from ``random_state`` and the row's values, so a
    row's result does not depend on the other rows, their order or the chunking
    (in-memory and Dask results are equal). Supports the feature constraints of
    :class:`PGDTransformer` (per-feature ``eps``, ``eps_scale``, ``immutable``,
    ``integer_features``, ``clip_min="data"``).

    Parameters
    ----------
    estimator : classifier, FrozenEstimator or torch.nn.Module, default=None
        Victim: any classifier with ``predict_proba`` or ``decision_function``
        (scikit-learn, skorch, skrobust) or a torch module returning logits. A
        ``FrozenEstimator`` or a module is used as is; anything else is cloned and
        fitted in ``fit``. If None, a small MLP from :mod:`skrobust.models`.
    eps : float or array-like of shape (n_features,), default=0.3
        L-inf budget, per feature when an array (see :class:`PGDTransformer`).
    n_queries : int, default=1000
        Queries of the victim per sample (including the first one).
    p_init : float, default=0.3
        Initial share of the features changed by a query, in (0, 1].
    targeted : bool, default=False
        If True, ``generate(X, y)`` moves X towards the classes ``y``.
    clip_min, clip_max : float, array-like of shape (n_features,), "data" or None, \
            default=0.0, 1.0
        Bounds of the input domain, as in :class:`PGDTransformer`.
    eps_scale : {None, "std", "range"}, default=None
        Measure ``eps`` in units of each feature's standard deviation or range.
    immutable : array-like of bool of shape (n_features,) or of int, default=None
        Mask or indices of features that are never changed.
    integer_features : array-like of bool of shape (n_features,) or of int, \
            default=None
        Mask or indices of integer-valued features, kept integral.
    batch_size : int, default=1024
        Samples attacked together (one victim call per query and batch).
    device : str or torch.device, default="cpu"
        Device on which a default victim fitted here is trained.
    random_state : int, RandomState instance or None, default=None
        Seeds the random search (and the training of a victim fitted here).
    verbose : int, default=0
        Show a progress bar over queries when > 0.

    Attributes
    ----------
    estimator_ : classifier, FrozenEstimator or torch.nn.Module
        The victim.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    clip_min_, clip_max_ : float, ndarray of shape (n_features,) or None
        The bounds in use.
    feature_scale_ : ndarray of shape (n_features,)
        Per-feature unit of ``eps``.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.

    See Also
    --------
    PGDTransformer : The white-box gradient attack, for differentiable victims.

    References
    ----------
    M. Andriushchenko, F. Croce, N. Flammarion and M. Hein, "Square Attack: a
    query-efficient black-box adversarial attack via random search", ECCV 2020.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import SquareAttackTransformer
    >>> X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    >>> X = minmax_scale(X)
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0)
    >>> attack = SquareAttackTransformer(forest, eps=0.1, n_queries=50, random_state=0)
    >>> X_adv = attack.fit(X, y).generate(X, y)
    >>> bool(abs(X_adv - X).max() <= 0.1 + 1e-9)  # up to float rounding
    True
    """

    _supports_constraints = True
    _parameter_constraints = {
        **CONSTRAINED_ATTACK_PARAMS,
        "n_queries": [finite(1, integer=True)],
        "p_init": [share(closed="right")],
    }

    def __init__(self, estimator=None, *, eps=0.3, n_queries=1000, p_init=0.3,
                 targeted=False, clip_min=0.0, clip_max=1.0, eps_scale=None,
                 immutable=None, integer_features=None, batch_size=1024, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.n_queries = n_queries
        self.p_init = p_init
        self.targeted = targeted
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.eps_scale = eps_scale
        self.immutable = immutable
        self.integer_features = integer_features
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_attack_params(self):
        check_scalar(self.n_queries, "n_queries", numbers.Integral, min_val=1)
        check_scalar(self.p_init, "p_init", numbers.Real, min_val=0.0, max_val=1.0,
                     include_boundaries="right")

    def _fit_victim(self, X, y, y_index):
        estimator = self.estimator
        if (_needs_fit(estimator) and estimator is not None and not is_skorch_net(estimator)
                and not hasattr(estimator, "_skrobust_torch_model")):
            return clone(estimator).fit(X, y)
        return super()._fit_victim(X, y, y_index)

    def _victim(self):
        victim = self.estimator_
        while isinstance(victim, FrozenEstimator):
            victim = victim.estimator
        return victim

    def _torch_model(self):
        """Only the label encoding is used: ``classes`` of the score columns."""
        victim = self._victim()
        if isinstance(victim, torch.nn.Module) or is_skorch_net(victim):
            return super()._torch_model()
        if not (hasattr(victim, "predict_proba") or hasattr(victim, "decision_function")):
            raise TypeError(
                f"estimator={type(victim).__name__} has neither predict_proba nor "
                "decision_function: the Square attack needs class scores."
            )
        return TorchModel(None, torch.device("cpu"), np.asarray(victim.classes_))

    def _scores(self, X):
        """Class scores (log-probabilities, or decision values) of shape (n, n_classes)."""
        victim = self._victim()
        if isinstance(victim, torch.nn.Module):
            with eval_mode(victim), torch.no_grad():
                logits = victim(to_tensor(X, module_device(victim)))
            if logits.shape[1] == 1:
                logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
            return torch.log_softmax(logits.double(), dim=1).cpu().numpy()
        if is_skorch_net(victim):
            X = X.astype(np.float32)
        if hasattr(victim, "predict_proba"):
            return np.log(np.clip(np.asarray(victim.predict_proba(X), dtype=np.float64),
                                  1e-12, None))
        scores = np.asarray(victim.decision_function(X), dtype=np.float64)
        return np.column_stack([np.zeros(len(X)), scores]) if scores.ndim == 1 else scores

    def _margin(self, X, y):
        scores = self._scores(X)
        rows = np.arange(len(X))
        own = scores[rows, y]
        scores[rows, y] = -np.inf
        other = scores.max(axis=1)
        return other - own if self.targeted else own - other

    def _attack(self, X, y_index):
        constraints = self._constraints(always=True)
        X_adv = np.empty_like(X)
        for start in range(0, len(X), self.batch_size):
            block = X[start:start + self.batch_size]
            labels = None if y_index is None else y_index[start:start + self.batch_size]
            X_adv[start:start + len(block)] = self._search(block, labels, constraints)
        return X_adv

    def _search(self, X, y, constraints):
        if y is None:
            y = self._scores(X).argmax(axis=1)
        budget = np.where(constraints.integer if constraints.integer is not None else False,
                          np.floor(constraints.budget + 1e-9), constraints.budget)
        mutable = np.flatnonzero(budget > 0)
        n_mut = len(mutable)
        if n_mut == 0 or len(X) == 0:
            return X.copy()
        gens = _row_generators(self.seed_, X)
        chunk = max(1, min(100, 4096 // n_mut))  # fixed per row: draws do not depend on n

        def draw(rows):
            return np.stack([gens[r].random((chunk, 2, n_mut), dtype=np.float32)
                             for r in rows])

        rows = np.arange(len(X))
        draws = draw(rows)
        signs = np.where(draws[:, 0, 0, :] < 0.5, -1.0, 1.0)
        delta = np.zeros(X.shape)
        delta[:, mutable] = signs * budget[mutable]
        X_best = constraints.project(X, X + delta, "inf")
        margin = self._margin(X_best, y)
        for it in tqdm(range(1, self.n_queries), desc=type(self).__name__, unit="query",
                       disable=not self.verbose, leave=True):
            active = np.flatnonzero(margin >= 0)
            if len(active) == 0:
                break
            step = it % chunk
            if step == 0:
                draws[active] = draw(active)
            k = max(1, int(round(p_schedule(self.p_init, it, self.n_queries) * n_mut)))
            k = min(k, n_mut)
            u = draws[active, step]
            chosen = np.argpartition(u[:, 0, :], k - 1, axis=1)[:, :k]
            flip = np.take_along_axis(u[:, 1, :], chosen, axis=1) < 0.5
            cols = mutable[chosen]
            x0 = X[active]
            candidate = X_best[active].astype(np.float64, copy=True)
            r = np.arange(len(active))[:, None]
            candidate[r, cols] = x0[r, cols] + np.where(flip, -1.0, 1.0) * budget[cols]
            candidate = constraints.project(x0, candidate, "inf")
            new_margin = self._margin(candidate, y[active])
            better = new_margin <= margin[active]
            X_best[active[better]] = candidate[better]
            margin[active[better]] = new_margin[better]
        return X_best
