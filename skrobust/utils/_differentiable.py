"""The gradient protocol: how an attack gets a differentiable torch model out of a victim.

Attacks only ever see a :class:`TorchModel`. A victim provides one by being a
``torch.nn.Module``, a fitted skorch ``NeuralNet``, or any object with a
``__skrobust_torch_model__()`` method returning a :class:`TorchModel` (skrobust's own
estimators implement it), or a fitted scikit-learn ``Pipeline``/classifier made of
differentiable steps (re-expressed in torch by :func:`sklearn_to_torch`).
``sklearn.frozen.FrozenEstimator`` is unwrapped.

The victim layer also refuses what the victim cannot take, before the first batch:
labels outside its classes (:meth:`TorchModel.encode`), inputs of the wrong width
(:meth:`TorchModel.check_n_features`) and finite values beyond the float32 range in
which every victim computes (:func:`check_float32_range`).
"""

import functools
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from skorch import NeuralNet

from ._torch import eval_mode, module_device, to_numpy, to_tensor

FLOAT32_MAX = float(np.finfo(np.float32).max)

# module -> {(n_features, parameter shapes): number of score columns}; one dry
# forward per module and width, forgotten with the module
_N_OUTPUTS = weakref.WeakKeyDictionary()


def check_float32_range(X, *, name="X"):
    """Refuse finite values that float32, the victims' precision, cannot hold.

    Every victim computes in float32: a finite value beyond ``+-3.4e38`` would
    become ``inf`` at the victim boundary and NaN in its scores, gradients or
    features. Such input is refused rather than answered with NaN.

    Parameters
    ----------
    X : ndarray
        Validated, finite input.
    name : str, default="X"
        Name of the argument, for the message.

    Raises
    ------
    ValueError
        If ``|X|`` exceeds the largest float32.
    """
    if X.dtype.itemsize <= 4 or X.size == 0:
        return
    largest = max(float(X.max()), -float(X.min()))  # no full-size |X| temporary
    if largest > FLOAT32_MAX:
        raise ValueError(
            f"{name} has values beyond the float32 range (max |{name}| = {largest:.4g} > "
            f"{FLOAT32_MAX:.4g}); the victim computes in float32, where they become inf "
            f"and its scores NaN. Rescale {name} (e.g. with a StandardScaler in front of "
            "the model)."
        )


def first_layer_width(module):
    """``in_features`` of the module's first layer when that is a ``torch.nn.Linear``.

    The first submodule with parameters, in registration order, decides: a
    ``Linear`` gives its ``in_features``; anything else (a convolution, an
    embedding) gives None, since its input width depends on reshapes in
    ``forward``. Only used to make error messages precise.
    """
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear) and not isinstance(
                sub, torch.nn.modules.lazy.LazyModuleMixin):
            return int(sub.in_features)
        if next(sub.parameters(recurse=False), None) is not None:
            return None
    return None

def encode_labels(y, classes, *, name="y"):
    """Map labels to the position of each in ``classes`` (int64), with a clear error.

    The one label -> column mapping: :meth:`TorchModel.encode` (attacks, sanity
    checks) and the probability metrics (``labels=`` of
    :func:`~skrobust.metrics.avg_confidence_true_class`, membership inference) use
    it, so an unseen label is refused with the same message everywhere.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels.
    classes : array-like of shape (n_classes,)
        Label of each score column, in column order (need not be sorted).
    name : str, default="y"
        Name of the argument, for the message.

    Returns
    -------
    index : ndarray of shape (n_samples,), dtype int64
        ``classes[index] == y``.

    Raises
    ------
    ValueError
        If ``y`` holds a label that is not in ``classes`` (up to five of them and
        the classes are named).

    Examples
    --------
    >>> from skrobust.utils._differentiable import encode_labels
    >>> encode_labels(["dog", "cat", "dog"], ["dog", "cat"]).tolist()
    [0, 1, 0]
    """
    y, classes = np.asarray(y), np.asarray(classes)
    if len(classes) == 0:
        index = np.zeros(len(y), dtype=np.int64)
        unknown = np.ones(len(y), dtype=bool)
    else:
        order = np.argsort(classes, kind="stable")
        index = order[np.clip(np.searchsorted(classes, y, sorter=order), 0, len(classes) - 1)]
        unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(
            f"{name} contains labels {np.unique(y[unknown])[:5].tolist()} that the "
            f"victim does not know; its classes are {classes.tolist()}."
        )
    return index.astype(np.int64)


