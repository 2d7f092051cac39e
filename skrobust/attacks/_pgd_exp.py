"""L2 PGD with an exponential line search on the step (secml's PGDExp), and a
loss aimed at classifiers with a reject option."""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import Bunch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ..utils._dask import is_dask_array
from ..utils._docstrings import fill_doc

from ._base import ATTACK_PARAMS, BaseAttack, finite
from .functional import _per_sample_norm, project

LOSSES = ("margin", "ce")


def reject_margin_loss(scores, y, *, threshold=None, targeted=False):
    """Per-sample margin to ascend, aware of a reject option.

    Untargeted: ``max_{k != y} s_k - max(s_y, threshold)``; positive exactly when
    the sample is accepted (best score above ``threshold``) *and* misclassified, so
    the attack must beat the true class and the reject option at once. Targeted:
    ``s_y - max(max_{k != y} s_k, threshold)``, positive when accepted as ``y``.
    Without a threshold this is the usual multi-class margin (Carlini-Wagner style).

    Parameters
    ----------
    scores : Tensor of shape (n_samples, n_classes)
        Class scores.
    y : Tensor of shape (n_samples,)
        True (untargeted) or target (targeted) class indices.
    threshold : float or None, default=None
        Reject threshold on the best score; None or ``-inf`` for no reject option.
    targeted : bool, default=False
        Targeted variant.

    Returns
    -------
    loss : Tensor of shape (n_samples,)
    """
    if scores.shape[1] == 1:
        scores = torch.cat([-scores, scores], dim=1)
    own = scores.gather(1, y.view(-1, 1))[:, 0]
    mask = F.one_hot(y, scores.shape[1]).bool()
    other = scores.masked_fill(mask, -torch.inf).amax(1)
    if targeted:
        if threshold is not None:
            other = other.clamp_min(threshold)
        return own - other
    if threshold is not None:
        own = own.clamp_min(threshold)
    return other - own


def reject_threshold(module):
    """The reject threshold ``module.reject_threshold`` as a float; None when the
    module has none or it is not finite (no reject option)."""
    threshold = getattr(module, "reject_threshold", None)
    if threshold is None or not np.isfinite(threshold):
        return None
    return float(threshold)


def _per_sample_loss(module, x, y, loss, targeted):
    scores = module(x)
    if loss == "margin":
        values = reject_margin_loss(scores, y, threshold=reject_threshold(module),
                                    targeted=targeted)
    else:
        logits = scores if scores.shape[1] > 1 else torch.cat(
            [torch.zeros_like(scores), scores], dim=1)
        values = F.cross_entropy(logits, y, reduction="none")
        values = -values if targeted else values
    return values, scores


