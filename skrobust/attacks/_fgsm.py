from ._base import BaseAttack, resolve_norm
from ._functional import fgsm


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
    eps : float, default=0.3
        Maximum perturbation in the ``norm`` ball.
    norm : {"inf", 2}, default="inf"
        The Lp norm of the perturbation budget.
    targeted : bool, default=False
        If True, ``generate(X, y)`` moves X towards the classes ``y``.
    clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
        Bounds of the input domain; None disables a bound. Inputs outside the bounds
        are rejected with a ValueError.
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
    >>> bool(abs(X_adv - X).max() <= 0.1)
    True
    """

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", targeted=False,
                 clip_min=0.0, clip_max=1.0, batch_size=256, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
        self.targeted = targeted
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _perturb(self, module, x, y, generator, clip_min, clip_max):
        return fgsm(module, x, y, eps=self.eps, norm=resolve_norm(self.norm),
                    targeted=self.targeted, clip_min=clip_min, clip_max=clip_max)
