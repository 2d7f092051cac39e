"""skorch glue of adversarial training: the training step and the robust checkpoint.

Both reuse the attack transformers' tensor-level ``_perturb`` (built on
:mod:`skrobust.attacks.functional`), so no attack code is repeated here.
"""

from contextlib import nullcontext

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from ..utils._torch import eval_mode, make_generator
from ..utils._validation import check_bound


class Adversary:
    """What the training step needs to craft adversarial batches.

    Parameters
    ----------
    attack : BaseAttack
        An unfitted attack transformer; only its ``_perturb`` is used.
    replace_ratio : float
        Share of each batch replaced by its adversarial examples.
    clip_min, clip_max : Tensor or None
        Bounds of the input domain on ``device``, broadcastable to a batch.
    seed : int
        Seeds the generator of the random starts and of the replaced rows.
    device : torch.device
        Where the net trains.
    mixed_precision : bool, default=False
        Run the training forward passes and the crafting under ``torch.autocast``
        with bfloat16 (:meth:`autocast`).
    """

    def __init__(self, attack, replace_ratio, clip_min, clip_max, seed, device,
                 mixed_precision=False):
        self.attack = attack
        self.replace_ratio = replace_ratio
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.device = device
        self.mixed_precision = mixed_precision
        self.generator = make_generator(seed, device)

    def autocast(self):
        """The context of a training forward pass: bfloat16 autocast or nothing."""
        if not self.mixed_precision:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def craft(self, module, x, y):
        """Return ``x`` with ``ceil(replace_ratio * len(x))`` random rows adversarial.

        The rows are attacked in eval mode (batch-norm statistics and dropout
        untouched, each submodule's mode restored) with input gradients only, so
        the parameters' ``.grad`` are not changed.
        """
        n_adv = int(np.ceil(self.replace_ratio * len(x)))
        if n_adv == 0:
            return x
        with eval_mode(module):
            if n_adv == len(x):
                return self.attack._perturb(module, x, y, self.generator,
                                            self.clip_min, self.clip_max)
            rows = torch.randperm(len(x), generator=self.generator,
                                  device=self.device)[:n_adv]
            x = x.clone()
            x[rows] = self.attack._perturb(module, x[rows], y[rows], self.generator,
                                           self.clip_min, self.clip_max)
        return x


def bound_tensor(value, name, n_features, device):
    """A validated clip bound (see ``utils.check_bound``) as a float32 tensor."""
    value = check_bound(value, name, n_features)
    return None if value is None else torch.as_tensor(value, dtype=torch.float32,
                                                      device=device)


class AdversarialStepMixin:
    """Replaces each training batch by its adversarial version before the step.

    Mixed into the user's skorch class by :func:`adversarial_class`; without an
    ``adversary_`` attribute the net trains as its base class does. With the
    adversary's ``mixed_precision`` the crafting and the training forward pass run
    under bfloat16 autocast; the logits are handed to the loss in float32, and the
    backward pass and the optimiser step run outside autocast (as PyTorch advises).
    """

    def train_step_single(self, batch, **fit_params):
        adversary = getattr(self, "adversary_", None)
        if adversary is not None:
            Xi, yi = unpack_data(batch)
            x = to_tensor(Xi, device=self.device)
            y = to_tensor(yi, device=self.device)
            with adversary.autocast():
                batch = (adversary.craft(self.module_, x, y), y)
        return super().train_step_single(batch, **fit_params)

    def infer(self, x, **fit_params):
        adversary = getattr(self, "adversary_", None)
        # only the training step: validation and prediction stay in float32
        if adversary is None or not adversary.mixed_precision or not self.module_.training:
            return super().infer(x, **fit_params)
        with adversary.autocast():
            y_pred = super().infer(x, **fit_params)
        if torch.is_tensor(y_pred) and y_pred.is_floating_point():
            return y_pred.float()
        return y_pred

    def __reduce__(self):
        # the class is made at run time; pickle rebuilds it from the user's class
        return (_new_instance, (_base_class(type(self)),), self.__getstate__())


_CLASSES = {}


def adversarial_class(base):
    """The subclass of skorch class ``base`` that trains on adversarial batches."""
    if issubclass(base, AdversarialStepMixin):
        return base
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Adversarial{base.__name__}",
                              (AdversarialStepMixin, base),
                              {"__module__": __name__})
    return _CLASSES[base]


def _base_class(cls):
    return next(b for b in cls.__mro__ if not issubclass(b, AdversarialStepMixin))


def _new_instance(base):
    cls = adversarial_class(base)
    return cls.__new__(cls)


class RobustCheckpoint(Callback):
    """Keep the weights of the epoch with the best robust validation accuracy.

    After every epoch, the validation split (skorch's ``train_split``) is attacked
    with ``attack`` against the current weights, in eval mode; the accuracy is
    recorded in the history as ``valid_robust_acc`` (and ``valid_robust_acc_best``),
    and at the end of training the best epoch's module weights are restored. The
    random starts are drawn from a generator seeded with ``seed`` at every epoch,
    so epochs are compared on the same perturbation draws.
    """

    def __init__(self, attack, clip_min=None, clip_max=None, seed=0):
        self.attack = attack
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.seed = seed

    def on_train_begin(self, net, **kwargs):
        self.best_score_ = -np.inf
        self.best_epoch_ = None
        self.best_state_ = None

    def robust_accuracy(self, net, dataset):
        """Accuracy of ``net`` on ``attack`` examples of ``dataset``."""
        module = net.module_
        adversary = Adversary(self.attack, 1.0, self.clip_min, self.clip_max, self.seed,
                              net.device)
        correct = total = 0
        for Xi, yi in net.get_iterator(dataset, training=False):
            x = to_tensor(Xi, device=net.device)
            y = to_tensor(yi, device=net.device)
            x_adv = adversary.craft(module, x, y)
            with eval_mode(module), torch.no_grad():
                correct += int((module(x_adv).argmax(1) == y).sum())
            total += len(y)
        return correct / max(total, 1)

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None:
            return
        score = self.robust_accuracy(net, dataset_valid)
        is_best = score > self.best_score_
        net.history.record("valid_robust_acc", score)
        net.history.record("valid_robust_acc_best", bool(is_best))
        if is_best:
            self.best_score_ = score
            self.best_epoch_ = len(net.history)
            self.best_state_ = {k: v.detach().clone()
                                for k, v in net.module_.state_dict().items()}

    def on_train_end(self, net, **kwargs):
        if self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)
            self.best_state_ = None  # do not carry a copy of the weights around
