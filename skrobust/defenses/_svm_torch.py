"""Fitted one-vs-all kernel machines re-expressed as differentiable torch modules.

:class:`OvAScores` computes, for a fitted :class:`~sklearn.multiclass.OneVsRestClassifier`
whose binary estimators are RBF or linear :class:`~sklearn.svm.SVC` (or any linear
model with ``coef_``/``intercept_``), the same per-class decision values as its
``decision_function``, from the support vectors, dual coefficients, intercepts and
``gamma``. Support vectors shared by several classes (all binary machines are trained
on the same rows) are stored once. Computations run in float64 by default, so the
scores match scikit-learn's to ~1e-12 and gradients are exact up to rounding.

This module registers ``OneVsRestClassifier`` into the one scikit-learn -> torch
converter (:func:`skrobust.utils.register_sklearn_converter`) when
:mod:`skrobust.defenses` is imported, so :func:`~skrobust.utils.sklearn_to_torch` and
:func:`~skrobust.utils.as_torch_model` take such classifiers (alone or ending a
pipeline) and DNR builds its torch model from the same re-expression.
"""

import numbers

import numpy as np
import torch
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC
from torch import nn

from ..utils._sklearn_torch import register_sklearn_converter, sklearn_to_torch


def _gamma(svc):
    """The numeric ``gamma`` a fitted SVC used (resolves "scale" / "auto")."""
    gamma = getattr(svc, "_gamma", svc.gamma)
    if isinstance(gamma, numbers.Real):
        return float(gamma)
    raise TypeError(f"Cannot read the numeric gamma of {svc!r}.")


def _binary_parts(estimator):
    """``("rbf", gamma, support, vectors, dual)`` or ``("linear", w, b)`` of one
    fitted binary estimator whose positive decision means the positive class."""
    if isinstance(estimator, SVC):
        if len(estimator.classes_) != 2:
            raise TypeError("Only binary SVCs can be re-expressed per class.")
        kernel = estimator.kernel
        if kernel == "rbf":
            return ("rbf", _gamma(estimator), estimator.support_,
                    estimator.support_vectors_, estimator.dual_coef_[0],
                    float(estimator.intercept_[0]))
        if kernel == "linear":
            w = estimator.dual_coef_[0] @ estimator.support_vectors_
            return ("linear", np.asarray(w).ravel(), float(estimator.intercept_[0]))
        raise TypeError(
            f"SVC(kernel={kernel!r}) has no torch re-expression; use kernel='rbf' or "
            "kernel='linear'."
        )
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    if coef is not None and intercept is not None and np.ndim(coef) == 2 and len(coef) == 1:
        return ("linear", np.asarray(coef[0], dtype=np.float64),
                float(np.ravel(intercept)[0]))
    raise TypeError(
        f"{type(estimator).__name__} cannot be re-expressed in torch for gradient "
        "attacks: use SVC(kernel='rbf'), SVC(kernel='linear') or a linear model with "
        "coef_ and intercept_ (LinearSVC, LogisticRegression, RidgeClassifier)."
    )


