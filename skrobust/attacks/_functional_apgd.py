"""Tensor-level Auto-PGD (Croce & Hein, ICML 2020): no numpy, no estimators.

Same conventions as :mod:`skrobust.attacks._functional`: ``module`` maps inputs to
logits, ``x`` and ``y`` are tensors on the module's device, the caller handles eval
mode, and every function returns detached tensors.
"""

from functools import partial

import torch
import torch.nn.functional as F

from ._runs import chunk_rows, chunk_targets, run_chunks, run_keys, superseded
from .functional import (_per_sample_norm, ascent_direction, clip, project, start_noise,
                         sync_period, two_class_scores)

LOSSES = ("ce", "dlr")


def _predict(logits):
    return two_class_scores(logits).argmax(1)


def dlr_loss(logits, y):
    """Per-sample difference-of-logits-ratio loss, to ascend (untargeted).

    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, where ``z_pi1 >= z_pi2 >= ...``
    are the sorted logits. Invariant to shifting and rescaling the logits, so it
    does not vanish on over-confident models. Needs at least 3 classes.
    """
    z_sorted, order = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None])[:, 0]
    top_is_y = order[:, -1] == y
    z_other = torch.where(top_is_y, z_sorted[:, -2], z_sorted[:, -1])
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def dlr_targeted_loss(logits, target, y=None):
    """Per-sample targeted DLR loss, to ascend (towards ``target``).

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` with ``y`` the true class. When
    ``y`` is None (a targeted attack given only the targets), ``z_y`` is the largest
    logit of a class other than the target, which equals ``z_y`` at a correctly
    classified start. Needs at least 4 classes.
    """
    z_sorted, _ = logits.sort(dim=1)
    z_t = logits.gather(1, target[:, None])[:, 0]
    if y is None:
        others = logits.scatter(1, target[:, None], float("-inf"))
        z_y = others.amax(dim=1)
    else:
        z_y = logits.gather(1, y[:, None])[:, 0]
    scale = z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12
    return -(z_y - z_t) / scale


def _reached(logits, y, target, goal):
    pred = _predict(logits)
    return pred == target if goal == "target" else pred != y


def _per_sample_loss(logits, y, target, loss):
    """The loss to ascend, per sample: towards errors on ``y``, or towards ``target``."""
    if loss == "ce":
        logits = two_class_scores(logits)
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")
    if target is None:
        return dlr_loss(logits, y)
    return dlr_targeted_loss(logits, target, y)


def check_n_classes(n_classes, loss, *, targeted):
    """Raise a clear error when the DLR loss is undefined for ``n_classes`` outputs."""
    needed = 4 if targeted else 3
    if loss == "dlr" and n_classes < needed:
        kind = "targeted DLR" if targeted else "DLR"
        raise ValueError(
            f"The {kind} loss needs at least {needed} classes but the victim has "
            f"{n_classes} outputs; use loss='ce'."
        )


def apgd_checkpoints(n_iter):
    """Iterations at which APGD may halve its step size, as in AutoAttack's code.

    The paper's ``w_j = ceil(p_j * n_iter)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, in the integer form of the
    reference implementation (``autopgd_base.py``): the first window has
    ``max(int(0.22 n), 1)`` iterations and each next one ``max(int(0.03 n), 1)``
    fewer, down to ``max(int(0.06 n), 1)``. Both agree at ``n_iter=100``; for other
    budgets the reference's windows are the ones used.

    Examples
    --------
    >>> apgd_checkpoints(100)
    [0, 22, 41, 57, 70, 80, 87, 93, 99]
    >>> apgd_checkpoints(10)
    [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    """
    window = max(int(0.22 * n_iter), 1)
    shrink = max(int(0.03 * n_iter), 1)
    smallest = max(int(0.06 * n_iter), 1)
    checkpoints = [0]
    while checkpoints[-1] + window <= n_iter:
        checkpoints.append(checkpoints[-1] + window)
        window = max(window - shrink, smallest)
    return checkpoints


def apgd_start(x, eps, norm, generator=None, clip_min=None, clip_max=None, *, keys=None,
               counter=()):
    """AutoAttack's random start: a point on the surface of the ``norm`` ball.

    Linf: ``x + eps * t / max|t|`` with ``t`` uniform in ``[-1, 1]``; L2:
    ``x + eps * t / ||t||`` with ``t`` Gaussian; then clipped to the box. ``t`` comes
    from ``generator``, or per row from ``keys`` and ``counter``
    (:func:`~skrobust.attacks.functional.start_noise`).
    """
    t = start_noise(x, norm, generator, keys, counter)
    return clip(x + eps * t / (_per_sample_norm(t, norm) + 1e-12), clip_min, clip_max)


