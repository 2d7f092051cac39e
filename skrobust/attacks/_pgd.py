from ..utils._docstrings import fill_doc
from ._base import CONSTRAINED_ATTACK_PARAMS, BaseAttack, finite, resolve_norm
from .functional import pgd


@fill_doc
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
    {estimator}
    {eps_per_feature}
    step_size : float, default=0.01
        Size of each step in the ``norm``.
    n_iter : int, default=40
        Number of gradient steps.
    {norm}
    random_start : bool, default=False
        Start each restart from a uniform random point of the ``eps``-ball. A row's
        start is drawn from a key hashing ``random_state`` and the row's values, so
        its output does not depend on the other rows, their order or ``batch_size``.
    n_restarts : int, default=1
        Number of restarts; a sample keeps the first restart that fools the victim.
        Only useful with ``random_start=True``.
    {targeted}
    {feature_constraints}
    {runtime_starts}

    {attributes}
    {fitted_constraints_}
    {seed_}
        Random starts use it.

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
    {example_data}
    >>> from skrobust.attacks import PGDTransformer
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

    def _perturb(self, module, x, y, generator, clip_min, clip_max, *, eps=None, keys=None):
        eps = self.eps if eps is None else eps
        return pgd(module, x, y, eps=eps, step_size=self.step_size,
                   n_iter=self.n_iter, norm=resolve_norm(self.norm),
                   targeted=self.targeted, random_start=self.random_start,
                   n_restarts=self.n_restarts, clip_min=clip_min, clip_max=clip_max,
                   generator=generator, keys=keys)
