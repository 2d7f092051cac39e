from ..utils._docstrings import fill_doc
from ._base import CONSTRAINED_ATTACK_PARAMS, BaseAttack, resolve_norm
from .functional import fgsm


@fill_doc
class FGSMTransformer(BaseAttack):
    """Fast Gradient Sign Method as a scikit-learn transformer.

    One gradient step of size ``eps``: the sign of the input gradient of the
    cross-entropy for ``norm="inf"``, the normalised gradient for ``norm=2``.
    ``transform(X)`` attacks the victim's own predictions; ``generate(X, y)``
    attacks given (true or, with ``targeted=True``, target) labels.

    Parameters
    ----------
    {estimator}
    {eps_per_feature}
    {norm}
    {targeted}
    {feature_constraints}
    {runtime}

    {attributes}
    {fitted_constraints_}
    {seed_}

    See Also
    --------
    PGDTransformer : The iterative attack.

    References
    ----------
    I. J. Goodfellow, J. Shlens and C. Szegedy, "Explaining and harnessing
    adversarial examples", ICLR 2015.

    Examples
    --------
    {example_data}
    >>> from skrobust.attacks import FGSMTransformer
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
