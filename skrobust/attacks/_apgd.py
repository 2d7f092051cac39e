import numbers

import numpy as np
from sklearn.utils.validation import check_scalar

from ..utils._docstrings import fill_doc
from ._base import ATTACK_PARAMS, BaseAttack, finite, resolve_norm, share
from ._functional_apgd import LOSSES, apgd
from ._runs import max_rows_for


@fill_doc
class APGDTransformer(BaseAttack):
    """Auto-PGD (APGD) as a scikit-learn transformer.

    PGD without a step size to tune: the step starts at ``2 * eps`` and is halved
    per sample at checkpoints when progress stalls (the loss increased on at most
    ``rho`` of the steps since the last checkpoint, or neither the step nor the
    best loss changed; checkpoints, conditions and start as in AutoAttack's code), when the sample also restarts from its best point;
    steps carry momentum ``0.75``. With the cross-entropy loss (``loss="ce"``) this
    is APGD-CE; with the difference-of-logits-ratio loss (``loss="dlr"``), which is
    invariant to rescaling the logits and so resists over-confident or masked
    models, APGD-DLR; with ``n_target_classes=9`` and ``loss="dlr"``, AutoAttack's
    APGD-T: an untargeted attack made of targeted runs towards the best-scoring
    other classes. Costs ``n_iter + 1`` forward+backward passes per sample, restart
    and target class, and only samples not yet fooled are attacked again.

    Parameters
    ----------
    {estimator}
    {eps}
    {norm}
    loss : {"ce", "dlr"}, default="ce"
        Cross-entropy or difference-of-logits-ratio (needs at least 3 classes, 4
        when targeted or with ``n_target_classes``).
    n_iter : int, default=100
        Iterations per run.
    n_restarts : int, default=1
        Runs per sample (and target class), each from a new random start; a restart
        only attacks the samples not yet fooled.
    n_target_classes : int or None, default=None
        If set, run ``n_target_classes`` targeted runs, towards each of the
        highest-scoring other classes of the clean input in turn (at most
        ``n_classes - 1``), on the samples not yet fooled: AutoAttack's APGD-T. The
        goal stays untargeted; ``generate`` takes the true labels.
    {targeted}
        Incompatible with ``n_target_classes``.
    rho : float, default=0.75
        The step size is kept only when the loss increased on more than this
        share of the steps since the last checkpoint.
    momentum : float, default=0.75
        Weight ``alpha`` of the new step against the previous move.
    random_start : bool, default=True
        Start each run from a random point on the surface of the ``eps``-ball, as
        AutoAttack does. A row's starts are drawn from a key that hashes
        ``random_state`` and the row's values, so its output does not depend on the
        other rows, their order, ``batch_size`` or the device.
    {clip}
    {runtime_starts}

    {attributes}
    {seed_}
        Random starts use it.

    See Also
    --------
    PGDTransformer : PGD with a fixed step size.
    skrobust.evaluation.evaluate_robustness : The worst case over APGD-CE, APGD-T
        and FGSM.

    Notes
    -----
    Samples that the victim already misclassifies (or, when targeted, already puts
    in their target class) are returned unchanged. Otherwise the output is the
    first point found that fools the victim, else the point of highest loss.

    References
    ----------
    F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.

    Examples
    --------
    {example_data}
    >>> from skrobust.attacks import APGDTransformer
    >>> attack = APGDTransformer(eps=0.1, n_iter=10, random_state=0).fit(X, y)
    >>> X_adv = attack.generate(X, y)
    >>> round(float(abs(X_adv - X).max()), 6)
    0.1
    """

    _parameter_constraints = {
        **ATTACK_PARAMS,
        "loss": "no_validation",  # _check_attack_params: one of LOSSES
        "n_iter": [finite(1, integer=True)],
        "n_restarts": [finite(1, integer=True)],
        "n_target_classes": [finite(1, integer=True), None],
        "rho": [share()],
        "momentum": [share()],
        "random_start": ["boolean"],
    }

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", loss="ce", n_iter=100,
                 n_restarts=1, n_target_classes=None, targeted=False, rho=0.75,
                 momentum=0.75, random_start=True, clip_min=0.0, clip_max=1.0,
                 batch_size=256, device="cpu", random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
        self.loss = loss
        self.n_iter = n_iter
        self.n_restarts = n_restarts
        self.n_target_classes = n_target_classes
        self.targeted = targeted
        self.rho = rho
        self.momentum = momentum
        self.random_start = random_start
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_attack_params(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not supported; use 'ce' or 'dlr'.")
        check_scalar(self.n_iter, "n_iter", numbers.Integral, min_val=1)
        check_scalar(self.n_restarts, "n_restarts", numbers.Integral, min_val=1)
        if self.n_target_classes is not None:
            check_scalar(self.n_target_classes, "n_target_classes", numbers.Integral,
                         min_val=1)
            if self.targeted:
                raise ValueError(
                    "n_target_classes runs an untargeted attack through targeted runs; "
                    "set targeted=False, or n_target_classes=None to attack given targets."
                )
        check_scalar(self.rho, "rho", numbers.Real, min_val=0.0, max_val=1.0)
        check_scalar(self.momentum, "momentum", numbers.Real, min_val=0.0, max_val=1.0)
        if not isinstance(self.targeted, (bool, np.bool_)):
            raise ValueError(f"targeted={self.targeted!r} must be a bool.")

    def _perturb(self, module, x, y, generator, clip_min, clip_max, *, keys=None):
        return apgd(module, x, y, eps=self.eps, norm=resolve_norm(self.norm),
                    loss=self.loss, n_iter=self.n_iter, n_restarts=self.n_restarts,
                    targeted=self.targeted, n_target_classes=self.n_target_classes,
                    rho=self.rho, alpha=self.momentum, random_start=self.random_start,
                    clip_min=clip_min, clip_max=clip_max, generator=generator,
                    max_rows=max_rows_for(x.device, self.batch_size), keys=keys)
