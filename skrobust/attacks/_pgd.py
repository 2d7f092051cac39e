from ._base import CONSTRAINED_ATTACK_PARAMS, BaseAttack, finite, resolve_norm
from .functional import pgd


class PGDTransformer(BaseAttack):
    """Projected Gradient Descent (and BIM) as a scikit-learn transformer.

    ``n_iter`` steps of size ``step_size`` along the sign (``norm="inf"``) or the
    normalised direction (``norm=2``) of the input gradient of the cross-entropy,
    each followed by a projection onto the ``eps``-ball and ``[clip_min, clip_max]``.
    With ``random_start=False`` this is the Basic Iterative Method (BIM); with
    ``random_start=True`` it is Madry et al.'s PGD. Costs ``n_iter`` forward+backward
    passes per sample and restart.

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
    step_size : float, default=0.01
        Size of each step in the ``norm``.
    n_iter : int, default=40
        Number of gradient steps.
    norm : {"inf", 2}, default="inf"
        The Lp norm of the perturbation budget.
    random_start : bool, default=False
        Start each restart from a uniform random point of the ``eps``-ball. The start
        is drawn per batch, so outputs then depend on the order of the rows.
    n_restarts : int, default=1
        Number of restarts; a sample keeps the first restart that fools the victim.
        Only useful with ``random_start=True``.
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
        Seeds the random starts and the training of a victim fitted here.
    verbose : int, default=0
        Show a progress bar over batches when > 0.

    Attributes
    ----------
    estimator_ : skorch classifier, FrozenEstimator or torch.nn.Module
        The victim: the given one when frozen or a module, else the fitted clone.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.
    clip_min_, clip_max_ : float, ndarray of shape (n_features,) or None
        The bounds in use (learned from the data with ``"data"``).
    feature_scale_ : ndarray of shape (n_features,)
        Per-feature unit of ``eps`` (ones when ``eps_scale=None``).
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``; random starts use it.

    See Also
    --------
    FGSMTransformer : The single-step attack.

    References
    ----------
    A. Kurakin, I. Goodfellow and S. Bengio, "Adversarial examples in the physical
    world", ICLR workshop 2017 (BIM).
    A. Madry, A. Makelov, L. Schmidt, D. Tsipras and A. Vladu, "Towards deep learning
    models resistant to adversarial attacks", ICLR 2018 (PGD).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import PGDTransformer
    >>> X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    >>> X = minmax_scale(X)
    >>> attack = PGDTransformer(eps=0.1, step_size=0.02, n_iter=10, random_state=0)
    >>> X_adv = attack.fit(X, y).generate(X, y)
    >>> X_adv.shape
    (100, 5)
    """

    _supports_constraints = True
    _parameter_constraints = {
        **CONSTRAINED_ATTACK_PARAMS,
        "step_size": [finite(0)],
        "n_iter": [finite(0, integer=True)],
        "random_start": ["boolean"],
        "n_restarts": [finite(1, integer=True)],
    }

    def __init__(self, estimator=None, *, eps=0.3, step_size=0.01, n_iter=40,
                 norm="inf", random_start=False, n_restarts=1, targeted=False,
                 clip_min=0.0, clip_max=1.0, eps_scale=None, immutable=None,
                 integer_features=None, batch_size=256, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.step_size = step_size
        self.n_iter = n_iter
        self.norm = norm
        self.random_start = random_start
        self.n_restarts = n_restarts
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
        return pgd(module, x, y, eps=eps, step_size=self.step_size,
                   n_iter=self.n_iter, norm=resolve_norm(self.norm),
                   targeted=self.targeted, random_start=self.random_start,
                   n_restarts=self.n_restarts, clip_min=clip_min, clip_max=clip_max,
                   generator=generator)