def pgd_exp(module, x, y, *, eps, step_size, n_iter, min_step_size=None,
            max_line_search=20, loss="margin", targeted=False, clip_min=None,
            clip_max=None, tol=1e-8, early_stop=False, x_init=None, history=None):
    """L2 PGD whose step length is found by an exponential line search (secml's PGDExp).

    Each iteration takes one gradient (forward + backward pass) of the per-sample
    ``loss``, normalises it, then searches the step along it with forward passes
    only: from ``step_size`` the step doubles while the loss keeps improving (each
    candidate projected onto the ``eps``-ball and the box), or halves down to
    ``min_step_size`` when the first step does not improve. A sample whose loss
    stops improving by more than ``tol`` keeps its point and costs nothing more;
    the loss never decreases, so the last point is the best one.

    Parameters
    ----------
    module : torch.nn.Module
        Maps inputs to class scores.
    x, y : Tensor
        Inputs and label indices (true, or targets when ``targeted``).
    eps : float
        L2 budget.
    step_size : float
        First step length of each line search (secml's ``eta``).
    n_iter : int
        Maximum number of gradient iterations.
    min_step_size : float or None, default=None
        Smallest step tried when shrinking (secml's ``eta_min``); None means
        ``step_size`` (no shrinking, as in secml's DNR tutorial).
    max_line_search : int, default=20
        Maximum doublings (or halvings) per line search.
    loss : {"margin", "ce"}, default="margin"
        :func:`reject_margin_loss` (reading ``module.reject_threshold`` when the
        module has one, as :class:`~skrobust.defenses.DNRClassifier`'s does) or
        cross-entropy.
    targeted : bool, default=False
        Move towards the classes ``y``.
    clip_min, clip_max : float, Tensor or None
        Box bounds.
    tol : float, default=1e-8
        A sample stops when its loss improves by less than this.
    early_stop : bool, default=False
        With the margin loss, also stop a sample as soon as the attack succeeds
        (loss > 0: accepted and misclassified, or accepted as the target). Saves
        work in security evaluations; the loss then stops growing.
    x_init : Tensor or None, default=None
        Starting points (projected onto the ball and the box); None starts at ``x``.
    history : dict or None
        If a dict, filled with ``"loss"`` (n_iter + 1, n_samples) and ``"scores"``
        (n_iter + 1, n_samples, n_classes) tensors on the CPU, and the numbers of
        per-sample gradient and forward-only evaluations, ``"n_gradients"`` and
        ``"n_forwards"``.

    Returns
    -------
    x_adv : Tensor
    """
    min_step = step_size if min_step_size is None else min_step_size
    shape = (-1,) + (1,) * (x.dim() - 1)
    x0 = x.detach()
    x_adv = x0.clone() if x_init is None else project(
        x_init.detach(), x0, eps, 2, clip_min, clip_max)
    with torch.no_grad():
        f, scores = _per_sample_loss(module, x_adv, y, loss, targeted)
    scores = scores.detach()
    losses, all_scores = [f.cpu()], [scores.cpu()]
    counts = {"grad": 0, "fwd": len(x0)}
    active = torch.ones(len(x0), dtype=torch.bool, device=x0.device)
    if early_stop:
        active &= f <= 0

    def line_search(xa, x0a, ya, fa, sa):
        """One iteration on the active rows: a gradient, then the exponential search."""

        def candidate(eta):
            z = project(xa + eta.view(shape) * direction, x0a, eps, 2, clip_min, clip_max)
            with torch.no_grad():
                fz, sz = _per_sample_loss(module, z, ya, loss, targeted)
            counts["fwd"] += len(z)
            return z, fz, sz

        with torch.enable_grad():
            xg = xa.detach().requires_grad_(True)
            values, _ = _per_sample_loss(module, xg, ya, loss, targeted)
            (grad,) = torch.autograd.grad(values.sum(), xg)
        counts["grad"] += len(xa)
        direction = grad / _per_sample_norm(grad, 2).clamp_min(1e-20)
        eta = torch.full_like(fa, step_size)
        z, fz, sz = candidate(eta)
        up = fz > fa
        best_x = torch.where(up.view(shape), z, xa)
        best_f = torch.where(up, fz, fa)
        best_s = torch.where(up.view(-1, 1), sz, sa)
        grow, shrink = up.clone(), ~up
        eta_down = eta.clone()
        for _ in range(max_line_search):
            if grow.any():
                eta = torch.where(grow, 2 * eta, eta)
                z, fz, sz = candidate(eta)
                moved = _per_sample_norm(z - best_x, 2).flatten() > 1e-12
                better = grow & moved & (fz > best_f)
                best_x = torch.where(better.view(shape), z, best_x)
                best_f = torch.where(better, fz, best_f)
                best_s = torch.where(better.view(-1, 1), sz, best_s)
                grow = better
            elif shrink.any():
                eta_down = torch.where(shrink, eta_down / 2, eta_down)
                shrink = shrink & (eta_down >= min_step)
                if not shrink.any():
                    break
                z, fz, sz = candidate(eta_down)
                better = shrink & (fz > fa)
                best_x = torch.where(better.view(shape), z, best_x)
                best_f = torch.where(better, fz, best_f)
                best_s = torch.where(better.view(-1, 1), sz, best_s)
                shrink = shrink & ~better
            else:
                break
        return best_x.detach(), best_f, best_s

    for _ in range(n_iter):
        if not active.any():
            if history is None:
                break
            losses.append(losses[-1])
            all_scores.append(all_scores[-1])
            continue
        idx = active.nonzero().flatten()
        new_x, new_f, new_s = line_search(x_adv[idx], x0[idx], y[idx], f[idx], scores[idx])
        still = new_f - f[idx] > tol
        if early_stop:
            still &= new_f <= 0
        x_adv, f, scores = x_adv.clone(), f.clone(), scores.clone()
        x_adv[idx], f[idx], scores[idx] = new_x, new_f, new_s
        active[idx] = still
        if history is not None:
            all_scores.append(scores.cpu())
            losses.append(f.cpu())
    n_grad, n_fwd = counts["grad"], counts["fwd"]
    if history is not None:
        history["loss"] = torch.stack(losses)
        history["scores"] = torch.stack(all_scores)
        history["n_gradients"] = n_grad
        history["n_forwards"] = n_fwd
    return x_adv.detach()


