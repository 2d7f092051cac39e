"""A two-stage adaptive attack on classifiers with a reject option (DNR and alike).

Rejection defenses such as Deep Neural Rejection score an input by how typical its
internal representations are; a gradient attack on the defended scores from the
clean input falls into the flat, far-from-data region where every score is low and
the input is rejected, and stays there. An adaptive attack (Tramer et al., 2020)
first moves the input deep into a target class of the *undefended* network, where
the representations look like those of that class, and only then maximises the
reject-aware margin of the defended scores.
"""

import numpy as np
import torch

from ..utils._docstrings import fill_doc
from ._base import ATTACK_PARAMS, BaseAttack, finite, resolve_norm
from ._functional_apgd import apgd_run, apgd_start
from ._pgd_exp import nearest_other_class, reject_margin_loss, reject_threshold
from .functional import two_class_scores


def _targeted_margin(logits, target):
    """``z_t - max_{k != t} z_k``: positive when ``target`` wins (on any network)."""
    return reject_margin_loss(two_class_scores(logits), target, targeted=True)


class _Layers(torch.nn.Module):
    """The defended layers' outputs of ``module``, each scaled to unit mean square."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return torch.cat([z / z.shape[1] ** 0.5 for z in self.module.layer_outputs(x)], dim=1)


def _never(scores):
    return torch.zeros(len(scores), dtype=torch.bool, device=scores.device)


def adaptive_reject_attack(module, x, y, *, eps, norm="inf", n_iter=100, n_target_classes=3,
                           pool_x=None, pool_y=None, random_start=True, clip_min=None,
                           clip_max=None, generator=None, keys=None):
    """Two-stage targeted attack on a classifier with a reject option; worst case.

    For each of the ``n_target_classes`` best-scoring other classes ``t`` of each
    sample still standing:

    1. *stage 1*, the starting points: (a) APGD on the targeted margin
       ``z_t - max_{k != t} z_k`` of the undefended network's logits
       (``module.net``), and (b) with ``pool_x``, feature mimicry: APGD pulling the
       defended layers (``module.layer_outputs``) towards those of the nearest
       (L2) pool sample of class ``t``;
    2. *stage 2*, from each stage-1 point: APGD on the reject-aware targeted margin
       of the defended scores, ``s_t - max(max_{k != t} s_k, threshold)``
       (:func:`reject_margin_loss`), positive exactly when the input is accepted as
       ``t``.

    A sample falls as soon as one point (of either stage) is accepted and
    misclassified. Without ``module.net`` stage 1a uses the defended scores
    themselves; without ``layer_outputs`` or a pool, stage 1b is skipped.

    Parameters
    ----------
    module : torch.nn.Module
        Maps inputs to class scores, with the reject threshold on the best score
        as ``module.reject_threshold`` (None or ``-inf``: no rejection).
    x : Tensor of shape (n_samples, ...)
        Inputs.
    y : Tensor of shape (n_samples,)
        True label indices.
    eps : float
        Radius of the ``norm`` ball.
    norm : {"inf", 2}, default="inf"
        Norm of the budget.
    n_iter : int, default=100
        APGD iterations of each stage.
    n_target_classes : int, default=3
        Target classes per sample, best-scoring first (on the undefended logits).
    pool_x, pool_y : Tensor or None, default=None
        Samples of known classes (label indices) for feature mimicry.
    random_start : bool, default=True
        Start stage 1 from a random point on the surface of the ball (AutoAttack's
        start), else from ``x``.
    clip_min, clip_max : float, Tensor or None
        Input bounds.
    generator : torch.Generator, optional
        Source of the random starts of stage 1.
    keys : Tensor of int64 of shape (n_samples,) or None, default=None
        Per-row keys: each row's random starts come from its key, the target rank
        and the stage (:func:`~skrobust.attacks.functional.start_noise`) instead of
        ``generator``, so a row's result does not depend on the other rows.

    Returns
    -------
    x_adv : Tensor of the shape of ``x``
        The first point found that is accepted and misclassified; for robust
        samples, the stage-2 point of highest margin.

    References
    ----------
    F. Tramer, N. Carlini, W. Brendel and A. Madry, "On adaptive attacks to
    adversarial example defenses", NeurIPS 2020. S. Sabour, Y. Cao, F. Faghri and
    D. J. Fleet, "Adversarial manipulation of deep representations", ICLR 2016.
    """
    threshold = reject_threshold(module)
    net = getattr(module, "net", module)
    layers = _Layers(module) if pool_x is not None and hasattr(module, "layer_outputs") else None
    common = dict(eps=eps, norm=norm, n_iter=n_iter, clip_min=clip_min, clip_max=clip_max)

    def broken(scores, y_true):
        # accepted and misclassified
        return reject_margin_loss(scores, y_true, threshold=threshold) > 0

    with torch.no_grad():
        scores = module(x)
        logits = two_class_scores(net(x))
    n_classes = two_class_scores(scores).shape[1]
    x_adv = x.clone()
    standing = ~broken(scores, y)
    best = torch.full((len(x),), float("-inf"), dtype=torch.float64, device=x.device)
    order = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)

    def first_point(rows, counter):
        if random_start:
            return apgd_start(x[rows], eps, norm, generator, clip_min, clip_max,
                              keys=None if keys is None else keys[rows], counter=counter)
        return x[rows].clone()

    def stage_two(rows, start, target):
        """Reject-aware targeted APGD from ``start``; records successes and best points."""
        x_rows, y_rows = x[rows], y[rows]
        with torch.no_grad():
            hit = broken(module(start), y_rows)
        # a sample accepted as misclassified leaves the batch (per_sample rows)
        out, reached, margin = apgd_run(
            module, x_rows, start,
            lambda s, target, y_true: reject_margin_loss(s, target, threshold=threshold,
                                                         targeted=True),
            lambda s, target, y_true: broken(s, y_true),
            per_sample=dict(target=target, y_true=y_rows), **common)
        out = torch.where(hit.view(-1, *([1] * (x.dim() - 1))), start, out)
        fell = hit | reached
        keep = fell | (margin.double() > best[rows])
        x_adv[rows[keep]] = out[keep]
        best[rows] = torch.where(keep, margin.double(), best[rows])
        standing[rows[fell]] = False

    for rank in range(min(n_target_classes, n_classes - 1)):
        rows = standing.nonzero().flatten()
        if len(rows) == 0:
            break
        target = order[rows, rank]
        # stage 1a: deep into the target class of the undefended network
        x_rows = x[rows]
        start = apgd_run(net, x_rows, first_point(rows, (rank, 0)),
                         lambda z: _targeted_margin(z, target), _never, **common)[0]
        stage_two(rows, start, target)
        if layers is None:
            continue
        # stage 1b: mimic the defended representations of a sample of the target class
        alive = standing[rows]
        rows, target = rows[alive], target[alive]
        if len(rows) == 0:
            continue
        x_rows = x[rows]
        with torch.no_grad():
            ref = layers(nearest_other_class(x_rows, target, pool_x, pool_y, targeted=True))
        start = apgd_run(layers, x_rows, first_point(rows, (rank, 1)),
                         lambda f: -((f - ref) ** 2).sum(1), _never, **common)[0]
        stage_two(rows, start, target)
    return x_adv.detach()


@fill_doc
class AdaptiveRejectionTransformer(BaseAttack):
    """Two-stage adaptive attack on a classifier with a reject option, as a transformer.

    Built for :class:`~skrobust.defenses.DNRClassifier` and defenses like it, which
    a gradient attack on the defended scores alone over-reports: for each of the
    ``n_target_classes`` best-scoring other classes, stage 1 moves the input deep
    into the target class of the *undefended* network (a targeted margin attack
    on its logits) or pulls the defended layers towards those of a sample of that
    class seen in ``fit`` (feature mimicry); stage 2 then maximises the
    reject-aware margin of the defended scores from there. A sample falls when any
    point is accepted and misclassified (see :func:`adaptive_reject_attack`).
    Every stage is APGD (no step size to tune), so both norms are supported.
    :func:`~skrobust.evaluation.evaluate_robustness` and
    :func:`~skrobust.evaluation.security_curve` add it to the default ensemble
    when ``reject_label`` is set.

    Parameters
    ----------
    estimator : DNRClassifier, FrozenEstimator, torch.nn.Module or skorch classifier, default=None
        Victim. Its torch model should expose ``net`` (the undefended logits
        network), ``layer_outputs`` (the defended representations) and
        ``reject_threshold``, as DNR's does; without them the attack falls back
        to the defended scores and skips feature mimicry. If None, a small MLP is
        fitted.
    {eps}
    {norm}
    n_iter : int, default=100
        APGD iterations of each stage.
    n_target_classes : int, default=3
        Target classes tried per sample (at most ``n_classes - 1``); each costs up
        to two stage-1 and two stage-2 runs on the samples still standing.
    feature_mimicry : bool, default=True
        Also start stage 2 from feature mimicry towards the nearest sample of the
        target class among the data given to ``fit``.
    random_start : bool, default=True
        Start stage 1 from a random point on the surface of the ``eps``-ball, as
        APGD does. A row's starts are drawn from a key hashing ``random_state``
        and the row's values, so its output does not depend on the other rows,
        their order or ``batch_size``; False: stage 1 starts at the input.
    {clip}
    {runtime_starts}

    {attributes}
    {seed_}
    X_pool_, y_pool_ : ndarray
        The data of ``fit`` (label indices), the targets of feature mimicry; only
        with ``feature_mimicry=True``.

    See Also
    --------
    PGDExpTransformer : The reject-aware margin from the clean input only.

    References
    ----------
    F. Tramer, N. Carlini, W. Brendel and A. Madry, "On adaptive attacks to
    adversarial example defenses", NeurIPS 2020.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import AdaptiveRejectionTransformer
    >>> X, y = make_classification(n_samples=60, n_features=5, n_informative=3,
    ...                            n_classes=3, random_state=0)
    >>> X = minmax_scale(X)
    >>> attack = AdaptiveRejectionTransformer(eps=0.2, n_iter=5, random_state=0)
    >>> X_adv = attack.fit(X, y).generate(X, y)
    >>> bool(abs(X_adv - X).max() <= 0.2)
    True
    """

    _parameter_constraints = {
        **{name: rule for name, rule in ATTACK_PARAMS.items() if name != "targeted"},
        "n_iter": [finite(1, integer=True)],
        "n_target_classes": [finite(1, integer=True)],
        "feature_mimicry": ["boolean"],
        "random_start": ["boolean"],
    }

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", n_iter=100,
                 n_target_classes=3, feature_mimicry=True, random_start=True, clip_min=0.0,
                 clip_max=1.0, batch_size=256, device="cpu", random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
        self.n_iter = n_iter
        self.n_target_classes = n_target_classes
        self.feature_mimicry = feature_mimicry
        self.random_start = random_start
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @fill_doc
    def fit(self, X, y):
        """Fit the victim (unless frozen) and keep ``(X, y)`` for feature mimicry.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data of known classes: the targets of feature mimicry.
        {y_fit}

        {returns_self}
        """
        super().fit(X, y)
        if self.feature_mimicry:
            self.X_pool_ = np.array(X, dtype=np.float32)
            self.y_pool_ = self._torch_model().encode(np.asarray(y),
                                                      n_features=self.X_pool_.shape[1])
        return self

    def _perturb(self, module, x, y, generator, clip_min, clip_max, *, keys=None):
        pool_x = pool_y = None
        if self.feature_mimicry:
            pool_x = torch.as_tensor(self.X_pool_, device=x.device)
            pool_y = torch.as_tensor(self.y_pool_, device=x.device)
        return adaptive_reject_attack(
            module, x, y, eps=self.eps, norm=resolve_norm(self.norm), n_iter=self.n_iter,
            n_target_classes=self.n_target_classes, pool_x=pool_x, pool_y=pool_y,
            random_start=self.random_start, clip_min=clip_min, clip_max=clip_max,
            generator=generator, keys=keys)
