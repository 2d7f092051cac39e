from ..utils._docstrings import fill_doc
from ._base import ATTACK_PARAMS, BaseAttack, finite, resolve_norm, share
from ._functional_fab import fab
from ._runs import max_rows_for


@fill_doc
class FABTransformer(BaseAttack):
    """Fast Adaptive Boundary attack (FAB, FAB-T) as a scikit-learn transformer.

    A minimum-norm attack without a step size to tune (Croce & Hein, 2020): each
    iteration linearises the decision boundary at the current point, projects
    both the current point and the clean one onto it (exactly, inside the
    ``[clip_min, clip_max]`` box), moves to a combination of the two projections
    biased towards the clean point's (weight at most ``alpha_max``, overshoot
    ``eta``), and steps back towards the clean point by the factor ``beta``
    whenever it has crossed the boundary. So it finds small perturbations where
    gradient ascent on a loss stalls (flat or rescaled losses). With
    ``n_target_classes=9`` (the default) this is AutoAttack's FAB-T: targeted runs
    towards each of the highest-scoring other classes of the clean input in turn,
    on the samples not yet fooled, each linearising only the boundary to its
    target (one forward and backward pass per iteration). ``n_target_classes=None``
    is untargeted FAB (the nearest boundary of all classes: one backward pass per
    class and iteration).

    A sample is done, and leaves the batch, as soon as a point within ``eps``
    reaches the goal; the output is that point (FAB's trajectory up to it is the
    reference's, so a sample is fooled exactly when the reference's smallest
    perturbation is within ``eps``), else the clean input.

    Parameters
    ----------
    {estimator}
    {eps}
        An adversarial point counts when it lies in that ball.
    {norm}
        FAB's projections use the same norm.
    n_iter : int, default=100
        Iterations per run (AutoAttack: 100).
    n_restarts : int, default=1
        Runs per sample (and target class), each on the samples not yet fooled.
        The first starts at the clean input, each further one at a random point at
        distance ``eps / 2``, as in AutoAttack.
    n_target_classes : int or None, default=9
        FAB-T: run towards each of the ``n_target_classes`` highest-scoring other
        classes of the clean input in turn (at most ``n_classes - 1``). The goal
        stays untargeted; ``generate`` takes the true labels. None: untargeted FAB.
    targeted : bool, default=False
        If True, ``generate(X, y)`` moves X towards the classes ``y``. Needs
        ``n_target_classes=None``. Each iteration linearises the boundary between
        the target and the class that beats it by the widest linearised margin
        (one backward pass per class); a target hemmed in by several competing
        classes can stay out of reach, and the input then comes back unchanged.
    alpha_max : float, default=0.1
        Largest weight of the clean point's projection in a step, in [0, 1].
    eta : float, default=1.05
        Overshoot of the projections (> 0; >= 1 crosses the linearised boundary).
    beta : float, default=0.9
        Backward step towards the clean point after crossing, in (0, 1].
    {clip}
    {batch_size}
    {device}
    random_state : int, RandomState instance or None, default=None
        Seeds the random restarts (none with ``n_restarts=1``; a row's are drawn
        from a key that hashes the seed and the row's values, so its output does not
        depend on the other rows) and the training of a victim fitted here.
    {verbose}

    {attributes}
    {seed_}
        Random restarts use it.

    See Also
    --------
    APGDTransformer : Auto-PGD (APGD-CE, APGD-T), AutoAttack's other white-box attacks.
    SquareAttackTransformer : AutoAttack's black-box attack.

    Notes
    -----
    Samples that the victim already misclassifies (or, when targeted, already puts
    in their target class) are returned unchanged. With ``n_restarts=1`` the
    attack is deterministic and each row's output is independent of the other
    rows; restarts draw their random starts per batch.

    References
    ----------
    F. Croce and M. Hein, "Minimally distorted adversarial examples with a fast
    adaptive boundary attack", ICML 2020.

    Examples
    --------
    {example_data}
    >>> from skrobust.attacks import FABTransformer
    >>> attack = FABTransformer(eps=0.1, n_iter=10, random_state=0).fit(X, y)
    >>> X_adv = attack.generate(X, y)
    >>> bool(abs(X_adv - X).max() <= 0.1)
    True
    """

    _parameter_constraints = {
        **ATTACK_PARAMS,
        "n_iter": [finite(1, integer=True)],
        "n_restarts": [finite(1, integer=True)],
        "n_target_classes": [finite(1, integer=True), None],
        "alpha_max": [share()],
        "eta": [finite(0, closed="neither")],
        "beta": [share(closed="right")],
    }

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", n_iter=100, n_restarts=1,
                 n_target_classes=9, targeted=False, alpha_max=0.1, eta=1.05, beta=0.9,
                 clip_min=0.0, clip_max=1.0, batch_size=256, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
        self.n_iter = n_iter
        self.n_restarts = n_restarts
        self.n_target_classes = n_target_classes
        self.targeted = targeted
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_attack_params(self):
        # ranges and types: _parameter_constraints; only the combination is left
        if self.n_target_classes is not None and self.targeted:
            raise ValueError(
                "n_target_classes runs an untargeted attack through targeted runs; "
                "set n_target_classes=None to attack given targets with targeted=True."
            )

    @property
    def _row_keyed(self):
        # keys only for random restarts (the first run starts at x): no hashing for nothing
        return self.n_restarts > 1

    def _perturb(self, module, x, y, generator, clip_min, clip_max, *, keys=None):
        return fab(module, x, y, eps=self.eps, norm=resolve_norm(self.norm),
                   n_iter=self.n_iter, n_restarts=self.n_restarts, targeted=self.targeted,
                   n_target_classes=self.n_target_classes, alpha_max=self.alpha_max,
                   eta=self.eta, beta=self.beta, clip_min=clip_min, clip_max=clip_max,
                   generator=generator, max_rows=max_rows_for(x.device, self.batch_size),
                   keys=keys)
