"""Feature constraints of the attack transformers (tabular data).

Per-feature budgets, immutable features, bounds learned from the data and integer
features all reduce to one change of coordinates. With the radius ``r = max(eps)``
and a per-feature weight ``w = feature_scale * eps / r`` (0 for an immutable
feature) the attack runs on ``z`` with ``x = x0 + w * z`` inside the ordinary
scalar ``r``-ball, so the constrained set is the weighted ball

    ``|| (x - x0) / w ||_p <= r``   (features with ``w = 0`` never move)

intersected with the box ``[clip_min, clip_max]``. For ``p = inf`` this is the box
``|x_j - x0_j| <= budget_j``; for ``p = 2`` an axis-aligned ellipsoid with
semi-axes ``budget_j``. The tensor-level attacks are unchanged: they see a module
of ``z`` with the scalar radius ``r``.

Integer features: the module of ``z`` rounds their change to the nearest integer
(at most ``floor(budget_j)``) before the victim sees it, with a straight-through
gradient, so every point the victim is queried on is integral while small steps
still accumulate in ``z`` (rounding the iterate itself after each step would
undo every step smaller than 1/2). The final projection rounds the same way and
truncates towards ``x0`` whatever the ball or the box would not hold.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

EPS_SCALES = (None, "std", "range")


def check_feature_mask(value, name, n_features):
    """A boolean mask of shape (n_features,) from None, a mask or feature indices."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype == bool:
        if array.shape != (n_features,):
            raise ValueError(
                f"{name} is a boolean mask of shape {array.shape}; it needs shape "
                f"({n_features},), one entry per feature of X (or pass feature indices)."
            )
        return array.copy()
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"{name} must be a boolean mask of shape ({n_features},) or a 1-d array of "
            f"integer feature indices, got {value!r}."
        )
    if array.size and (array.min() < -n_features or array.max() >= n_features):
        raise ValueError(
            f"{name} has feature indices out of range for X with {n_features} features: "
            f"{array.tolist()}."
        )
    mask = np.zeros(n_features, dtype=bool)
    mask[array] = True
    return mask


def check_eps(eps, n_features, *, allow_array):
    """``eps`` as a float, or (with ``allow_array``) a float64 array of n_features."""
    if allow_array and not isinstance(eps, numbers.Real) and np.ndim(eps) == 1:
        array = np.asarray(eps, dtype=np.float64)
        if array.shape != (n_features,):
            raise ValueError(
                f"eps has shape {array.shape}; a per-feature budget needs shape "
                f"({n_features},), one value per feature of X."
            )
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise ValueError("eps must hold finite values >= 0.")
        return array
    if not isinstance(eps, numbers.Real) or not np.isfinite(eps) or eps < 0:
        extra = " or an array of shape (n_features,)" if allow_array else ""
        raise ValueError(f"eps={eps!r} must be a finite float >= 0{extra}.")
    return float(eps)


def feature_scale(X, eps_scale):
    """Per-feature scale learned at fit: ones, the standard deviation or the range."""
    if eps_scale not in EPS_SCALES:
        raise ValueError(f'eps_scale={eps_scale!r} is not supported; use None, "std" or '
                         '"range".')
    if eps_scale == "std":
        return np.asarray(X, dtype=np.float64).std(axis=0)
    if eps_scale == "range":
        # max and min are exact in X's dtype; the difference is taken in float64
        return X.max(axis=0).astype(np.float64) - X.min(axis=0).astype(np.float64)
    return np.ones(X.shape[1])  # no pass over X (nor a float64 copy of it)