class OvAScores(nn.Module):
    """Per-class decision values of a fitted one-vs-rest classifier, in torch.

    ``scores(x) = sum_g exp(-gamma_g * ||x - S_g||^2) @ A_g + x @ W + b`` where each
    RBF group ``g`` holds the support vectors of the binary machines sharing one
    ``gamma`` (deduplicated through ``support_``), ``A_g`` their dual coefficients per
    class, ``W`` the collapsed linear parts and ``b`` the intercepts. With two classes
    scikit-learn fits one machine with decision ``s``; the columns are ``(-s, s)``.

    Parameters
    ----------
    ovr : fitted OneVsRestClassifier
        Its ``estimators_`` are the binary machines, one per class (one for 2 classes).
    dtype : torch.dtype, default=torch.float64
        Dtype of the stored parameters and of the computation.
    binary_columns : {1, 2}, default=2
        Columns for two classes: ``(-s, s)`` (DNR's per-class layout) or ``s``
        alone, the logit-of-``classes_[1]`` layout of
        :func:`~skrobust.utils.sklearn_to_torch`.
    """

    def __init__(self, ovr, dtype=torch.float64, *, binary_columns=2):
        super().__init__()
        if binary_columns not in (1, 2):
            raise ValueError(f"binary_columns={binary_columns!r} must be 1 or 2.")
        estimators = list(ovr.estimators_)
        n_out = len(estimators)
        self.binary = len(ovr.classes_) == 2 and n_out == 1 and binary_columns == 2
        parts = [_binary_parts(est) for est in estimators]
        n_features = None
        groups = {}
        linear, intercept = {}, np.zeros(n_out)
        for k, part in enumerate(parts):
            if part[0] == "rbf":
                _, gamma, support, vectors, dual, b = part
                groups.setdefault(gamma, []).append((k, support, vectors, dual))
                n_features = vectors.shape[1]
            else:
                _, w, b = part
                linear[k] = w
                n_features = len(w)
            intercept[k] = b
        self.gammas = []
        for i, (gamma, members) in enumerate(groups.items()):
            index = np.unique(np.concatenate([support for _, support, _, _ in members]))
            vectors = np.zeros((len(index), n_features))
            coefs = np.zeros((len(index), n_out))
            for k, support, vec, dual in members:
                pos = np.searchsorted(index, support)
                vectors[pos] = vec
                coefs[pos, k] = dual
            self.register_buffer(f"sv{i}", torch.as_tensor(vectors, dtype=dtype))
            self.register_buffer(f"sv_sq{i}", torch.as_tensor((vectors**2).sum(1), dtype=dtype))
            self.register_buffer(f"coef{i}", torch.as_tensor(coefs, dtype=dtype))
            self.gammas.append(gamma)
        weight = np.zeros((n_features, n_out))
        for k, w in linear.items():
            weight[:, k] = w
        self.has_linear = bool(linear)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=dtype))
        self.register_buffer("intercept", torch.as_tensor(intercept, dtype=dtype))

    def forward(self, x):
        x = x.to(self.intercept.dtype)
        scores = self.intercept.expand(len(x), -1)
        if self.has_linear:
            scores = scores + x @ self.weight
        if self.gammas:
            x_sq = (x * x).sum(1, keepdim=True)
            for i, gamma in enumerate(self.gammas):
                sv = getattr(self, f"sv{i}")
                dist = (x_sq + getattr(self, f"sv_sq{i}") - 2.0 * (x @ sv.T)).clamp_min(0.0)
                scores = scores + torch.exp(-gamma * dist) @ getattr(self, f"coef{i}")
        if self.binary:
            scores = torch.cat([-scores, scores], dim=1)
        return scores

    @property
    def n_support_vectors(self):
        """Number of distinct support vectors stored."""
        return sum(len(getattr(self, f"sv{i}")) for i in range(len(self.gammas)))


def scaler_module(scaler, dtype=torch.float64):
    """A fitted ``StandardScaler`` in torch through the one converter (None: identity).

    Expects inputs in ``dtype``.
    """
    return nn.Identity() if scaler is None else sklearn_to_torch(scaler, dtype=dtype)


def _check_ova(ovr):
    """Why an (unfitted or fitted) OneVsRestClassifier has no torch form, or None."""
    base = ovr.estimator
    if isinstance(base, SVC):
        if base.kernel not in ("rbf", "linear"):
            return (f"has SVC(kernel={base.kernel!r}) machines; one-vs-rest SVCs are "
                    "differentiable with kernel='rbf' or kernel='linear'")
        return None
    if isinstance(base, LinearClassifierMixin):
        return None
    return (f"has {type(base).__name__} machines; one-vs-rest classifiers are "
            "differentiable with SVC(kernel='rbf'), SVC(kernel='linear') or a linear model")


def _ova_module(ovr, dtype):
    return OvAScores(ovr, dtype, binary_columns=1)


register_sklearn_converter(
    OneVsRestClassifier, _ova_module, check=_check_ova,
    description="OneVsRestClassifier of RBF or linear SVCs or linear models")
