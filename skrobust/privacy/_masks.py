"""Which weights suppress-privacy training masks, and how a mask is computed.

:class:`MaskLayer` describes a masked parameter; :func:`check_mask_layers` validates
the ``mask_layers`` parameter and :func:`resolve_mask_layers` maps it onto a module's
parameters. :func:`magnitude_mask` picks the weights to suppress and
:func:`adjust_kept` applies MindArmour's changes to the kept ones. Plain tensor
functions, with no skorch or scikit-learn state.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import torch

# MindArmour: noise is added to kept weights larger than this share of the layer's
# largest magnitude, the resulting bound clipped to [NOISE_FLOOR, NOISE_CEIL].
NOISE_SHARE, NOISE_FLOOR, NOISE_CEIL = 0.75, 0.1, 0.5


@dataclass(frozen=True)
class MaskLayer:
    """Which parameter to suppress and how (MindArmour's ``MaskLayerDes``).

    Parameters
    ----------
    name : str
        A parameter name as in ``module.named_parameters()`` (``"fc1.weight"``), or
        a layer name (``"fc1"``), which means that layer's ``weight``.
    min_kept : int, default=0
        Minimum number of weights never suppressed in this parameter.
    lower_clip : float or None, default=None
        If set, kept weights whose magnitude is below it are pushed to
        ``+-lower_clip`` at each suppress operation (MindArmour uses 0.005).
    upper_bound : float or None, default=None
        If set, kept weights are clipped to ``[-upper_bound, upper_bound]`` at each
        suppress operation (MindArmour's default is 1.2).
    noise : float or None, default=None
        If set, uniform noise in ``[-noise, noise]`` is added at each suppress
        operation to the kept weights larger than ``0.75 * max|w|`` (that bound
        clipped to [0.1, 0.5]); MindArmour uses 0.01.

    References
    ----------
    MindArmour, ``mindarmour.privacy.sup_privacy.MaskLayerDes``, Huawei, 2021.

    Examples
    --------
    >>> from skrobust.privacy import MaskLayer
    >>> MaskLayer("conv2.weight", min_kept=150, lower_clip=0.005)
    MaskLayer(name='conv2.weight', min_kept=150, lower_clip=0.005, upper_bound=None, noise=None)
    """

    name: str
    min_kept: int = 0
    lower_clip: float | None = None
    upper_bound: float | None = None
    noise: float | None = None


def _as_mask_layer(spec, index):
    if isinstance(spec, MaskLayer):
        layer = spec
    elif isinstance(spec, str):
        layer = MaskLayer(spec)
    elif isinstance(spec, dict):
        try:
            layer = MaskLayer(**spec)
        except TypeError as exc:
            raise ValueError(
                f"mask_layers[{index}]={spec!r} is not a valid layer description ({exc}); "
                "use keys name, min_kept, lower_clip, upper_bound and noise."
            ) from None
    else:
        raise TypeError(
            f"mask_layers[{index}] is a {type(spec).__name__}; use a MaskLayer, a dict "
            "of MaskLayer fields or a parameter name."
        )
    if not isinstance(layer.name, str) or not layer.name:
        raise ValueError(f"mask_layers[{index}] has name={layer.name!r}; use a parameter name.")
    if (not isinstance(layer.min_kept, numbers.Integral) or isinstance(layer.min_kept, bool)
            or layer.min_kept < 0):
        raise ValueError(
            f"mask_layers[{index}] ({layer.name!r}) has min_kept={layer.min_kept!r}; "
            "use an integer >= 0."
        )
    for field in ("lower_clip", "upper_bound", "noise"):
        value = getattr(layer, field)
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)
                                  or not np.isfinite(value) or value <= 0):
            raise ValueError(
                f"mask_layers[{index}] ({layer.name!r}) has {field}={value!r}; use a "
                "positive float or None."
            )
    if (layer.lower_clip is not None and layer.upper_bound is not None
            and layer.lower_clip > layer.upper_bound):
        raise ValueError(
            f"mask_layers[{index}] ({layer.name!r}) has lower_clip={layer.lower_clip} > "
            f"upper_bound={layer.upper_bound}."
        )
    return layer


def check_mask_layers(mask_layers):
    """Validate ``mask_layers`` into a tuple of :class:`MaskLayer` (None stays None)."""
    if mask_layers is None:
        return None
    if isinstance(mask_layers, (str, dict, MaskLayer)):
        mask_layers = [mask_layers]
    layers = tuple(_as_mask_layer(spec, i) for i, spec in enumerate(mask_layers))
    if not layers:
        raise ValueError(
            "mask_layers is empty: no weight would be suppressed. Give at least one "
            "parameter name, or mask_layers=None to mask every weight matrix/kernel."
        )
    names = [layer.name for layer in layers]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"mask_layers names {duplicated} more than once; name each once.")
    return layers


def resolve_mask_layers(module, layers):
    """Map :class:`MaskLayer` descriptions to ``{parameter name: MaskLayer}`` of ``module``.

    ``layers=None`` selects every parameter with 2 or more dimensions (weight
    matrices and convolution kernels, not biases).
    """
    params = dict(module.named_parameters())
    if layers is None:
        resolved = {name: MaskLayer(name) for name, p in params.items() if p.dim() >= 2}
        if not resolved:
            raise ValueError(
                "the module has no weight matrix or kernel to mask; give mask_layers."
            )
        return resolved
    resolved = {}
    for layer in layers:
        name = layer.name if layer.name in params else f"{layer.name}.weight"
        if name not in params:
            raise ValueError(
                f"mask_layers names {layer.name!r}, which is neither a parameter nor a "
                f"layer with a weight of the module; its parameters are {list(params)}."
            )
        if name in resolved:
            raise ValueError(f"mask_layers names the parameter {name!r} twice.")
        resolved[name] = layer
    return resolved


def magnitude_mask(weight, sparsity, *, min_kept=0, previous=None):
    """Boolean mask (True = kept) suppressing the smallest-magnitude weights.

    ``floor(sparsity * n)`` weights are suppressed, at most ``n - min_kept``, at
    least those already suppressed in ``previous`` (masks only grow).

    Parameters
    ----------
    weight : torch.Tensor
        The parameter, any shape; not modified.
    sparsity : float
        Target fraction of suppressed weights, in [0, 1].
    min_kept : int, default=0
        Number of weights never suppressed (unless ``previous`` already did).
    previous : torch.Tensor of bool or None, default=None
        The mask of the previous operation; its suppressed weights stay suppressed
        and count first.

    Returns
    -------
    keep : torch.Tensor of bool
        Same shape and device as ``weight``; ties in magnitude are suppressed in
        index order.

    Examples
    --------
    >>> import torch
    >>> from skrobust.privacy._masks import magnitude_mask
    >>> magnitude_mask(torch.tensor([0.3, -0.1, 0.2, 0.05]), 0.5).tolist()
    [True, False, True, False]
    """
    n = weight.numel()
    n_suppressed = min(int(np.floor(sparsity * n + 1e-9)), max(n - min_kept, 0))
    score = weight.detach().abs().flatten().clone()
    if previous is not None:
        n_suppressed = max(n_suppressed, int((~previous).sum()))
        score[~previous.flatten()] = -1.0  # already suppressed: always first
    keep = torch.ones(n, dtype=torch.bool, device=weight.device)
    if n_suppressed > 0:
        # k-th smallest magnitude (much cheaper than a sort); ties at it go by index
        threshold = torch.kthvalue(score, n_suppressed).values
        below = score < threshold
        ties = torch.nonzero(score == threshold).flatten()
        keep[below] = False
        keep[ties[:n_suppressed - int(below.sum())]] = False
    return keep.reshape(weight.shape)


def adjust_kept(weight, keep, layer, *, generator=None):
    """MindArmour's one-off changes of the kept weights at a suppress operation, in place.

    In this order: kept weights smaller in magnitude than ``layer.lower_clip`` are
    pushed to ``+-lower_clip``; all weights are clipped to ``+-layer.upper_bound``;
    uniform noise in ``[-layer.noise, layer.noise]`` is added to the kept weights
    larger than ``0.75 * max|weight|`` (that bound clipped to [0.1, 0.5]). A setting
    that is None is skipped. Suppressed weights are zeroed by the caller afterwards.

    Parameters
    ----------
    weight : torch.Tensor
        The parameter's data (``param.data``), changed in place.
    keep : torch.Tensor of bool
        Mask of the kept weights, same shape as ``weight``.
    layer : MaskLayer
        The settings.
    generator : torch.Generator or None, default=None
        Source of the noise.

    Returns
    -------
    weight : torch.Tensor
        The same tensor, changed.

    Examples
    --------
    >>> import torch
    >>> from skrobust.privacy import MaskLayer
    >>> from skrobust.privacy._masks import adjust_kept
    >>> w = torch.tensor([0.001, -0.002, 2.0, 0.0])
    >>> keep = torch.tensor([True, True, True, False])
    >>> w = adjust_kept(w, keep, MaskLayer("w", lower_clip=0.005, upper_bound=1.2))
    >>> [round(v, 4) for v in w.tolist()]
    [0.005, -0.005, 1.2, 0.0]
    """
    if layer.lower_clip is not None:
        small = keep & (weight.abs() < layer.lower_clip)
        floor = torch.where(weight >= 0, layer.lower_clip, -layer.lower_clip).to(weight.dtype)
        weight.copy_(torch.where(small, floor, weight))
    if layer.upper_bound is not None:
        weight.clamp_(-layer.upper_bound, layer.upper_bound)
    if layer.noise is not None and keep.any():
        largest = float(weight.abs().max())  # suppressed weights are 0: the kept maximum
        bound = min(NOISE_CEIL, max(NOISE_FLOOR, NOISE_SHARE * largest))
        large = keep & (weight.abs() > bound)
        noise = torch.rand(weight.shape, generator=generator, device=weight.device,
                           dtype=weight.dtype) * (2 * layer.noise) - layer.noise
        weight.add_(noise * large)
    return weight