@dataclass(frozen=True)
class FeatureConstraints:
    """Resolved constraints of one fitted attack (numpy, float64).

    Attributes
    ----------
    budget : ndarray of shape (n_features,)
        Largest change of each feature alone (0: immutable).
    radius : float
        Radius ``r`` of the ball in ``z``: ``eps``, or its largest entry.
    weight : ndarray of shape (n_features,)
        ``scale * eps / radius`` (0 where the feature is frozen), so that
        ``budget = weight * radius``.
    integer : ndarray of bool of shape (n_features,) or None
        Features kept integral.
    clip_min, clip_max : float, ndarray of shape (n_features,) or None
        Box bounds, widened per sample to contain the clean input.
    """

    budget: np.ndarray
    radius: float
    weight: np.ndarray
    integer: np.ndarray | None
    clip_min: object
    clip_max: object

    @classmethod
    def resolve(cls, eps, scale, immutable, integer, clip_min, clip_max):
        eps = np.broadcast_to(np.asarray(eps, dtype=np.float64), scale.shape)
        radius = float(eps.max()) if eps.size else 0.0
        weight = scale * eps / radius if radius > 0 else np.zeros_like(eps)
        if immutable is not None:
            weight = np.where(immutable, 0.0, weight)
        budget = eps * scale if immutable is None else np.where(immutable, 0.0, eps * scale)
        if integer is not None and not integer.any():
            integer = None
        return cls(budget, radius, weight, integer, clip_min, clip_max)

    def sample_bounds(self, X):
        """Per-sample box ``(lo, hi)`` of shape X.shape (float64), containing X."""
        X = np.asarray(X, dtype=np.float64)
        lo = np.full(X.shape, -np.inf) if self.clip_min is None else np.minimum(self.clip_min, X)
        hi = np.full(X.shape, np.inf) if self.clip_max is None else np.maximum(self.clip_max, X)
        return lo, hi

    def check_integral(self, X):
        if self.integer is not None:
            integral = True
            for start in range(0, len(X), 1024):  # row chunks: no full-size temporary
                values = X[start:start + 1024, self.integer]
                integral &= bool(np.all(np.abs(values - np.round(values)) <= 1e-6))
            if not integral:
                raise ValueError(
                    "X has non-integral values in integer_features; round them first or "
                    "leave those features out of integer_features."
                )

    def project(self, X, X_adv, norm, *, chunk=64):
        """Project ``X_adv`` onto the constrained set around ``X``, in X's dtype.

        Works on ``chunk`` rows at a time, so its float64 temporaries stay small
        whatever the number of rows; returns a new array.
        """
        out = np.empty(np.shape(X), dtype=X.dtype)
        for start in range(0, len(X), chunk):
            rows = slice(start, start + chunk)
            out[rows] = self._project_rows(X[rows], X_adv[rows], norm)
        return out

    def _project_rows(self, X, X_adv, norm):
        delta = np.asarray(X_adv, dtype=np.float64) - X
        frozen = self.weight == 0
        delta[:, frozen] = 0.0
        integer = self.integer
        if integer is not None:
            delta[:, integer] = np.round(delta[:, integer])  # snap float32 noise
        if norm == "inf":
            delta = np.clip(delta, -self.budget, self.budget)
        else:
            live = ~frozen
            scaled = delta[:, live] / self.weight[live]
            norms = np.linalg.norm(scaled, axis=1)
            over = norms > self.radius
            if np.any(over):
                factor = _shrink_factors(scaled[over], self.radius,
                                         None if integer is None else integer[live])
                delta[np.ix_(over, live)] *= factor
        if integer is not None:
            delta[:, integer] = np.trunc(delta[:, integer])
        lo, hi = self.sample_bounds(X)
        X_adv = np.clip(X + delta, lo, hi)
        if integer is not None:
            X_adv[:, integer] = X[:, integer] + np.trunc(X_adv[:, integer] - X[:, integer])
        X_adv = X_adv.astype(X.dtype, copy=False)
        if norm == "inf":
            # X + delta can round (in float64, or to X's float32) one ulp beyond a
            # budget; step those entries back towards X, so the budget holds in X's dtype
            over = np.abs(X_adv - X) > self.budget.astype(X.dtype)
            if over.any():
                X_adv[over] = np.nextafter(X_adv[over], X[over])
        return X_adv

    def torch_parts(self, module, x0, device):
        """The module of ``z`` and the per-sample ``z`` box for a batch ``x0`` (tensor).

        Computed in torch on ``device``: the box widened to contain ``x0`` is
        ``min(clip_min, x0) - x0 = min(clip_min - x0, 0)`` (and the same for the upper
        bound), divided by the weight; frozen features get an infinite box (their
        weight is 0, ``z`` never moves them). No bound gives None.
        """
        weight = torch.as_tensor(self.weight, dtype=x0.dtype, device=device)
        live = weight > 0
        safe = torch.where(live, weight, torch.ones_like(weight))

        def z_bound(bound, widen, infinity):
            if bound is None:
                return None
            z = torch.as_tensor(bound, dtype=x0.dtype, device=device) - x0
            widen(z.div_(safe), 0.0)
            return z.masked_fill_(~live, infinity)

        z_lo = z_bound(self.clip_min, lambda z, v: z.clamp_(max=v), -np.inf)
        z_hi = z_bound(self.clip_max, lambda z, v: z.clamp_(min=v), np.inf)
        integer = None
        if self.integer is not None:
            integer = torch.as_tensor(self.integer, device=device) & live
            cap = torch.as_tensor(np.floor(self.budget + 1e-9), dtype=x0.dtype, device=device)
            integer = (integer, cap)
        return ScaledModule(module, weight, x0, integer), z_lo, z_hi


def _shrink_factors(scaled, radius, integer):
    """Per-row factors bringing weighted L2 norms to just under ``radius``.

    Integer coordinates are kept when they fit alone (only the others shrink),
    otherwise everything shrinks and the integer ones are truncated afterwards.
    """
    slack = 1 - 4 * np.finfo(np.float64).eps
    norms = np.linalg.norm(scaled, axis=1)
    factor = np.broadcast_to((radius / norms * slack)[:, None], scaled.shape).copy()
    if integer is None or not integer.any():
        return factor
    n_int = np.linalg.norm(scaled[:, integer], axis=1)
    n_cont = np.linalg.norm(scaled[:, ~integer], axis=1)
    fits = n_int <= radius
    keep = np.sqrt(np.maximum(radius**2 - n_int**2, 0.0)) / np.maximum(n_cont, 1e-300) * slack
    cont = np.where(fits, np.minimum(keep, 1.0), factor[:, 0])
    factor[:, ~integer] = cont[:, None]
    factor[:, integer] = np.where(fits, 1.0, factor[:, 0])[:, None]
    return factor


class ScaledModule(nn.Module):
    """``z -> module(x0 + weight * z)`` for one batch ``x0``, integer features rounded."""

    def __init__(self, module, weight, x0, integer=None):
        super().__init__()
        self.module = module
        self.weight, self.x0, self.integer = weight, x0, integer

    def to_input(self, z):
        delta = self.weight * z
        if self.integer is not None:
            mask, cap = self.integer
            rounded = torch.maximum(torch.minimum(torch.round(delta), cap), -cap)
            # straight-through: the value of the rounded change, the gradient of delta
            delta = torch.where(mask, delta + (rounded - delta).detach(), delta)
        return self.x0 + delta

    def forward(self, z):
        return self.module(self.to_input(z))