def _objective_grad(module, x, objective):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        scores = module(x)
        losses = objective(scores)
        (grad,) = torch.autograd.grad(losses.sum(), x)
    return losses.detach(), torch.nan_to_num(grad, nan=0.0), scores.detach()


def _rows(mask, x):
    return mask.view(-1, *([1] * (x.dim() - 1)))


def _l2(t):
    return (t ** 2).flatten(1).sum(1).sqrt().view(-1, *([1] * (t.dim() - 1)))


def _direction(grad, norm):
    if norm == 2:
        # AutoAttack's normalisation, operation for operation (same rounding)
        return grad / (_l2(grad) + 1e-12)
    return ascent_direction(grad, norm)


def _project(x, x0, eps, norm, clip_min, clip_max):
    if norm == 2:
        # AutoAttack's L2 projection, x0 + delta / ||delta|| * min(eps, ||delta||),
        # written as the reference writes it so that both round alike
        delta = x - x0
        size = _l2(delta)
        return clip(x0 + delta / (size + 1e-12) * size.clamp(max=eps), clip_min, clip_max)
    return project(x, x0, eps, norm, clip_min, clip_max)


def apgd_run(module, x, x_start, objective, reached, *, eps, norm, n_iter, rho=0.75,
             alpha=0.75, clip_min=None, clip_max=None, per_sample=None, check_every=None,
             groups=None):
    """One APGD run (Algorithm 1 of the paper, as in AutoAttack's code) from ``x_start``.

    Ascends ``objective(scores) -> (n_samples,)`` inside the ``eps``-ball around
    ``x``; ``reached(scores) -> bool (n_samples,)`` says which points are successes.
    Step ``2 * eps``, the first step without momentum, then momentum ``alpha``. At
    each checkpoint (:func:`apgd_checkpoints`) a sample halves its step and
    restarts from its best point when (1) its loss increased on at most ``rho``
    of the steps of the window (AutoAttack's ``<=``; the first step of a run is
    compared with 0, as the reference compares it with an unfilled buffer), or
    (2) its step was not halved at the previous checkpoint and its best loss did
    not improve since (never at the first checkpoint, as in the reference).

    Every sample's trajectory is independent of the others'. With ``per_sample``
    (a dict of tensors of ``n_samples`` rows, or None values) both callables are
    called as ``objective(scores, **rows)`` with those tensors cut to the rows of
    ``scores``, and a sample that reaches success leaves the batch: later steps
    cost only the samples still standing. Without it the whole batch runs until
    every sample succeeded. The host is asked which samples succeeded once every
    ``check_every`` steps (default: every step on a CPU, every 5th on a GPU), so a
    finished sample may run a few more steps; its output, fixed when it first
    succeeded, does not change. ``clip_min``/``clip_max`` broadcast over samples.
    ``groups=(sample, rank)`` (int tensors, one entry per row; with ``per_sample``)
    marks rows that are runs of the same sample: a row also leaves when a row of its
    sample ranked before it succeeds (:mod:`~skrobust.attacks._runs`).

    Returns the first point reaching success where one was found, else the point
    of highest objective, plus the success flags and the highest objective (for a
    sample that left the batch, the highest objective when it left).
    """
    compact = per_sample is not None
    kwargs = dict(per_sample) if compact else {}
    sample, rank = (None, None) if groups is None else groups
    n_samples = None if groups is None else int(sample.max()) + 1
    check_every = sync_period(x.device) if check_every is None else check_every
    checkpoints = apgd_checkpoints(n_iter)
    next_check = iter(checkpoints[1:])
    check_at = next(next_check, None)
    last_check = 0
    n = len(x)
    step = torch.full((n,) + (1,) * (x.dim() - 1), 2.0 * eps, dtype=x.dtype, device=x.device)
    x_cur = x_start
    losses, grad, scores = _objective_grad(module, x_cur, partial(objective, **kwargs))
    success = reached(scores, **kwargs)
    x_found = x_cur.clone()
    x_best, grad_best, loss_best = x_cur.clone(), grad.clone(), losses.clone()
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones(n, dtype=torch.bool, device=x.device)
    n_increased = torch.zeros(n, dtype=torch.long, device=x.device)
    # outputs of the samples that left the batch; `index` maps batch rows to samples
    out_x, out_success, out_loss = x_found.clone(), success.clone(), loss_best.clone()
    index = torch.arange(n, device=x.device)
    x_prev = x_cur
    for k in range(n_iter):
        if k % check_every == 0 and not compact:
            if bool(success.all()):
                break  # every output is a found point now: later steps change none
        elif k % check_every == 0:
            leave = success
            if sample is not None:
                leave = success | superseded(success, sample, rank, n_samples)
            keep = (~leave).nonzero().flatten()  # the one host synchronisation
            if len(keep) == 0:
                break
            if len(keep) < len(index):
                done = success.nonzero().flatten()
                rows = index[done]
                out_x[rows], out_success[rows] = x_found[done], True
                out_loss[rows] = loss_best[done]
                index = index[keep]
                if sample is not None:
                    sample, rank = sample[keep], rank[keep]
                kwargs = {key: None if t is None else t[keep] for key, t in kwargs.items()}
                x, x_cur, x_prev, grad = x[keep], x_cur[keep], x_prev[keep], grad[keep]
                step, losses, success = step[keep], losses[keep], success[keep]
                x_found = x_found[keep]
                x_best, grad_best, loss_best = x_best[keep], grad_best[keep], loss_best[keep]
                loss_best_last_check = loss_best_last_check[keep]
                reduced_last_check, n_increased = reduced_last_check[keep], n_increased[keep]
        a = 1.0 if k == 0 else alpha
        z = _project(x_cur + step * _direction(grad, norm), x, eps, norm, clip_min, clip_max)
        x_new = _project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), x, eps, norm,
                         clip_min, clip_max)
        x_prev, x_cur = x_cur, x_new
        loss_prev = torch.zeros_like(losses) if k == 0 else losses
        losses, grad, scores = _objective_grad(module, x_cur, partial(objective, **kwargs))
        hit = reached(scores, **kwargs)
        x_found = torch.where(_rows(hit & ~success, x), x_cur, x_found)
        success = success | hit
        n_increased += (losses > loss_prev).long()
        better = losses > loss_best
        x_best = torch.where(_rows(better, x), x_cur, x_best)
        grad_best = torch.where(_rows(better, x), grad, grad_best)
        loss_best = torch.where(better, losses, loss_best)
        if k + 1 == check_at:
            few_increases = n_increased <= rho * (k + 1 - last_check)
            stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
            reduce = few_increases | stalled
            step = torch.where(_rows(reduce, x), step / 2, step)
            x_cur = torch.where(_rows(reduce, x), x_best, x_cur)
            grad = torch.where(_rows(reduce, x), grad_best, grad)
            reduced_last_check = reduce
            loss_best_last_check = loss_best.clone()
            n_increased.zero_()
            last_check = k + 1
            check_at = next(next_check, None)
    if len(index):
        out_x[index] = torch.where(_rows(success, x), x_found, x_best)
        out_success[index], out_loss[index] = success, loss_best
    return out_x.detach(), out_success, out_loss


