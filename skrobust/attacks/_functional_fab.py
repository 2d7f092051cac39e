"""Tensor-level Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): no numpy, no
estimators.

Same conventions as :mod:`skrobust.attacks.functional`: ``module`` maps inputs to
logits, ``x`` and ``y`` are tensors on the module's device, the caller handles eval
mode, and every function returns detached tensors.
"""

import torch

from ._runs import chunk_rows, chunk_targets, run_chunks, run_keys, superseded
from .functional import _per_sample_norm, clip, start_noise, sync_period, two_class_scores


def _flat_bound(bound, x):
    """A bound (None, float or tensor broadcastable to a row) as an (n, D) tensor, or None."""
    if bound is None:
        return None
    bound = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    return bound.expand(x.shape).reshape(len(x), -1).contiguous()


def boundary_projection(t, w, c, norm, lo=None, hi=None):
    """Minimal-norm move ``d`` from ``t`` onto the hyperplane ``c + w^T d = 0`` inside a box.

    Solves, for each row, ``min ||d||`` subject to ``c + w^T d = 0`` and
    ``lo <= t + d <= hi`` exactly (the Linf or L2 projection of FAB). Both norms
    share one form: the optimum is ``d_i = -sign(w_i) min(mu s_i, room_i)`` with
    ``s_i = 1`` (Linf) or ``|w_i|`` (L2), ``room_i`` the distance from ``t_i`` to the
    bound it moves towards, and ``mu >= 0`` the root of the piecewise-linear
    ``sum_i |w_i| min(mu s_i, room_i) = |c|``, found among the sorted breakpoints
    ``room_i / s_i``. When the box keeps the hyperplane out of reach, ``d`` moves
    every coordinate to its bound (the box point closest to the hyperplane).

    Parameters
    ----------
    t, w : Tensor of shape (n, D)
        Points and hyperplane normals.
    c : Tensor of shape (n,)
        Value of the linear function at ``t`` (``0`` on the hyperplane).
    norm : {"inf", 2}
    lo, hi : Tensor of shape (n, D) or None
        Box bounds; None: unbounded.

    Returns
    -------
    d : Tensor of shape (n, D)
    """
    sign = torch.where(c >= 0, 1.0, -1.0).to(t.dtype)[:, None]
    w = w * sign  # now c >= 0 and the move must lower w . d by |c|
    c = c.abs()
    inf = torch.full_like(t, float("inf"))
    down = inf if lo is None else (t - lo).clamp_min(0)  # room when w_i > 0 (d_i < 0)
    up = inf if hi is None else (hi - t).clamp_min(0)  # room when w_i < 0 (d_i > 0)
    room = torch.where(w > 0, down, up)
    absw = w.abs()
    zero = absw == 0
    scale = torch.ones_like(absw) if norm != 2 else absw
    breaks = torch.where(zero, 0.0, room / torch.where(zero, 1.0, scale))
    weights = torch.where(zero, 0.0, absw * scale)
    breaks, order = breaks.sort(dim=1)
    weights = weights.gather(1, order)
    # g(mu) at each breakpoint: the coordinates before it saturated, the rest at mu
    saturated = torch.where(weights > 0, weights * breaks, 0.0).cumsum(1)
    spent = weights.cumsum(1)
    total = spent[:, -1:]
    g = saturated + breaks * (total - spent)
    k = (g < c[:, None]).sum(1, keepdim=True)  # breakpoints passed before the root
    n_dims = t.shape[1]
    prev = (k - 1).clamp_min(0)
    first = k == 0
    a = torch.where(first, 0.0, saturated.gather(1, prev))
    b = torch.where(first, total, total - spent.gather(1, prev))
    reach = breaks.gather(1, k.clamp_max(n_dims - 1))
    mu = torch.where(b > 0, (c[:, None] - a) / b.clamp_min(1e-30), reach).clamp_min(0)
    mu = torch.where(k >= n_dims, float("inf"), mu)  # out of reach: go to the bounds
    size = torch.minimum(mu * torch.where(zero, 0.0, scale), room)
    return torch.where(zero, 0.0, -torch.sign(w) * size)


def _success(logits, y, target, goal):
    pred = logits.argmax(1)
    return pred == target if goal == "target" else pred != y