def nearest_other_class(x, y, pool_x, pool_y, *, targeted=False):
    """For each row of ``x``, the nearest (L2) row of ``pool_x`` whose label differs
    from ``y`` (or equals ``y`` when ``targeted``); ``x`` itself when there is none."""
    flat, pool = x.flatten(1), pool_x.flatten(1)
    dist = torch.cdist(flat, pool)
    other = pool_y.view(1, -1) == y.view(-1, 1) if targeted else (
        pool_y.view(1, -1) != y.view(-1, 1))
    dist = dist.masked_fill(~other, torch.inf)
    best = dist.argmin(1)
    found = torch.isfinite(dist.gather(1, best.view(-1, 1))[:, 0])
    return torch.where(found.view(-1, *([1] * (x.dim() - 1))), pool_x[best].view_as(x), x)


@fill_doc
class PGDExpTransformer(BaseAttack):
    """L2 PGD with exponential line search (secml's PGDExp) as a scikit-learn transformer.

    Few gradient evaluations per iteration: one gradient, then a line search along
    it with forward passes only, doubling the step while the loss improves (see
    :func:`pgd_exp`). The default loss, :func:`reject_margin_loss`, targets
    classifiers with a reject option: against a
    :class:`~skrobust.defenses.DNRClassifier` an adversarial example counts only if
    it is accepted *and* misclassified, so the attack must beat the reject option too.

    Parameters
    ----------
    estimator : skorch classifier, FrozenEstimator, torch.nn.Module or DNRClassifier, default=None
        Victim model. A ``FrozenEstimator`` or a ``torch.nn.Module`` is used as is;
        anything else is cloned and fitted in ``fit``. If None, a small MLP from
        :mod:`skrobust.models` is fitted.
    eps : float, default=2.0
        Maximum L2 perturbation (secml's ``dmax``).
    step_size : float, default=0.1
        First step of each line search (secml's ``eta``).
    min_step_size : float or None, default=None
        Smallest step when shrinking (secml's ``eta_min``); None means
        ``step_size``.
    n_iter : int, default=30
        Maximum gradient iterations (secml's ``max_iter``).
    max_line_search : int, default=20
        Maximum doublings or halvings per line search.
    loss : {"margin", "ce"}, default="margin"
        Reject-aware margin or cross-entropy.
    norm : {2}, default=2
        Only the L2 norm is supported.
    {targeted}
    early_stop : bool, default=False
        Stop a sample as soon as it is adversarial (margin loss > 0); needs
        ``loss="margin"``. Cheaper for security evaluations, which only count
        successes; secml's PGDExp (and the default) keeps increasing the margin.
    double_init : bool, default=False
        Also run the attack from a second start, the nearest (L2) sample of
        ``fit``'s data with another label (the target label when ``targeted``),
        projected onto the ``eps``-ball, and keep, per sample, the run with the
        higher loss (secml's ``double_init_ds``). Costs two attacks; it escapes the
        flat regions where RBF scores (DNR) have no gradient.
    {clip}
    {batch_size}
    {device}
    {random_state}
        The attack itself is deterministic.
    {verbose}

    {attributes}
    {seed_}

    See Also
    --------
    PGDTransformer : Fixed-step PGD / BIM.

    References
    ----------
    A. Sotgiu, A. Demontis, M. Melis, B. Biggio, G. Fumera, X. Feng and F. Roli,
    "Deep neural rejection against adversarial examples", EURASIP Journal on
    Information Security 2020:5 (2020); secml's ``CAttackEvasionPGDExp``.

    Examples
    --------
    {example_data}
    >>> from skrobust.attacks import PGDExpTransformer
    >>> attack = PGDExpTransformer(eps=0.5, n_iter=10, random_state=0).fit(X, y)
    >>> X_adv, history = attack.generate_with_history(X, y)
    >>> history.loss.shape
    (11, 100)
    >>> bool((history.loss[-1] >= history.loss[0]).all())
    True
    """

    _parameter_constraints = {
        **ATTACK_PARAMS,
        "step_size": [finite(0, closed="neither")],
        "min_step_size": [finite(0, closed="neither"), None],
        "n_iter": [finite(0, integer=True)],
        "max_line_search": [finite(0, integer=True)],
        "loss": [StrOptions(set(LOSSES))],
        "early_stop": ["boolean"],
        "double_init": ["boolean"],
    }

    def __init__(self, estimator=None, *, eps=2.0, step_size=0.1, min_step_size=None,
                 n_iter=30, max_line_search=20, loss="margin", norm=2, targeted=False,
                 early_stop=False, double_init=False,
                 clip_min=0.0, clip_max=1.0, batch_size=256, device="cpu",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.step_size = step_size
        self.min_step_size = min_step_size
        self.n_iter = n_iter
        self.max_line_search = max_line_search
        self.loss = loss
        self.norm = norm
        self.targeted = targeted
        self.early_stop = early_stop
        self.double_init = double_init
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_attack_params(self):
        if self.norm not in (2, "2", "l2", "L2"):
            raise ValueError(
                f"norm={self.norm!r} is not supported; PGDExp is an L2 attack: use norm=2."
            )
        if self.early_stop and self.loss != "margin":
            raise ValueError(
                f'early_stop=True needs loss="margin" (success is a positive margin); '
                f"got loss={self.loss!r}."
            )

    @fill_doc
    def fit(self, X, y):
        """Fit the victim (unless frozen) and, with ``double_init``, keep ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; the pool of second starts when ``double_init=True``.
        {y_fit}

        {returns_self}
        """
        super().fit(X, y)
        if self.double_init:
            X, y = np.asarray(X), np.asarray(y)
            self.X_init_ = np.array(X, dtype=np.float32)
            self.y_init_ = self._torch_model().encode(y, n_features=X.shape[1])
        return self

    def generate_with_history(self, X, y=None):
        """Adversarial examples and the trace of the attack, iteration by iteration.

        The same examples as ``generate(X, y)`` (or ``transform(X)`` when ``y`` is
        None); the trace is returned, never stored on the estimator, so the
        transformer is not modified by the call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs within ``[clip_min, clip_max]`` (in memory, not a Dask array).
        y : array-like of shape (n_samples,) or None, default=None
            True labels, or target labels when ``targeted=True``; None attacks the
            victim's own predictions, as ``transform``.

        Returns
        -------
        X_adv : ndarray of shape (n_samples, n_features)
            Adversarial inputs, of X's float dtype.
        history : :class:`~sklearn.utils.Bunch`
            ``loss``, ndarray of shape (n_iter + 1, n_samples): the per-iteration
            loss of each sample (row 0: the clean input; with ``double_init``, of
            the run kept); ``scores``, ndarray of shape (n_iter + 1, n_samples,
            n_classes): the per-iteration class scores; ``n_gradients`` and
            ``n_forwards``: per-sample gradient and forward-only evaluations, the
            attack's cost.
        """
        check_is_fitted(self)
        if is_dask_array(X):
            raise TypeError("generate_with_history needs an in-memory X, not a Dask "
                            "array; compute it first, or use generate for lazy attacks.")
        recorder = copy.copy(self)  # the trace is collected on a shallow copy
        recorder._histories = []
        X_adv = recorder.transform(X) if y is None else recorder.generate(X, y)
        parts = recorder._histories
        history = Bunch(
            loss=np.concatenate([p["loss"].numpy() for p in parts], axis=1),
            scores=np.concatenate([p["scores"].numpy() for p in parts], axis=1),
            n_gradients=int(sum(p["n_gradients"] for p in parts)),
            n_forwards=int(sum(p["n_forwards"] for p in parts)),
        )
        return X_adv, history

    def _perturb(self, module, x, y, generator, clip_min, clip_max):
        kwargs = dict(eps=self.eps, step_size=self.step_size, n_iter=self.n_iter,
                      min_step_size=self.min_step_size,
                      max_line_search=self.max_line_search, loss=self.loss,
                      targeted=self.targeted, clip_min=clip_min, clip_max=clip_max,
                      early_stop=self.early_stop)
        history = {}
        x_adv = pgd_exp(module, x, y, history=history, **kwargs)
        if self.double_init:
            pool_x = torch.as_tensor(self.X_init_, device=x.device)
            pool_y = torch.as_tensor(self.y_init_, device=x.device)
            start = nearest_other_class(x, y, pool_x, pool_y, targeted=self.targeted)
            second = {}
            x_two = pgd_exp(module, x, y, x_init=start, history=second, **kwargs)
            take = second["loss"][-1] > history["loss"][-1]
            x_adv = torch.where(take.to(x.device).view(-1, *([1] * (x.dim() - 1))),
                                x_two, x_adv)
            history = {
                "loss": torch.where(take, second["loss"], history["loss"]),
                "scores": torch.where(take.view(1, -1, 1), second["scores"],
                                      history["scores"]),
                "n_gradients": history["n_gradients"] + second["n_gradients"],
                "n_forwards": history["n_forwards"] + second["n_forwards"],
            }
        histories = getattr(self, "_histories", None)  # only in generate_with_history
        if histories is not None:
            histories.append(history)
        return x_adv