SUPPORTED_VICTIMS = (
    "a fitted skorch NeuralNet classifier, a torch.nn.Module returning logits, a "
    "skrobust estimator, or a scikit-learn Pipeline/classifier of differentiable steps "
    "(scalers, PCA, linear models, SVC, MLPClassifier), each optionally wrapped in "
    "sklearn.frozen.FrozenEstimator; for other models use the black-box "
    "SquareAttackTransformer"
)


@dataclass(frozen=True)
class TorchModel:
    """A differentiable view of a victim.

    Attributes
    ----------
    module : torch.nn.Module
        Maps a float32 tensor of shape ``(n_samples, n_features)`` to class scores
        (logits) of shape ``(n_samples, n_classes)``.
    device : torch.device
        Where ``module`` lives; inputs are moved there.
    classes : ndarray of shape (n_classes,) or None
        Label of each score column, or None when the labels are the column indices.
    """

    module: torch.nn.Module
    device: torch.device
    classes: np.ndarray | None = None

    def check_n_features(self, n_features):
        """Check that the victim takes inputs of ``n_features`` features.

        The check is one forward pass of two zero rows (no gradients, eval mode),
        cached per module and width: it must succeed and return one row of scores
        per input row. When the victim's first layer is a ``torch.nn.Linear`` its
        ``in_features`` is compared first and named in the message.

        Parameters
        ----------
        n_features : int
            Width of the input.

        Returns
        -------
        n_outputs : int or None
            Number of score columns (None for a model without a module).

        Raises
        ------
        ValueError
            If the victim cannot take that width (expected vs given width).
        """
        if self.module is None:
            return None
        n_features = int(n_features)
        signature = (n_features, tuple(tuple(p.shape) for p in self.module.parameters()))
        cache = _N_OUTPUTS.setdefault(self.module, {})
        if signature in cache:
            return cache[signature]
        expected = first_layer_width(self.module)
        victim = type(self.module).__name__
        if expected is not None and expected != n_features:
            raise ValueError(
                f"X has {n_features} features, but the victim {victim} expects "
                f"{expected} features (in_features of its first Linear layer); give X "
                "the columns the victim was trained on."
            )
        try:
            with eval_mode(self.module), torch.no_grad():
                scores = self.module(torch.zeros((2, n_features), dtype=torch.float32,
                                                 device=self.device))
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ValueError(
                f"X has {n_features} features, which the victim {victim} cannot take: its "
                f"forward pass on a zero input of that width failed ({exc}). Give X the "
                "columns the victim was trained on."
            ) from exc
        if scores.ndim != 2 or scores.shape[0] != 2:
            raise ValueError(
                f"X has {n_features} features, but the victim {victim} returned scores "
                f"of shape {tuple(scores.shape)} for 2 input rows (one row of class "
                "scores per input row is needed): X's width is not the one it expects."
            )
        cache[signature] = int(scores.shape[1])
        return cache[signature]

    def predict_scores(self, X, *, batch_size=256, transform=None, dtype=None):
        """The victim's outputs on ``X`` as numpy: batched, eval mode, no gradients.

        The one "victim -> numpy scores" loop: each batch of ``batch_size`` rows is
        copied to ``device`` in float32, run through ``module`` in eval mode (the
        module's own modes are restored afterwards) under ``torch.no_grad()``,
        optionally mapped by ``transform`` and brought back to the CPU.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs in the victim's layout; never modified.
        batch_size : int, default=256
            Rows per forward pass.
        transform : callable, default=None
            Applied to each batch's output tensor on ``device`` before the copy
            back (e.g. ``partial(torch.softmax, dim=1)`` or an argmax); None keeps
            the raw scores.
        dtype : numpy dtype, default=None
            dtype of the result; None keeps the tensor's.

        Returns
        -------
        scores : ndarray of shape (n_samples, ...)
            The (transformed) outputs, row for row. For an empty ``X``, an empty
            array whose trailing shape and dtype come from one forward pass of a
            zero row.

        Examples
        --------
        >>> import numpy as np, torch
        >>> from skrobust.utils import TorchModel
        >>> model = TorchModel(torch.nn.Linear(3, 2), torch.device("cpu"))
        >>> X = np.random.RandomState(0).rand(5, 3)
        >>> model.predict_scores(X, batch_size=2).shape
        (5, 2)
        >>> model.predict_scores(X, transform=lambda s: s.argmax(1)).dtype
        dtype('int64')
        """
        X = np.asarray(X)
        transform = (lambda scores: scores) if transform is None else transform
        empty = len(X) == 0
        if empty:  # one zero row gives the trailing shape and dtype
            X = np.zeros((1, *X.shape[1:]), dtype=np.float32)
        parts = []
        with eval_mode(self.module), torch.no_grad():
            for start in range(0, len(X), int(batch_size)):
                scores = self.module(to_tensor(X[start:start + batch_size], self.device))
                parts.append(to_numpy(transform(scores), dtype))
        scores = np.concatenate(parts)
        return scores[:0] if empty else scores

    def n_classes(self, n_features=None):
        """Number of classes: ``len(classes)``, else the score columns (a single
        binary logit counts as 2); None when unknown (no width to probe with)."""
        if self.classes is not None:
            return len(self.classes)
        if n_features is None:
            n_features = None if self.module is None else first_layer_width(self.module)
        if n_features is None:
            return None
        n_outputs = self.check_n_features(n_features)
        return None if n_outputs is None else max(n_outputs, 2)

    def encode(self, y, *, name="y", n_features=None):
        """Map labels ``y`` to score-column indices (int64), with a clear error.

        With ``classes``, :func:`encode_labels` maps them. Without, the labels must
        be integer column indices in ``[0, n_classes - 1]``; the number of columns
        comes from a dry forward of width ``n_features`` (see
        :meth:`check_n_features`).
        """
        y = np.asarray(y)
        if self.classes is None:
            if not np.issubdtype(y.dtype, np.integer) and not (
                np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)
            ):
                raise ValueError(
                    f"{name} must hold integer class indices for a victim without "
                    f"classes_, got dtype {y.dtype}."
                )
            n_classes = self.n_classes(n_features)
            top = np.inf if n_classes is None else n_classes - 1
            bad = (y < 0) | (y > top)
            if np.any(bad):
                valid = ">= 0" if n_classes is None else f"in [0, {top}]"
                raise ValueError(
                    f"{name} contains labels {np.unique(y[bad])[:5].tolist()} outside the "
                    f"victim's classes: labels must be class indices {valid}"
                    + ("" if n_classes is None else
                       f" (the victim returns scores for {n_classes} classes)") + "."
                )
            return y.astype(np.int64)
        return encode_labels(y, self.classes, name=name)


