"""The private skorch callback that runs suppress-privacy training.

It suppresses weights on the cubic schedule (:mod:`._schedule`) with the magnitude
mask (:mod:`._masks`), and keeps suppressed weights at zero through every later
optimiser step. :class:`~skrobust.privacy.SuppressPrivacyClassifier` appends it to a
clone of the user's net.
"""

import torch
from skorch.callbacks import Callback

from ..utils._torch import make_generator
from ._masks import adjust_kept, check_mask_layers, magnitude_mask, resolve_mask_layers
from ._schedule import suppress_schedule


class _SuppressMasker(Callback):
    """skorch callback that suppresses weights on the cubic schedule (private).

    Gradients of suppressed weights are zeroed before each optimiser step and the
    mask is re-applied after it, so momentum or weight decay cannot revive them.

    Parameters
    ----------
    schedule : dict
        The schedule's parameters by name, as ``suppress_schedule``
        (:mod:`._schedule`) takes them: ``start_epoch``, ``end_epoch``,
        ``mask_times``, ``sparse_start`` and ``sparse_end``, checked by the estimator.
    mask_layers : list of MaskLayer, dict or str, default=None
        The parameters to suppress (see ``check_mask_layers`` in :mod:`._masks`).
    seed : int, default=0
        Seed of the optional weight noise.
    verbose : int, default=0
        Print the sparsity after each epoch of the window when > 0.
    """

    def __init__(self, schedule, mask_layers=None, seed=0, verbose=0):
        self.schedule = schedule
        self.mask_layers = mask_layers
        self.seed = seed
        self.verbose = verbose

    def initialize(self):
        self.masks_ = {}
        self.factors_ = {}
        self.records_ = []
        self.steps_ = None
        self.batch_ = 0
        self.epoch_ = 0
        self.generator_ = None
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # state is reset by initialize() (net.initialize, called by fit); partial_fit
        # continues the schedule and keeps the masks
        self.layers_ = resolve_mask_layers(net.module_, check_mask_layers(self.mask_layers))
        self.params_ = {name: p for name, p in net.module_.named_parameters()
                        if name in self.layers_}
        if getattr(self, "generator_", None) is None:
            device = next(iter(self.params_.values())).device
            self.generator_ = make_generator(self.seed, device)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        self.epoch_ += 1
        if self.steps_ is None:
            self.batches_per_epoch_ = max(len(net.get_iterator(dataset_train, training=True)), 1)
            self.steps_, self.targets_ = suppress_schedule(self.batches_per_epoch_,
                                                           **self.schedule)
            self.next_op_ = 0

    def on_grad_computed(self, net, named_parameters, training=None, **kwargs):
        pairs = [(self.params_[name].grad, factor) for name, factor in self.factors_.items()
                 if self.params_[name].grad is not None]
        if pairs:
            torch._foreach_mul_(*map(list, zip(*pairs)))

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if not training:
            return
        with torch.no_grad():
            if self.factors_:
                torch._foreach_mul_([self.params_[name] for name in self.factors_],
                                    list(self.factors_.values()))
            while self.next_op_ < len(self.steps_) and self.steps_[self.next_op_] <= self.batch_:
                self._suppress(net, float(self.targets_[self.next_op_]))
                self.next_op_ += 1
        self.batch_ += 1

    def on_epoch_end(self, net, **kwargs):
        window = self.schedule["start_epoch"], self.schedule["end_epoch"]
        if self.verbose and window[0] <= self.epoch_ <= window[1]:
            print(f"suppress-privacy: epoch {self.epoch_}, sparsity "
                  f"{self.sparsity()[1]:.4f}")

    def _suppress(self, net, target):
        for name, param in self.params_.items():
            layer = self.layers_[name]
            keep = magnitude_mask(param, target, min_kept=layer.min_kept,
                                  previous=self.masks_.get(name))
            self.masks_[name] = keep
            self.factors_[name] = keep.to(param.dtype)  # 0/1 multipliers
            adjust_kept(param.data, keep, layer, generator=self.generator_)
            param.mul_(keep)
            self._clear_optimizer_state(net, param, keep)
        _, overall = self.sparsity()
        self.records_.append((self.epoch_, self.batch_, target, overall))

    @staticmethod
    def _clear_optimizer_state(net, param, keep):
        """Zero the optimiser state (momentum, Adam moments) of suppressed weights."""
        for name in getattr(net, "_optimizers", ["optimizer"]):
            optimizer = getattr(net, name + "_", None)
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(keep)

    def sparsity(self):
        """Per-parameter and overall fraction of exactly-zero masked weights."""
        per_layer, zeros, total = {}, 0, 0
        for name, param in self.params_.items():
            n_zero = int((param.detach() == 0).sum())
            per_layer[name] = n_zero / param.numel()
            zeros += n_zero
            total += param.numel()
        return per_layer, zeros / max(total, 1)