def _linearise(module, x, y, target, goal, norm, *, grad=True):
    """Scores at ``x`` and the linear model ``c + w . (x' - x)`` of the boundary to cross.

    ``goal="error"`` with ``target``: the boundary between ``y`` and ``target``
    (FAB-T, one backward pass); without ``target``: of the boundaries between ``y``
    and each other class, the nearest under its linear model (untargeted FAB).
    ``goal="target"``: of the boundaries between ``target`` and each other class,
    the farthest under its linear model, the constraint most violated (the
    nearest or the best-scoring other class can lead FAB round in circles). Both
    choices cost one backward pass per class. With ``grad=False`` only the scores
    are computed (``c`` and ``w`` are None).

    Returns
    -------
    scores : Tensor of shape (n, n_classes)
    c : Tensor of shape (n,) or None
    w : Tensor of shape (n, D) or None
    """
    if not grad:
        with torch.no_grad():
            return two_class_scores(module(x)), None, None
    rows = torch.arange(len(x), device=x.device)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        scores = two_class_scores(module(x))
        if goal == "error" and target is not None:
            diff = scores[rows, target] - scores[rows, y]
        else:
            ref = target if goal == "target" else y
            diff = scores - scores[rows, ref][:, None]
        if diff.dim() == 1:
            (w,) = torch.autograd.grad(diff.sum(), x)
            return scores.detach(), diff.detach(), torch.nan_to_num(w.flatten(1), nan=0.0)
        n_classes = diff.shape[1]
        jac = torch.stack([
            torch.autograd.grad(diff[:, k].sum(), x, retain_graph=k < n_classes - 1)[0]
            for k in range(n_classes)], dim=1)
    jac = torch.nan_to_num(jac.flatten(2), nan=0.0)
    diff = diff.detach()
    dual = jac.abs().sum(2) if norm != 2 else jac.pow(2).sum(2).sqrt()
    if goal == "target":  # signed: z_k - z_target > 0 is violated
        distance = diff / (dual + 1e-12)
        distance[rows, target] = float("-inf")
        chosen = distance.argmax(1)
    else:
        distance = diff.abs() / (dual + 1e-12)
        distance[rows, y] = float("inf")
        chosen = distance.argmin(1)
    return scores.detach(), diff[rows, chosen], jac[rows, chosen]


def _norm(d, norm):
    return _per_sample_norm(d, norm).flatten()


def fab_step(x1, x0, c, w, norm, *, alpha_max, eta, lo=None, hi=None):
    """One FAB step from ``x1`` (flat, shape (n, D)) for the clean points ``x0``.

    Projects both ``x1`` and ``x0`` onto the linearised boundary ``c + w . (x - x1)
    = 0`` inside the box (:func:`boundary_projection`), then moves to the
    overshot (``eta``) projections' convex combination, weighted towards ``x0``'s
    by ``alpha = min(||d1|| / (||d1|| + ||d0||), alpha_max)``: a step that stays
    close to the clean point. Clipped to the box.
    """
    n = len(x1)
    c0 = c + (w * (x0 - x1)).sum(1)
    d = boundary_projection(torch.cat([x1, x0]), torch.cat([w, w]), torch.cat([c, c0]),
                            norm, None if lo is None else torch.cat([lo, lo]),
                            None if hi is None else torch.cat([hi, hi]))
    sizes = _norm(d, norm).clamp_min(1e-8)
    alpha = (sizes[:n] / (sizes[:n] + sizes[n:])).clamp(0.0, alpha_max)[:, None]
    x_new = (x1 + eta * d[:n]) * (1 - alpha) + (x0 + eta * d[n:]) * alpha
    return clip(x_new, lo, hi)


def fab_start(x0, eps, norm, generator=None, lo=None, hi=None, *, keys=None, counter=()):
    """FAB's random restart: ``x0 + eps / 2 * t / ||t||`` (``t`` uniform in [-1, 1]
    for Linf, Gaussian for L2), clipped to the box; ``x0`` flat. ``t`` comes from
    ``generator``, or per row from ``keys`` and ``counter``
    (:func:`~skrobust.attacks.functional.start_noise`)."""
    t = start_noise(x0, norm, generator, keys, counter)
    return clip(x0 + 0.5 * eps * t / _per_sample_norm(t, norm).clamp_min(1e-12), lo, hi)