def unfrozen(estimator):
    """The estimator inside (possibly nested) ``FrozenEstimator`` wrappers."""
    while isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    return estimator


def check_victim_width(estimator, n_features):
    """Refuse a width other than the one a fitted scikit-learn victim recorded.

    Covers black-box victims (random forests, gradient boosting), which have no
    torch module to probe: their ``n_features_in_`` is compared before the first
    query, with the expected and the given width in the message.
    """
    victim = unfrozen(estimator)
    expected = getattr(victim, "n_features_in_", None)
    if isinstance(victim, torch.nn.Module) or expected is None:
        return
    if int(expected) != int(n_features):
        raise ValueError(
            f"X has {n_features} features, but the victim {type(victim).__name__} was "
            f"fitted on {expected} features; give X the columns the victim was trained "
            "on."
        )


def victim_input(estimator, X):
    """``X`` as the victim's own ``predict``/``predict_proba`` takes it.

    skorch does not convert dtypes, so a skorch net (frozen or not, alone or
    ending a pipeline) gets float32; every other victim gets ``X`` unchanged.
    """
    final = unfrozen(estimator)
    while isinstance(final, Pipeline):
        final = unfrozen(final[-1])
    if isinstance(final, NeuralNet):
        return np.asarray(X, dtype=np.float32)
    return X


HOOK = "__skrobust_torch_model__"


