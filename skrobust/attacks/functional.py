"""Tensor-level gradient attacks: no numpy, no estimators, no validation.

Every function takes a ``module`` mapping inputs to logits, inputs ``x`` and label
indices ``y`` as tensors on the module's device, and returns a detached tensor.
The caller is responsible for eval mode (:func:`skrobust.utils.eval_mode`).
"""

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


def project(x, x0, eps, norm, clip_min=None, clip_max=None):
    """Project ``x`` onto the ``norm`` ball of radius ``eps`` around ``x0``, then the box.

    Clipping after the ball projection cannot leave the ball: ``x0`` lies in the box,
    so clipping only moves coordinates towards it.
    """
    delta = x - x0
    if norm == 2:
        scale = (eps / _per_sample_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * scale
    else:
        delta = delta.clamp(-eps, eps)
    return clip(x0 + delta, clip_min, clip_max)


def project_exact(x, x0, eps, norm, clip_min=None, clip_max=None):
    """Final projection onto the ball around ``x0`` and the box, exact in x0's dtype.

    ``x`` (the attack's float32 output) is cast to ``x0``'s dtype (float32 or
    float64) and projected there, so that rounding never leaves the ball: a Linf
    entry that ``x0 + delta`` rounds one ulp beyond ``eps`` steps back towards
    ``x0``, and an L2 perturbation longer than ``eps`` shrinks to a hair below it.
    The bounds ``clip_min``/``clip_max`` (None, floats or tensors broadcastable to a
    row) are applied in x0's dtype. Runs on the tensors' device on batch-sized
    temporaries only; returns a new tensor of x0's dtype and modifies neither input.
    """
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
    out = delta.add_(x0)
    if clip_min is not None:
        torch.maximum(out, torch.as_tensor(clip_min, dtype=out.dtype, device=out.device),
                      out=out)
    if clip_max is not None:
        torch.minimum(out, torch.as_tensor(clip_max, dtype=out.dtype, device=out.device),
                      out=out)
    if norm != 2:
        # x0 + delta can round one ulp beyond eps; step those entries back towards x0
        over = (out - x0).abs_() > eps
        out = torch.where(over, torch.nextafter(out, x0), out)
    return out


def random_init(x0, eps, norm, generator=None, clip_min=None, clip_max=None):
    """A point drawn uniformly from the ``norm`` ball of radius ``eps`` around ``x0``."""
    if norm == 2:
        direction = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        direction = direction / _per_sample_norm(direction, 2).clamp_min(1e-12)
        n_dims = x0[0].numel()
        u = torch.rand((len(x0),) + (1,) * (x0.dim() - 1), generator=generator,
                       device=x0.device, dtype=x0.dtype)
        delta = direction * eps * u ** (1.0 / n_dims)
    else:
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        delta = (2 * u - 1) * eps
    return clip(x0 + delta, clip_min, clip_max)


def fgsm(module, x, y, *, eps, norm="inf", targeted=False, clip_min=None, clip_max=None):
    """Fast Gradient (Sign) Method: one step of size ``eps`` (Goodfellow et al., 2015).

    Costs one forward and one backward pass.
    """
    grad, _ = input_gradient(module, x, y, targeted=targeted)
    return project(x + eps * ascent_direction(grad, norm), x, eps, norm, clip_min, clip_max)


def pgd(module, x, y, *, eps, step_size, n_iter, norm="inf", targeted=False,
        random_start=False, n_restarts=1, clip_min=None, clip_max=None, generator=None):
    """Projected Gradient Descent (Madry et al., 2018); BIM without ``random_start``.

    Each iteration costs one forward and one backward pass. With ``n_restarts > 1``
    each restart adds one forward pass to check which samples it fooled; a sample
    keeps the first restart that succeeds, else the last one.
    """
    best = None
    for _ in range(n_restarts):
        if random_start:
            x_adv = random_init(x, eps, norm, generator, clip_min, clip_max)
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


def _success(logits, y, targeted):
    pred = two_class_scores(logits).argmax(1)
    return pred == y if targeted else pred != y