def apgd(module, x, y, *, eps, norm="inf", loss="ce", n_iter=100, n_restarts=1,
         targeted=False, n_target_classes=None, rho=0.75, alpha=0.75, random_start=True,
         clip_min=None, clip_max=None, generator=None, max_rows=None, keys=None):
    """Auto-PGD (Croce & Hein, 2020): PGD with an automatic step-size schedule.

    Starts with step ``2 * eps``, adds momentum ``alpha`` and, at checkpoints
    ``w_j`` (:func:`apgd_checkpoints`), halves a sample's step and restarts it from
    its best point when its loss increased on at most ``rho`` of the steps since
    the last checkpoint, or when neither its step nor its best loss changed; the
    details follow AutoAttack's reference code (see :func:`apgd_run`).

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``x`` to logits.
    x : Tensor of shape (n_samples, ...)
        Inputs inside ``[clip_min, clip_max]``.
    y : Tensor of shape (n_samples,)
        Label indices: the true classes, or the targets when ``targeted=True``.
    eps : float
        Radius of the ``norm`` ball.
    norm : {"inf", 2}
        The norm of the budget.
    loss : {"ce", "dlr"}
        Cross-entropy or difference-of-logits-ratio.
    n_iter : int
        Iterations per run; each costs one forward and one backward pass (plus one
        pass at the start).
    n_restarts : int
        Runs per sample; a restart only attacks the samples not yet fooled.
    targeted : bool
        Move towards the classes ``y`` (loss ``-CE`` or the targeted DLR).
    n_target_classes : int or None
        Untargeted attack made of targeted runs (APGD-T): for each of the
        ``n_target_classes`` highest-scoring other classes of the clean input, a
        targeted run (targeted DLR or ``-CE``) on the samples not yet fooled.
    rho, alpha : float
        Step-halving threshold and momentum (0.75 in the paper).
    random_start : bool
        Start from a random point on the surface of the ball, as AutoAttack does
        (:func:`apgd_start`; each restart draws anew).
    clip_min, clip_max : float, Tensor or None
        Input bounds.
    generator : torch.Generator, optional
        Source of the random starts.
    max_rows : int or None
        None: the runs of a sample (target classes, restarts) go one after the
        other, each on the samples not fooled yet, and draw their starts from
        ``generator`` in turn, as AutoAttack does (seeded alike, both start from the
        same points). An int: when few samples are left, the next runs go side by
        side in one batch of at most ``max_rows`` rows, and each run draws its start
        from a key of its sample (one key per sample from ``generator``), so the
        result is that of running them in turn (``max_rows=1``) whatever the rows
        (see :mod:`~skrobust.attacks._runs`).
    keys : Tensor of int64 of shape (n_samples,) or None
        The per-sample keys of the random starts (e.g.
        :func:`~skrobust.attacks._runs.row_keys`) instead of keys drawn from
        ``generator``: a sample's result then depends on its key only, not on the
        other samples.

    Returns
    -------
    x_adv : Tensor of the shape of ``x``
        For each sample, the point found by the first run (in the order above) that
        reaches the goal, else the point of highest loss of the last target's
        runs. Samples already misclassified (or already at their target) are
        returned unchanged.

    References
    ----------
    F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.
    """
    if n_target_classes is not None and targeted:
        raise ValueError("n_target_classes runs an untargeted attack; use targeted=False.")
    with torch.no_grad():
        clean_logits = module(x)
    n_classes = max(clean_logits.shape[1], 2)
    check_n_classes(n_classes, loss, targeted=targeted or n_target_classes is not None)
    x_adv = x.clone()
    if targeted:
        success = _predict(clean_logits) == y
        goal, y_run, targets = "target", None, [y]
    else:
        success = _predict(clean_logits) != y
        goal, y_run, targets = "error", y, [None]
        if n_target_classes is not None:
            order = two_class_scores(clean_logits).argsort(dim=1, descending=True)
            # the i-th best class other than the top one; n_classes - 1 at most
            targets = [order[:, i] for i in range(1, min(n_target_classes, n_classes - 1) + 1)]
    # the runs of a sample (target, restart) in the order they would go one by one
    schedule = [(i, r) for i in range(len(targets)) for r in range(n_restarts)]
    keys = run_keys(keys, random_start, max_rows, len(x), generator, x.device)
    best_loss = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)
    for first, count, active in run_chunks(len(schedule), success, max_rows or 1):
        chunk, x_a, n_a = schedule[first:first + count], x[active], len(active)
        x_rows = x_a.repeat((count,) + (1,) * (x.dim() - 1))
        if random_start:
            starts = torch.cat([
                apgd_start(x_a, eps, norm, generator, clip_min, clip_max)
                if keys is None else
                apgd_start(x_a, eps, norm, None, clip_min, clip_max, keys=keys[active],
                           counter=run) for run in chunk])
        else:
            starts = x_rows.clone()
        per_sample = dict(y=None if y_run is None else y_run[active].repeat(count),
                          target=chunk_targets(targets, chunk, active))
        out, hit, run_loss = apgd_run(
            module, x_rows, starts,
            partial(_per_sample_loss, loss=loss), partial(_reached, goal=goal), eps=eps,
            norm=norm, n_iter=n_iter, rho=rho, alpha=alpha, clip_min=clip_min,
            clip_max=clip_max, per_sample=per_sample, groups=chunk_rows(n_a, count, x.device))
        for j, (_, restart) in enumerate(chunk):  # fold in rank order
            rows = slice(j * n_a, (j + 1) * n_a)
            if restart == 0:  # losses are comparable within one target's runs only
                best_loss.fill_(float("-inf"))
            # a fooled sample keeps its first adversarial point; the others the run
            # of highest loss
            standing = ~success[active]
            keep = standing & (hit[rows] | (run_loss[rows] > best_loss[active]))
            x_adv[active[keep]] = out[rows][keep]
            best_loss[active] = torch.where(keep, run_loss[rows], best_loss[active])
            success[active] = success[active] | (standing & hit[rows])
    return x_adv

