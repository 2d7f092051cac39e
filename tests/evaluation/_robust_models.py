"""Small models shared by the robustness-evaluation tests: sound ones and broken ones."""

from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Rounding(nn.Module):
    """Rounds its input to 4 grey levels first: zero input gradients (masking)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 4) / 4)


class AlwaysDropout(nn.Module):
    """Dropout that ignores eval mode: stochastic outputs."""

    def __init__(self, inner, p=0.5):
        super().__init__()
        self.inner, self.p = inner, p

    def forward(self, x):
        return self.inner(F.dropout(x, self.p, training=True))


class Bumps(nn.Module):
    """A 1-feature, 2-class model with bumps of the class-1 logit.

    ``logit_1(x) = sum_k h_k exp(-((x - c_k) / w_k)^2) - 5``, ``logit_0 = 0``. At
    x=0.5 (class 0), the gradient points up, towards the first bump.
    """

    def __init__(self, bumps):
        super().__init__()
        self.bumps = bumps

    def forward(self, x):
        z = sum(h * torch.exp(-(((x[:, :1] - c) / w) ** 2)) for c, w, h in self.bumps) - 5
        return torch.cat([torch.zeros_like(z), z], dim=1)


def non_monotonic_model():
    """Fooled (class 1) only near x=0.65: FGSM from 0.5 fools at eps=0.15 but not at 0.3."""
    return Bumps([(0.65, 0.05, 10.0)]).eval()


def masking_model():
    """A local loss maximum at 0.55 that does not fool, a fooling bump at 0.8.

    Small iterative steps climb to 0.55 and stay correct; FGSM with eps=0.3 jumps to
    0.8 and fools: the iterative attack is weaker than FGSM.
    """
    return Bumps([(0.55, 0.03, 4.0), (0.8, 0.05, 10.0)]).eval()


def bump_data(n=20):
    return np.full((n, 1), 0.5, dtype=np.float32), np.zeros(n, dtype=np.int64)


class Quantise(nn.Module):
    """Rounds inputs in [0, 1] to ``levels`` grey levels: zero input gradients.

    Declared non-differentiable through the attribute the evaluation looks for.
    """

    skrobust_non_differentiable = True

    def __init__(self, levels=16):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class LogClamp(nn.Module):
    """``log(clamp(softmax(1000 z), 1e-6))``: the argmax of z, with flat scores."""

    skrobust_non_differentiable = True

    def forward(self, z):
        return torch.log(torch.clamp(torch.softmax(1000 * z, dim=1), min=1e-6))


def quantised_model(inner, levels=16):
    """``inner`` behind input quantisation (a declared non-differentiable part)."""
    return nn.Sequential(OrderedDict(quantise=Quantise(levels), net=inner)).eval()


def log_clamp_model(inner):
    """``inner`` followed by a clamped log-softmax of its logits times 1000."""
    return nn.Sequential(OrderedDict(net=inner, log_clamp=LogClamp())).eval()
