"""Tensor-level gradient attacks: no numpy, no estimators, no validation.

Every function takes a ``module`` mapping inputs to logits, inputs ``x`` and label
indices ``y`` as tensors on the module's device, and returns a detached tensor.
The caller is responsible for eval mode (:func:`skrobust.utils.eval_mode`).
"""

import math

import torch
import torch.nn.functional as F


def two_class_scores(logits):
    """Scores with one column per class; a single column is the logit of class 1.

    The single logit ``l`` of a binary classifier is split symmetrically into
    ``(-l/2, l/2)``: the same softmax as ``(0, l)``, but the gradient of a confidently
    classified sample does not round to 0 in float32.
    """
    if logits.shape[1] == 1:
        return torch.cat([-logits / 2, logits / 2], dim=1)
    return logits


def attack_loss(logits, y, *, targeted=False):
    """Summed cross-entropy to ascend: towards errors, or towards ``y`` if targeted.

    A single output column is read as the logit of class 1 of a binary classifier
    (:func:`two_class_scores`). Summing (rather than averaging) keeps each sample's
    gradient independent of the batch size.
    """
    loss = F.cross_entropy(two_class_scores(logits), y, reduction="sum")
    return -loss if targeted else loss


def input_gradient(module, x, y, *, targeted=False):
    """Gradient of :func:`attack_loss` with respect to the input only.

    Uses :func:`torch.autograd.grad`, so the parameters' ``.grad`` stay untouched.

    Returns
    -------
    grad : Tensor of the shape of ``x``
    logits : Tensor of shape (n_samples, n_outputs), detached, evaluated at ``x``
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = module(x)
        loss = attack_loss(logits, y, targeted=targeted)
        (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def _per_sample_norm(t, norm):
    flat = t.flatten(1)
    if norm == 2:
        return flat.norm(p=2, dim=1).view(-1, *([1] * (t.dim() - 1)))
    return flat.abs().amax(dim=1).view(-1, *([1] * (t.dim() - 1)))


def ascent_direction(grad, norm):
    """Steepest-ascent direction of unit ``norm`` size: sign for Linf, normalised for L2."""
    if norm == 2:
        return grad / _per_sample_norm(grad, 2).clamp_min(1e-12)
    return grad.sign()


def clip(x, clip_min=None, clip_max=None):
    """Clip ``x`` to bounds given as None, floats or broadcastable tensors."""
    if clip_min is not None:
        x = torch.maximum(x, torch.as_tensor(clip_min, dtype=x.dtype, device=x.device))
    if clip_max is not None:
        x = torch.minimum(x, torch.as_tensor(clip_max, dtype=x.dtype, device=x.device))
    return x


def _clip_(x, clip_min=None, clip_max=None):
    """:func:`clip` in place on ``x`` (a tensor of our own that no graph needs)."""
    if clip_min is not None:
        torch.maximum(x, torch.as_tensor(clip_min, dtype=x.dtype, device=x.device), out=x)
    if clip_max is not None:
        torch.minimum(x, torch.as_tensor(clip_max, dtype=x.dtype, device=x.device), out=x)
    return x


def project(x, x0, eps, norm, clip_min=None, clip_max=None):
    """Project ``x`` onto the ``norm`` ball of radius ``eps`` around ``x0``, then the box.

    Clipping after the ball projection cannot leave the ball: ``x0`` lies in the box,
    so clipping only moves coordinates towards it. Outside autograd the work is done
    in place on one new tensor (one batch-sized allocation per call).
    """
    delta = x - x0
    if delta.requires_grad:  # keep every intermediate for the backward pass
        if norm == 2:
            scale = (eps / _per_sample_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
            delta = delta * scale
        else:
            delta = delta.clamp(-eps, eps)
        return clip(x0 + delta, clip_min, clip_max)
    if norm == 2:
        delta.mul_((eps / _per_sample_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0))
    elif isinstance(eps, torch.Tensor):
        torch.maximum(delta, -eps, out=delta)
        torch.minimum(delta, eps, out=delta)
    else:
        delta.clamp_(-eps, eps)
    return _clip_(delta.add_(x0), clip_min, clip_max)


def project_exact(x, x0, eps, norm, clip_min=None, clip_max=None):
    """Final projection onto the ball around ``x0`` and the box, exact in x0's dtype.

    ``x`` (the attack's float32 output) is cast to ``x0``'s dtype (float32 or
    float64) and projected there, so that rounding never leaves the ball: a Linf
    entry that ``x0 + delta`` rounds one ulp beyond ``eps`` steps back towards
    ``x0``, and an L2 perturbation longer than ``eps`` shrinks to a hair below it.
    The bounds ``clip_min``/``clip_max`` (None, floats or tensors broadcastable to a
    row) are applied in x0's dtype. An entry the attack left where it was (equal to
    ``x0`` rounded to x's dtype) comes back as ``x0`` itself, so a float64 sample the
    attack did not move is returned bit for bit. Runs on the tensors' device on a few
    batch-sized temporaries; returns a new tensor of x0's dtype and modifies neither
    input.
    """
    unmoved = (x == x0.to(x.dtype)) if x.dtype != x0.dtype else None
    delta = x.to(x0.dtype) - x0
    if norm == 2:
        norms = _per_sample_norm(delta.double(), 2)
        # shrink a hair below eps: the division and the product round in x0's dtype
        slack = 1 - 4 * torch.finfo(x0.dtype).eps
        scale = torch.where(norms > eps, eps / norms.clamp_min(1e-300) * slack,
                            torch.ones_like(norms))
        delta.mul_(scale.to(x0.dtype))
    else:
        delta.clamp_(-eps, eps)
    out = _clip_(delta.add_(x0), clip_min, clip_max)
    if norm != 2:
        # x0 + delta can round one ulp beyond eps; step those entries back towards x0
        spare = torch.sub(out, x0)
        over = spare.abs_() > eps
        torch.nextafter(out, x0, out=spare)
        torch.where(over, spare, out, out=out)
    if unmoved is not None:
        torch.where(unmoved, x0, out, out=out)
    return out


def random_init(x0, eps, norm, generator=None, clip_min=None, clip_max=None, *, keys=None,
                counter=()):
    """A point drawn uniformly from the ``norm`` ball of radius ``eps`` around ``x0``.

    Drawn from ``generator``, or with ``keys`` (one int64 per row) per row from the
    row's key and the tuple of ints ``counter`` (:func:`start_noise`), so that a
    row's start does not depend on the other rows.
    """
    direction = start_noise(x0, norm, generator, keys, counter)
    if norm == 2:
        direction = direction / _per_sample_norm(direction, 2).clamp_min(1e-12)
        n_dims = x0[0].numel()
        shape = (len(x0),) + (1,) * (x0.dim() - 1)
        if keys is None:
            u = torch.rand(shape, generator=generator, device=x0.device, dtype=x0.dtype)
        else:
            u = counter_uniform(keys, (*counter, 1), 1).to(x0.dtype).view(shape)
        delta = direction * eps * u ** (1.0 / n_dims)
    else:
        delta = direction * eps
    return clip(x0 + delta, clip_min, clip_max)


def fgsm(module, x, y, *, eps, norm="inf", targeted=False, clip_min=None, clip_max=None):
    """Fast Gradient (Sign) Method: one step of size ``eps`` (Goodfellow et al., 2015).

    Costs one forward and one backward pass.
    """
    grad, _ = input_gradient(module, x, y, targeted=targeted)
    return project(x + eps * ascent_direction(grad, norm), x, eps, norm, clip_min, clip_max)


def pgd(module, x, y, *, eps, step_size, n_iter, norm="inf", targeted=False,
        random_start=False, n_restarts=1, clip_min=None, clip_max=None, generator=None,
        keys=None):
    """Projected Gradient Descent (Madry et al., 2018); BIM without ``random_start``.

    Each iteration costs one forward and one backward pass. With ``n_restarts > 1``
    each restart adds one forward pass to check which samples it fooled; a sample
    keeps the first restart that succeeds, else the last one. Random starts come
    from ``generator``, or with ``keys`` (one int64 per row) from each row's key and
    the restart's index (:func:`random_init`).
    """
    best = None
    for restart in range(n_restarts):
        if random_start:
            x_adv = random_init(x, eps, norm, generator, clip_min, clip_max, keys=keys,
                                counter=(restart,))
        else:
            x_adv = x.clone()
        for _ in range(n_iter):
            grad, _ = input_gradient(module, x_adv, y, targeted=targeted)
            x_adv = project(x_adv + step_size * ascent_direction(grad, norm), x,
                            eps, norm, clip_min, clip_max)
        if n_restarts == 1:
            return x_adv.detach()
        with torch.no_grad():
            success = _success(module(x_adv), y, targeted)
        if best is None:
            best, best_success = x_adv, success
        else:
            take = success & ~best_success
            best = torch.where(take.view(-1, *([1] * (x.dim() - 1))), x_adv, best)
            best_success = best_success | success
    return best.detach()


def sync_period(device):
    """Steps between two host synchronisations of a search that drops finished rows:
    every step on a CPU (free there), every 5th on an accelerator (a stall there)."""
    return 1 if torch.device(device).type == "cpu" else 5


def _success(logits, y, targeted):
    pred = two_class_scores(logits).argmax(1)
    return pred == y if targeted else pred != y


# --- Square Attack (Andriushchenko et al., 2020) -------------------------------------

_SQUARE_P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32),
                      (4000, 64), (6000, 128), (8000, 256))


def square_p(p_init, iteration, n_queries):
    """Share of the pixels a Square Attack window covers at ``iteration`` (from 0).

    The published piecewise-constant schedule: ``p_init`` halves at fixed fractions
    of the budget (iteration rescaled to a 10000-query run), down to ``p_init / 512``.
    """
    it = int(iteration / n_queries * 10000)
    for bound, divisor in _SQUARE_P_SCHEDULE:
        if it <= bound:
            return p_init / divisor
    return p_init / 512


_MASK32 = 0xFFFFFFFF


def _mul32(x, c):
    """``x * c mod 2**32`` for int64 tensors ``x`` in [0, 2**32) without overflow."""
    low = (x & 0xFFFF) * c
    high = (((x >> 16) * c) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _hash32(x):
    """A 32-bit integer mixer (lowbias32) on int64 tensors in [0, 2**32) or ints."""
    if isinstance(x, int):
        x &= _MASK32
        x ^= x >> 16
        x = (x * 0x7FEB352D) & _MASK32
        x ^= x >> 15
        x = (x * 0x846CA68B) & _MASK32
        return x ^ (x >> 16)
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32  # < 2**63: no int64 overflow
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_uniform(keys, counter, n):
    """Uniform draws in [0, 1) that depend only on a row's key and a counter.

    A counter-based generator: row ``i`` gets ``n`` numbers that are a hash of
    ``keys[i]`` and the tuple of ints ``counter``, so a row's draws do not depend on
    the other rows, the batch or the device, and the global RNG is never used.

    Parameters
    ----------
    keys : Tensor of int64 of shape (n_rows,)
        One key per row, in [0, 2**32).
    counter : tuple of int
        Which draw this is (e.g. restart, iteration).
    n : int
        Numbers per row.

    Returns
    -------
    u : Tensor of float64 of shape (n_rows, n)
    """
    return _uniform(_mix_keys(keys), counter, n)


def start_noise(x, norm, generator=None, keys=None, counter=()):
    """Random directions the shape of ``x``: uniform in ``[-1, 1]`` (Linf) or standard
    Gaussian (L2).

    With ``keys`` (one int64 per row) row ``i`` is a function of ``keys[i]`` and the
    tuple of ints ``counter`` only (:func:`counter_uniform`; Gaussians by the
    Box-Muller transform), whatever the other rows; otherwise it is drawn from
    ``generator``.
    """
    if keys is None:
        if norm == 2:
            return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return 2 * torch.rand(x.shape, generator=generator, device=x.device,
                              dtype=x.dtype) - 1
    d = x[0].numel() if len(x) else 0
    if norm == 2:
        u = counter_uniform(keys, counter, 2 * d)
        radius = torch.sqrt(-2 * torch.log1p(-u[:, :d]))
        t = radius * torch.cos(2 * math.pi * u[:, d:])
    else:
        t = 2 * counter_uniform(keys, counter, d) - 1
    return t.to(x.dtype).view(x.shape)


def _mix_keys(keys):
    """The per-row state of :func:`counter_uniform` (hash the keys once per attack)."""
    return _hash32(_hash32(keys.to(torch.int64) & _MASK32) ^ 0x2545F491)


def _uniform(mixed, counter, n):
    stream = 0x9E3779B9
    for value in counter:
        stream = _hash32((_hash32(stream) + 0x632BE5AB) ^ (int(value) & _MASK32))
    slots = torch.arange(n, device=mixed.device, dtype=torch.int64)
    slot = _hash32(_hash32((slots * 0x9E3779B1 + 0x7F4A7C15) & _MASK32) ^ stream)
    return _hash32(mixed[:, None] ^ slot[None, :]).to(torch.float64) / 2.0**32


class _Draws:
    """The uniforms of one run, drawn for blocks of iterations at once (one hash per
    block instead of one per query); block size depends only on the row width, so a
    row's draws stay independent of the other rows. ``prepare(u, first)`` turns a
    block's uniforms (n_rows, block, width), whose first iteration is ``first``,
    into a tuple of tensors of shape (n_rows, block, ...): what the queries need,
    computed once per block instead of once per query."""

    def __init__(self, mixed, restart, width, prepare=None):
        self.mixed, self.restart, self.width = mixed, restart, width
        self.block = max(1, min(100, 4096 // width))
        self.prepare = prepare or (lambda u, first: (u,))
        self.index, self.values = None, None

    def __call__(self, it, active=None):
        """The draws of iteration ``it`` for the rows ``active`` (None: every row)."""
        index, offset = divmod(it, self.block)
        if index != self.index:
            self.index = index
            u = _uniform(self.mixed, (self.restart, 1 + index), self.block * self.width)
            self.values = self.prepare(u.view(len(self.mixed), self.block, self.width),
                                       index * self.block)
        if active is None:
            return tuple(v[:, offset] for v in self.values)
        return tuple(v[active, offset] for v in self.values)


def _square_eta(s, device, dtype):
    """The L2 Square Attack's window pattern: two rectangles of opposite sign, each a
    sum of nested squares weighted ``1 / k**2`` around its centre, unit L2 norm."""
    def rectangles(a, b):
        delta = torch.zeros(a, b, dtype=torch.float64)
        ca, cb = a // 2 + 1, b // 2 + 1
        ra, rb = ca - 1, cb - 1
        for k in range(max(ca, cb)):
            delta[max(ra, 0):min(ra + 2 * k + 1, a), max(rb, 0):min(rb + 2 * k + 1, b)] += (
                1.0 / (k + 1) ** 2)
            ra -= 1
            rb -= 1
        return delta / delta.norm().clamp_min(1e-12)

    eta = torch.zeros(s, s, dtype=torch.float64)
    eta[:s // 2] = rectangles(s // 2, s)
    eta[s // 2:] = -rectangles(s - s // 2, s)
    eta = eta / eta.norm().clamp_min(1e-12)
    return torch.stack([eta, eta.t()]).to(device=device, dtype=dtype)


def _windows(u_h, u_w, s, height, width):
    """Per-row square windows of side ``s`` at uniform positions: the row/column
    offsets inside the window (``-1`` outside) of shape (n, H) and (n, W)."""
    device = u_h.device
    top = torch.floor(u_h * (height - s + 1)).long().clamp_(0, height - s)
    left = torch.floor(u_w * (width - s + 1)).long().clamp_(0, width - s)
    rows = torch.arange(height, device=device)[None, :] - top[:, None]
    cols = torch.arange(width, device=device)[None, :] - left[:, None]
    rows = torch.where((rows >= 0) & (rows < s), rows, -1)
    cols = torch.where((cols >= 0) & (cols < s), cols, -1)
    return rows, cols


def _window_mask(rows, cols):
    """Boolean (n, 1, H, W) mask of the windows from :func:`_windows`."""
    return ((rows >= 0)[:, None, :, None] & (cols >= 0)[:, None, None, :])


def _signs(u):
    return torch.where(u < 0.5, -1.0, 1.0).to(torch.float64)


def _l2(t):
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


class _Search:
    """The rows a random search still queries, gathered at host checks only.

    Every ``check_every`` queries (:func:`sync_period`) the rows whose margin is
    still >= 0 are gathered, the one host synchronisation; between two checks the
    same rows are queried, and a row fooled in between keeps its point, margin and
    query count (on an accelerator it rides along until the next check, so that no
    query waits for the host). While every row stands nothing is gathered.
    """

    def __init__(self, x_best, margin, x0, rows, check_every):
        self.x_best, self.margin, self.x0, self.rows = x_best, margin, x0, rows
        self.queries = torch.ones(len(x_best), dtype=torch.int64, device=x_best.device)
        self.check_every = check_every
        self._gather(None)

    def _gather(self, active):
        """Work on the rows ``active`` (None: every row, without a copy)."""
        self.active = active
        if active is None:
            self.x, self.m, self.q = self.x_best, self.margin, self.queries
            self.x_org, self.act_rows = self.x0, self.rows
        else:
            self.x, self.m, self.q = (t[active] for t in (self.x_best, self.margin,
                                                          self.queries))
            self.x_org, self.act_rows = self.x0[active], self.rows[active]

    def check(self, it):
        """Gather the standing rows at a check; False once none is left."""
        if it % self.check_every:
            return True
        self._put_back()
        active = torch.nonzero(self.margin >= 0).flatten()
        if len(active) == 0:
            return False
        self._gather(None if len(active) == len(self.margin) else active)
        return True

    def update(self, candidate, new_margin):
        """Keep ``candidate`` where it lowers the margin of a row still standing."""
        better = new_margin < self.m
        if self.check_every == 1:  # gathered at this query: every row stands
            self.q = self.q + 1
        else:
            live = self.m >= 0
            better &= live
            self.q = self.q + live
        self.x = torch.where(better[:, None], candidate, self.x)
        self.m = torch.where(better, new_margin, self.m)

    def _put_back(self):
        if self.active is None:
            self.x_best, self.margin, self.queries = self.x, self.m, self.q
        else:
            self.x_best[self.active] = self.x
            self.margin[self.active] = self.m
            self.queries[self.active] = self.q

    def result(self):
        self._put_back()
        return self.x_best, self.margin, self.queries


def square(margin_fn, x, *, eps, n_queries, keys, norm="inf", p_init=0.8, image_shape=None,
           n_restarts=1, clip_min=None, clip_max=None, budget=None, project_fn=None,
           check_every=None):
    """Square Attack: score-based random search (Andriushchenko et al., ECCV 2020).

    Linf: each sample starts from vertical stripes ``x + eps * s`` (one random sign
    per channel and column); each query sets a random square window of side
    ``round(sqrt(p * H * W))`` to ``x +- eps`` (one random sign per channel), ``p``
    following :func:`square_p`, and keeps the change if it lowers the margin (when
    the window would not change, its signs are flipped: the paper redraws them until
    it changes, the same for one channel). L2: the start is a
    5x5 grid of :func:`_square_eta` patterns; each query moves the perturbation's mass
    from a second random window into the first one, rebuilt as the eta pattern plus
    its old content, keeping ``||delta||_2 = eps``. Without ``image_shape`` (tabular
    data, Linf only) the window is a random subset of a share ``p`` of the features.

    The clean inputs are queried first; then only the samples not fooled yet are
    queried, each query one call of ``margin_fn`` on those rows (on an accelerator a
    sample fooled since the last host check, at most ``check_every - 1`` queries
    ago, still rides along; its result no longer changes). Windows, signs and
    starts are drawn per row from :func:`counter_uniform` with ``keys``, so a row's
    result does not depend on the other rows. Restarts run on the rows still
    standing, from new random starts; each sample keeps its lowest margin.

    Parameters
    ----------
    margin_fn : callable
        ``margin_fn(x_rows, rows) -> Tensor (len(rows),)``: the margin to minimise of
        the samples ``rows`` (indices into ``x``) at inputs ``x_rows``; a sample is
        fooled once it is negative (e.g. true-class score minus the best other one).
    x : Tensor of shape (n, n_features)
        Clean inputs, flat.
    eps : float
        Radius of the ``norm`` ball.
    n_queries : int
        Queries per sample and restart, the first (the random start) included.
    keys : Tensor of int64 of shape (n,)
        Per-row random keys (see :func:`counter_uniform`).
    norm : {"inf", 2}, default="inf"
    p_init : float, default=0.8
    image_shape : tuple (C, H, W) or None, default=None
        How the flat features form an image; None: tabular search (Linf only).
    n_restarts : int, default=1
    clip_min, clip_max : float, Tensor or None
        Box bounds (ignored when ``project_fn`` is given); floats are fastest.
    budget : Tensor of shape (n_features,) or None
        Per-feature Linf budget (0: frozen feature); None: ``eps`` everywhere.
    project_fn : callable or None
        ``project_fn(x_new, rows) -> Tensor``: projection onto the feasible set of
        ``rows``; None: :func:`clip` to the box (every update of the search lies in
        the ball by construction).
    check_every : int or None, default=None
        Queries between two host synchronisations (None: :func:`sync_period` of
        ``x``'s device). The result does not depend on it.

    Returns
    -------
    x_adv : Tensor of shape (n, n_features)
        The lowest-margin point found for each sample.
    queries : Tensor of int64 of shape (n,)
        Queries each sample took until it was fooled or its budget ran out (the
        calls of ``margin_fn`` that included it, rides along not counted): at most
        ``1 + n_restarts * n_queries``.
    """
    if norm == 2 and image_shape is None:
        raise ValueError("the L2 Square Attack needs an image_shape")
    if budget is None:
        budget = torch.full(x.shape[1:], float(eps), dtype=x.dtype, device=x.device)
    if project_fn is None:  # the updates stay in the ball by construction: clip only
        if all(b is None or isinstance(b, (int, float)) for b in (clip_min, clip_max)):
            def project_fn(x_new, rows):
                if clip_min is None and clip_max is None:
                    return x_new
                return x_new.clamp(min=clip_min, max=clip_max)
        else:
            def project_fn(x_new, rows):
                return clip(x_new, clip_min, clip_max)

    check_every = sync_period(x.device) if check_every is None else check_every
    x_best = x.clone()
    all_rows = torch.arange(len(x), device=x.device)
    margin = margin_fn(x, all_rows).to(torch.float64)  # samples fooled already stay clean
    queries = torch.ones(len(x), dtype=torch.int64, device=x.device)
    for restart in range(n_restarts):
        rows = all_rows[margin >= 0]
        if len(rows) == 0:
            break
        run = _square_linf if norm != 2 else _square_l2
        x_run, m_run, q_run = run(margin_fn, x[rows], rows, keys[rows], restart, eps=eps,
                                  budget=budget, n_queries=n_queries, p_init=p_init,
                                  image_shape=image_shape, project_fn=project_fn,
                                  check_every=check_every)
        queries[rows] += q_run
        better = m_run < margin[rows]
        x_best[rows[better]] = x_run[better]
        margin[rows[better]] = m_run[better]
    return x_best, queries


def _square_linf(margin_fn, x0, rows, keys, restart, *, eps, budget, n_queries, p_init,
                 image_shape, project_fn, check_every):
    n, n_features = x0.shape
    dtype = x0.dtype
    mixed = _mix_keys(keys)
    uniform_budget = bool((budget == eps).all())
    if image_shape is None:
        mutable = torch.nonzero(budget > 0).flatten()
        n_mut = len(mutable)
        u = _uniform(mixed, (restart, 0), n_features)
        start = x0 + _signs(u).to(dtype) * budget
    else:
        c, h, w = image_shape
        budget = budget.view(1, c, h, w)
        u = _uniform(mixed, (restart, 0), c * w)
        stripes = _signs(u).to(dtype).view(n, c, 1, w)
        start = (x0.view(n, c, h, w) + stripes * budget).view(n, -1)
        tables = {}  # side -> masks of the rows/columns a window at each offset covers
    # +-eps in X's dtype, as eps * sign computes it: one select per query
    signed_eps = torch.tensor([-eps, eps], dtype=dtype, device=x0.device)

    def side(it):
        p = square_p(p_init, it, n_queries)
        return min(max(int(round((p * h * w) ** 0.5)), 1), h, w)

    def windows(u, first):
        # offsets uniform in [0, size - s]: u < 1, so u * (size - s + 1) < size - s + 1
        sides = torch.tensor([side(it) for it in range(first, first + u.shape[1])],
                             device=u.device)
        signs = (signed_eps[(u[..., 2:] >= 0.5).long()] if uniform_budget
                 else _signs(u[..., 2:]).to(dtype))
        return ((u[..., 0] * (h - sides + 1)).long(), (u[..., 1] * (w - sides + 1)).long(),
                signs)

    if image_shape is None:
        draws = _Draws(mixed, restart, 2 * n_features)
    else:
        draws = _Draws(mixed, restart, 2 + c, prepare=windows)
    x_best = project_fn(start, rows)
    search = _Search(x_best, margin_fn(x_best, rows).to(torch.float64), x0, rows,
                     check_every)
    if image_shape is None and n_mut == 0:
        return search.result()
    for it in range(n_queries - 1):
        if not search.check(it):
            break
        active, x_cur, x_org = search.active, search.x, search.x_org
        act_rows = search.act_rows
        m = len(x_cur)
        if image_shape is None:  # a random subset of k features, a sign per feature
            (u,) = draws(it, active)
            p = square_p(p_init, it, n_queries)
            k = min(max(1, int(round(p * n_mut))), n_mut)
            chosen = mutable[torch.topk(u[:, mutable], k, dim=1, largest=False).indices]
            mask = torch.zeros_like(x_cur, dtype=torch.bool).scatter_(1, chosen, True)
            step = _signs(u[:, n_features:]).to(dtype) * budget
        else:  # a square window of side s, a sign per channel
            s = side(it)
            if s not in tables:
                tables[s] = tuple(_window_table(s, size, x0.device) for size in (h, w))
            top, left, step = draws(it, active)
            mask = tables[s][0][top][:, None, :, None] & tables[s][1][left][:, None, None, :]
            step = step.view(m, c, 1, 1) if uniform_budget else step.view(m, c, 1, 1) * budget
            x_cur, x_org = x_cur.view(m, c, h, w), x_org.view(m, c, h, w)
        candidate = project_fn(torch.where(mask, x_org + step, x_cur).view(m, -1), act_rows)
        x_cur = x_cur.reshape(m, -1)
        # where the window would not change, flip its signs (the paper redraws them)
        same = (candidate == x_cur).all(dim=1)
        if check_every == 1:  # on the CPU: only the rows that need it
            same = torch.nonzero(same).flatten()
            if len(same):
                new = torch.where(mask[same], x_org[same] - step[same],
                                  x_cur[same].view_as(x_org[same]))
                candidate[same] = project_fn(new.view(len(same), -1), act_rows[same])
        else:  # every row, selected on the device: no host synchronisation
            new = torch.where(mask, x_org - step, x_cur.view_as(x_org))
            candidate = torch.where(same[:, None], project_fn(new.view(m, -1), act_rows),
                                    candidate)
        search.update(candidate, margin_fn(candidate, act_rows).to(torch.float64))
    return search.result()


def _window_table(s, size, device):
    """Row ``t``: which of ``size`` positions a window of side ``s`` at offset ``t``
    covers, for ``t = 0 .. size - s``."""
    positions = torch.arange(size, device=device)
    offsets = torch.arange(size - s + 1, device=device)[:, None]
    return (positions >= offsets) & (positions < offsets + s)


def _square_l2(margin_fn, x0, rows, keys, restart, *, eps, budget, n_queries, p_init,
               image_shape, project_fn, check_every):
    n = len(x0)
    c, h, w = image_shape
    device, dtype = x0.device, x0.dtype
    img = x0.view(n, c, h, w)

    def normalised(delta):
        return delta / _l2(delta).clamp_min(1e-12)

    # start: a grid of eta patterns of side h // 5, one random sign per block and channel
    s = max(h // 5, 1)
    eta_init = _square_eta(s, device, dtype)
    delta = torch.zeros_like(img)
    n_h, n_w = h // s, w // s
    top0, left0 = (h - s * n_h) // 2, (w - s * n_w) // 2
    mixed = _mix_keys(keys)
    u = _uniform(mixed, (restart, 0), n_h * n_w * (c + 1))
    u = u.view(n, n_h * n_w, c + 1)
    for block in range(n_h * n_w):
        top = top0 + (block // n_w) * s
        left = left0 + (block % n_w) * s
        flip = (u[:, block, c] < 0.5).long()
        pattern = eta_init[flip].view(n, 1, s, s)
        sign = _signs(u[:, block, :c]).to(dtype).view(n, c, 1, 1)
        delta[:, :, top:top + s, left:left + s] += pattern * sign
    x_best = project_fn((img + normalised(delta) * eps).view(n, -1), rows)
    search = _Search(x_best, margin_fn(x_best, rows).to(torch.float64), img, rows,
                     check_every)
    draws = _Draws(mixed, restart, 5 + c)
    etas = {}
    for it in range(n_queries - 1):
        if not search.check(it):
            break
        x_org, act_rows = search.x_org, search.act_rows
        m = len(x_org)
        p = square_p(p_init, it, n_queries)
        s = max(int(round((p * h * w) ** 0.5)), 3)
        s += 1 - s % 2  # odd, so the pattern has a centre
        s = min(s, h, w)
        if s not in etas:
            etas[s] = _square_eta(s, device, dtype)
        eta = etas[s]
        (u,) = draws(it, search.active)
        rows1, cols1 = _windows(u[:, 0], u[:, 1], s, h, w)
        rows2, cols2 = _windows(u[:, 2], u[:, 3], s, h, w)
        mask1, mask2 = _window_mask(rows1, cols1), _window_mask(rows2, cols2)
        delta = search.x.view(m, c, h, w) - x_org
        norm_image = _l2(delta)
        norm_windows = _l2(delta * (mask1 | mask2))
        window_norm1 = (delta * mask1).pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        flip = (u[:, 4] < 0.5).long()
        pattern = eta[flip[:, None, None], rows1.clamp(min=0)[:, :, None],
                      cols1.clamp(min=0)[:, None, :]].unsqueeze(1) * mask1
        sign = _signs(u[:, 5:5 + c]).to(dtype).view(m, c, 1, 1)
        new = pattern * sign + delta * mask1 / (window_norm1 + 1e-12)
        new_norm = new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
        mass = ((eps ** 2 - norm_image ** 2).clamp_min(0) / c + norm_windows ** 2).sqrt()
        new = new / (new_norm + 1e-12) * mass
        delta = torch.where(mask2, torch.zeros_like(delta), delta)
        delta = torch.where(mask1, new, delta)
        candidate = project_fn((x_org + normalised(delta) * eps).view(m, -1), act_rows)
        search.update(candidate, margin_fn(candidate, act_rows).to(torch.float64))
    return search.result()


# kernels in their own modules build on the steps above; imported last, so that
# they find this module's names defined
from ._functional_fab import boundary_projection, fab  # noqa: E402