def has_torch_hook(estimator):
    """Whether ``estimator`` implements the ``__skrobust_torch_model__`` protocol."""
    return hasattr(estimator, HOOK)


@functools.singledispatch
def _torch_model_of(estimator):
    """Fallback of :func:`as_torch_model` for a type nothing is registered for."""
    raise TypeError(
        f"Cannot attack a {type(estimator).__name__} with gradients: the victim must be "
        f"{SUPPORTED_VICTIMS}."
    )


@_torch_model_of.register(FrozenEstimator)
def _(estimator):
    return as_torch_model(estimator.estimator)


@_torch_model_of.register(torch.nn.Module)
def _(estimator):
    return TorchModel(estimator, module_device(estimator))


@_torch_model_of.register(NeuralNet)
def _(estimator):
    if not getattr(estimator, "initialized_", False):
        raise NotFittedError(
            f"The victim {type(estimator).__name__} is not fitted: fit it first, or "
            "pass it unfitted without FrozenEstimator so that fit trains a clone."
        )
    module = estimator.module_
    return TorchModel(module, module_device(module))


def as_torch_model(estimator):
    """Return the :class:`TorchModel` of a victim, or raise a clear error.

    This is the one place where skrobust turns a victim into something it can
    differentiate; every attack, metric, detector and evaluation asks it. A victim
    gets there by one of two routes:

    * the **hook**: an object with a method ``__skrobust_torch_model__()`` returning a
      :class:`TorchModel` is asked first (skrobust's own estimators implement it,
      and so can yours: it is the protocol for a type you own);
    * the **registry**: for a type you do not own, register a function with
      ``as_torch_model.register(cls)`` (:func:`functools.singledispatch`; the most
      specific class in the victim type's MRO wins). skrobust registers
      ``FrozenEstimator`` (unwrapped), ``torch.nn.Module``, skorch ``NeuralNet``
      (must be fitted) and scikit-learn ``BaseEstimator`` (re-expressed by
      :func:`sklearn_to_torch`).

    Parameters
    ----------
    estimator : object
        The victim: a fitted skorch net, a torch module returning logits, a
        scikit-learn pipeline or classifier of differentiable steps, an object with
        the hook or of a registered type, each optionally in ``FrozenEstimator``.

    Returns
    -------
    TorchModel

    Raises
    ------
    TypeError
        If the victim is not differentiable through this protocol, or its hook
        returns something other than a :class:`TorchModel`.
    sklearn.exceptions.NotFittedError
        If the victim is a skorch net that has not been initialised/fitted.

    See Also
    --------
    sklearn_to_torch : The re-expression of scikit-learn estimators in torch.

    Examples
    --------
    A type you own implements the hook:

    >>> import numpy as np, torch
    >>> from skrobust.utils import TorchModel, as_torch_model
    >>> class Scorer:
    ...     def __init__(self):
    ...         self.module_ = torch.nn.Linear(4, 2)
    ...         self.classes_ = np.array(["cat", "dog"])
    ...     def __skrobust_torch_model__(self):
    ...         return TorchModel(self.module_, torch.device("cpu"), self.classes_)
    >>> as_torch_model(Scorer()).encode(["dog", "cat"]).tolist()
    [1, 0]

    A type you do not own is registered:

    >>> class ThirdPartyModel:  # e.g. a model class from another library
    ...     def __init__(self, net):
    ...         self.net = net
    >>> @as_torch_model.register(ThirdPartyModel)
    ... def _(estimator):
    ...     return TorchModel(estimator.net, torch.device("cpu"))
    >>> model = as_torch_model(ThirdPartyModel(torch.nn.Linear(4, 3)))
    >>> model.n_classes(4)
    3
    """
    hook = getattr(estimator, HOOK, None)
    if hook is None:
        return _torch_model_of(estimator)
    model = hook()
    if not isinstance(model, TorchModel):
        raise TypeError(
            f"{type(estimator).__name__}.{HOOK}() returned a {type(model).__name__}, not "
            "a skrobust.utils.TorchModel: return TorchModel(module, device, classes)."
        )
    return model


as_torch_model.register = _torch_model_of.register
as_torch_model.registry = _torch_model_of.registry
as_torch_model.dispatch = _torch_model_of.dispatch