def fab_run(module, x0, x_start, y, target, goal, *, eps, norm, n_iter, alpha_max=0.1,
            eta=1.05, beta=0.9, lo=None, hi=None, groups=None, check_every=None):
    """One FAB run (Algorithm 1 of the paper, as in AutoAttack's ``fab_pt.py``).

    ``x0`` and ``x_start`` are flat (n, D) and ``module`` takes flat rows. Each
    iteration linearises the boundary at the current point, takes a
    :func:`fab_step` and, when the new point reaches the goal (:func:`_success`),
    steps back towards ``x0`` by the factor ``beta``. A sample leaves the batch as
    soon as it reaches the goal within ``eps`` of ``x0``: its trajectory up to then
    is the reference's, so it succeeds exactly when the reference's smallest
    adversarial perturbation is within ``eps``; later iterations cost only the
    samples still standing. Each iteration costs a forward and backward pass at
    the current point and a forward pass at the new one (which steps back in most
    iterations, so its scores rarely serve the next linearisation).
    ``groups=(sample, rank)`` marks rows that are runs of the same sample: a row
    also leaves when a row of its sample ranked before it succeeds
    (:mod:`~skrobust.attacks._runs`). The host is asked which rows leave every
    ``check_every`` iterations (default: :func:`~skrobust.attacks.functional.sync_period`
    of the device); in between, a row that succeeded keeps its first point and
    rides along, so the outputs do not depend on it.

    Returns
    -------
    x_adv : Tensor of shape (n, D)
        The first point within ``eps`` reaching the goal; ``x0`` where none did.
    success : Tensor of bool of shape (n,)
    """
    n = len(x0)
    check_every = sync_period(x0.device) if check_every is None else check_every
    out = x0.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x0.device)
    index = torch.arange(n, device=x0.device)
    # rows that reached the goal within eps since the last check, and their first point
    found, x_found = torch.zeros_like(success), x0.clone()

    def cut(t, keep):
        return None if t is None else t[keep]

    sample, rank = (None, None) if groups is None else groups
    n_samples = None if groups is None else int(sample.max()) + 1
    x1 = x_start
    for it in range(n_iter):
        _, c, w = _linearise(module, x1, y, target, goal, norm)
        x_new = fab_step(x1, x0, c, w, norm, alpha_max=alpha_max, eta=eta, lo=lo, hi=hi)
        scores, _, _ = _linearise(module, x_new, y, target, goal, norm, grad=False)
        reached = _success(scores, y, target, goal)
        inside = reached & (_norm(x_new - x0, norm) <= eps)
        x_found = torch.where((inside & ~found)[:, None], x_new, x_found)
        found = found | inside
        if (it + 1) % check_every == 0 or it + 1 == n_iter:
            leave = found
            if sample is not None:
                leave = found | superseded(found, sample, rank, n_samples)
            keep = (~leave).nonzero().flatten()  # the host synchronisation
            if len(keep) < len(index):
                done = found.nonzero().flatten()
                out[index[done]] = x_found[done]
                success[index[done]] = True
                if len(keep) == 0:
                    break
                index, x0, x_new, reached = index[keep], x0[keep], x_new[keep], reached[keep]
                found, x_found = found[keep], x_found[keep]
                y, target, lo, hi = cut(y, keep), cut(target, keep), cut(lo, keep), cut(hi, keep)
                sample, rank = cut(sample, keep), cut(rank, keep)
        # adversarial but too far: step back towards x0
        x1 = torch.where(reached[:, None], x0 + beta * (x_new - x0), x_new)
    return out, success


