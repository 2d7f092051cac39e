from ._base import CONSTRAINED_ATTACK_PARAMS, BaseAttack, resolve_norm
from .functional import fgsm


class FGSMTransformer(BaseAttack):
    """Fast Gradient Sign Method as a scikit-learn transformer.

    One gradient step of size ``eps``: the sign of the input gradient of the
    cross-entropy for ``norm="inf"``, the normalised gradient for ``norm=2``.
    ``transform(X)`` attacks the victim's own predictions; ``generate(X, y)``
    attacks given (true or, with ``targeted=True``, target) labels.

    Parameters
    ----------
    estimator : skorch classifier, FrozenEstimator or torch.nn.Module, default=None
        Victim model. A ``FrozenEstimator`` or a ``torch.nn.Module`` (returning
        logits) is used as is; anything else is cloned and fitted in ``fit``. If
        None, a small MLP from :mod:`skrobust.models` is fitted.
    eps : float or array-like of shape (n_features,), default=0.3
        Maximum perturbation in the ``norm`` ball; an array gives each feature its
        own budget. With per-feature budgets ``b = eps * feature_scale_`` (0 for
        ``immutable`` features) the constraint is the weighted ball
        ``||(x - x0) / w||_norm <= r`` with ``r = max(eps)`` and ``w = b / r``:
        ``|x_j - x0_j| <= b_j`` for ``norm="inf"``, an ellipsoid with semi-axes
        ``b_j`` for ``norm=2``; ``step_size`` is measured like ``r``.
    norm : {"inf", 2}, default="inf"
        The Lp norm of the perturbation budget.
    targeted : bool, default=False
        If True, ``generate(X, y)`` moves X towards the classes ``y``.
    clip_min, clip_max : float, array-like of shape (n_features,), "data" or None, \
            default=0.0, 1.0
        Bounds of the input domain; None disables a bound. ``"data"`` learns
        per-feature bounds from the minimum/maximum of the ``X`` given to ``fit``
        (fitted ``clip_min_``/``clip_max_``); an input already outside them is never
        pushed further out. Inputs outside numeric bounds are rejected with a
        ValueError.
    eps_scale : {None, "std", "range"}, default=None
        Measure ``eps`` in units of each feature's standard deviation or range
        learned at ``fit`` (fitted ``feature_scale_``), for features on different
        scales. A feature constant at ``fit`` then never changes.
    immutable : array-like of bool of shape (n_features,) or of int, default=None
        Mask or indices of features that are never changed.
    integer_features : array-like of bool of shape (n_features,) or of int, \
            default=None
        Mask or indices of integer-valued features: their change is rounded
        towards 0 after every step, so they stay integral (inputs must be integral
        there).
    batch_size : int, default=256
        Samples per forward/backward pass; bounds the memory used.
    device : str or torch.device, default="cpu"
        Device on which a victim fitted by this transformer is trained and attacked.
        A frozen victim is attacked on its own device.
    random_state : int, RandomState instance or None, default=None
        Seeds the training of a victim fitted here.
    verbose : int, default=0
        Show a progress bar over batches when > 0.

    Attributes
    ----------
    estimator_ : skorch classifier, FrozenEstimator or torch.nn.Module
        The victim: the given one when frozen or a module, else the fitted clone
        (trained on indices into ``classes_``).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    clip_min_, clip_max_ : float, ndarray of shape (n_features,) or None
        The bounds in use (learned from the data with ``"data"``).
    feature_scale_ : ndarray of shape (n_features,)
        Per-feature unit of ``eps`` (ones when ``eps_scale=None``).
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.

    See Also
    --------
    PGDTransformer : The iterative attack.

    References
    ----------
    I. J. Goodfellow, J. Shlens and C. Szegedy, "Explaining and harnessing
    adversarial examples", ICLR 2015.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import FGSMTransformer
    >>> X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    >>> X = minmax_scale(X)
    >>> attack = FGSMTransformer(eps=0.1, random_state=0).fit(X, y)
    >>> X_adv = attack.generate(X, y)
    >>> bool(abs(X_adv - X).max() <= 0.1 + 1e-9)  # up to float rounding
    True
    """

    _supports_constraints = True
    _parameter_constraints = CONSTRAINED_ATTACK_PARAMS

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", targeted=False,
                 clip_min=0.0, clip_max=1.0, eps_scale=None, immutable=None,
                 integer_features=None, batch_size=256, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
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

    def _perturb(self, module, x, y, generator, clip_min, clip_max, *, eps=None):
        eps = self.eps if eps is None else eps
        return fgsm(module, x, y, eps=eps, norm=resolve_norm(self.norm),
                    targeted=self.targeted, clip_min=clip_min, clip_max=clip_max)