def fab(module, x, y, *, eps, norm="inf", n_iter=100, n_restarts=1, targeted=False,
        n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, clip_min=None,
        clip_max=None, generator=None, max_rows=None, keys=None):
    """Fast Adaptive Boundary attack (Croce & Hein, 2020), within an ``eps``-ball.

    FAB walks to the decision boundary along the projections of the current point
    and of the clean point onto the linearised boundary (in the box), biased
    towards the clean point, and steps back towards it whenever it crosses; it
    needs no step size and finds small perturbations. The details follow
    AutoAttack's reference code (``fab_pt.py``): the first run starts at the clean
    point, each further restart at a random point at ``eps / 2``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``x`` to logits (one column: the logit of class 1 of a binary model).
    x : Tensor of shape (n_samples, ...)
        Inputs inside ``[clip_min, clip_max]``.
    y : Tensor of shape (n_samples,)
        Label indices: the true classes, or the targets when ``targeted=True``.
    eps : float
        Radius of the ``norm`` ball in which an adversarial point counts.
    norm : {"inf", 2}
    n_iter : int
        Iterations per run; each costs one forward and one backward pass (FAB-T
        and targeted) or one forward and ``n_classes`` backward passes (untargeted).
    n_restarts : int
        Runs per sample (and target class); a restart only attacks the samples not
        yet fooled.
    targeted : bool
        Move towards the classes ``y``. Incompatible with ``n_target_classes``.
    n_target_classes : int or None
        FAB-T (AutoAttack's default, 9): an untargeted attack made of runs
        towards each of the ``n_target_classes`` highest-scoring other classes of
        the clean input in turn (at most ``n_classes - 1``), on the samples not yet
        fooled; each run linearises only the boundary to its target. None:
        untargeted FAB (the nearest linearised boundary of all classes).
    alpha_max, eta, beta : float
        Largest weight of the clean point's projection, overshoot and backward
        step (0.1, 1.05 and 0.9 in AutoAttack).
    clip_min, clip_max : float, Tensor or None
        Input bounds.
    generator : torch.Generator, optional
        Source of the random restarts (none with ``n_restarts=1``).
    max_rows : int or None
        None: the runs of a sample (target classes, restarts) go one after the
        other, each on the samples not fooled yet, and restarts draw from
        ``generator`` in turn, as AutoAttack does. An int: when few samples are
        left, the next runs go side by side in one batch of at most ``max_rows``
        rows, and each restart draws from a key of its sample, so the result is
        that of running them in turn (``max_rows=1``) whatever the rows (see
        :mod:`~skrobust.attacks._runs`).
    keys : Tensor of int64 of shape (n_samples,) or None
        The per-sample keys of the random restarts instead of keys drawn from
        ``generator``.

    Returns
    -------
    x_adv : Tensor of the shape of ``x``
        For each sample, the first point found within ``eps`` that reaches the goal
        (an error, or the target when ``targeted``), else ``x`` unchanged.

    References
    ----------
    F. Croce and M. Hein, "Minimally distorted adversarial examples with a fast
    adaptive boundary attack", ICML 2020.
    """
    if n_target_classes is not None and targeted:
        raise ValueError("n_target_classes runs an untargeted attack; use targeted=False.")
    shape = x.shape
    flat = x.reshape(len(x), -1)

    def flat_module(rows):
        return module(rows.view(-1, *shape[1:]))

    lo, hi = _flat_bound(clip_min, x), _flat_bound(clip_max, x)
    with torch.no_grad():
        clean = two_class_scores(module(x))
    n_classes = clean.shape[1]
    if targeted:
        goal, targets = "target", [y]
        done = clean.argmax(1) == y
    else:
        goal = "error"
        done = clean.argmax(1) != y
        if n_target_classes is None:
            targets = [None]
        else:
            order = clean.argsort(dim=1, descending=True)
            targets = [order[:, i] for i in range(1, min(n_target_classes, n_classes - 1) + 1)]
    x_adv = flat.clone()
    # the runs of a sample (target, restart) in the order they would go one by one
    schedule = [(i, r) for i in range(len(targets)) for r in range(n_restarts)]
    keys = run_keys(keys, n_restarts > 1, max_rows, len(x), generator, x.device)
    for first, count, active in run_chunks(len(schedule), done, max_rows or 1):
        chunk, x0, n_a = schedule[first:first + count], flat[active], len(active)
        lo_a, hi_a = (None if b is None else b[active] for b in (lo, hi))
        starts = torch.cat([
            x0 if r == 0 else
            fab_start(x0, eps, norm, generator, lo_a, hi_a) if keys is None else
            fab_start(x0, eps, norm, None, lo_a, hi_a, keys=keys[active], counter=(i, r))
            for i, r in chunk])
        out, hit = fab_run(flat_module, x0.repeat(count, 1), starts, y[active].repeat(count),
                           chunk_targets(targets, chunk, active), goal, eps=eps, norm=norm,
                           n_iter=n_iter, alpha_max=alpha_max, eta=eta, beta=beta,
                           lo=_repeat(lo_a, count), hi=_repeat(hi_a, count),
                           groups=chunk_rows(n_a, count, x.device))
        for j in range(count):  # fold in rank order: a sample keeps its first success
            rows = slice(j * n_a, (j + 1) * n_a)
            new = hit[rows] & ~done[active]
            x_adv[active[new]] = out[rows][new]
            done[active] = done[active] | new
    return x_adv.view(shape)


def _repeat(t, count):
    return None if t is None else t.repeat(count, 1)
