"""Fitted scikit-learn pipelines and classifiers re-expressed exactly as torch modules.

:func:`sklearn_to_torch` turns a fitted estimator into a ``torch.nn.Module`` that
computes the same numbers from raw features: preprocessing steps return their
``transform``, classifiers their scores (``decision_function``, or the logits whose
softmax/sigmoid is ``predict_proba``). A binary classifier gives one score column,
read as the logit of ``classes_[1]``. This is what makes scikit-learn victims
attackable with gradients through :func:`skrobust.utils.as_torch_model`.
"""

import copy
import functools
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.decomposition import PCA
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler
from sklearn.svm import SVC, NuSVC
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._differentiable import TorchModel, as_torch_model, has_torch_hook
from ._torch import is_skorch_net

SVC_KERNELS = ("linear", "rbf", "poly", "sigmoid")
MLP_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid,
                   "identity": nn.Identity}
BLACK_BOX_HINT = (
    "attack it with the black-box skrobust.attacks.SquareAttackTransformer, which "
    "needs only predict_proba"
)


def _buffer(module, name, value, dtype):
    module.register_buffer(name, torch.as_tensor(np.array(value, dtype=np.float64), dtype=dtype))


class _Affine(nn.Module):
    """``(x - center) @ weight.T + bias`` (center and bias optional)."""

    def __init__(self, weight, bias=None, center=None, *, dtype=torch.float32):
        super().__init__()
        _buffer(self, "weight", weight, dtype)
        self.has_bias, self.has_center = bias is not None, center is not None
        if self.has_bias:
            _buffer(self, "bias", bias, dtype)
        if self.has_center:
            _buffer(self, "center", center, dtype)

    def forward(self, x):
        if self.has_center:
            x = x - self.center
        out = x @ self.weight.T
        return out + self.bias if self.has_bias else out


class _Elementwise(nn.Module):
    """``(x - center) / scale * mul + add``, feature by feature; any part optional."""

    def __init__(self, *, center=None, scale=None, mul=None, add=None, clamp=None,
                 dtype=torch.float32):
        super().__init__()
        self.parts = []
        for name, value in (("center", center), ("scale", scale), ("mul", mul),
                            ("add", add)):
            if value is not None:
                _buffer(self, name, value, dtype)
                self.parts.append(name)
        self.clamp = clamp

    def forward(self, x):
        if "center" in self.parts:
            x = x - self.center
        if "scale" in self.parts:
            x = x / self.scale
        if "mul" in self.parts:
            x = x * self.mul
        if "add" in self.parts:
            x = x + self.add
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return x


class _KernelSVC(nn.Module):
    """A libsvm SVC: kernel against the support vectors, pairwise (OvO) decisions,
    then scikit-learn's OvR aggregation (votes plus transformed confidences)."""

    def __init__(self, svc, *, dtype=torch.float32):
        super().__init__()
        self.kernel, self.degree = svc.kernel, int(svc.degree)
        self.gamma, self.coef0 = float(svc._gamma), float(svc.coef0)
        n_classes = len(svc.classes_)
        sv = svc.support_vectors_
        _buffer(self, "sv", sv, dtype)
        _buffer(self, "sv_sq", (sv**2).sum(1), dtype)
        if n_classes == 2:  # public dual_coef_/intercept_ carry the binary sign flip
            weight, bias = svc.dual_coef_.T, svc.intercept_
        else:
            dual, bias = svc._dual_coef_, svc._intercept_
            starts = np.concatenate([[0], np.cumsum(svc._n_support)])
            pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
            weight = np.zeros((len(sv), len(pairs)))
            winner_if_pos = np.zeros((len(pairs), n_classes))
            winner_if_neg = np.zeros((len(pairs), n_classes))
            for p, (i, j) in enumerate(pairs):
                si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
                weight[si, p] = dual[j - 1, si]
                weight[sj, p] = dual[i, sj]
                winner_if_pos[p, i] = winner_if_neg[p, j] = 1.0
            _buffer(self, "win_pos", winner_if_pos, dtype)
            _buffer(self, "win_neg", winner_if_neg, dtype)
        self.multiclass = n_classes > 2
        _buffer(self, "weight", weight, dtype)
        _buffer(self, "bias", bias, dtype)

    def _kernel(self, x):
        dot = x @ self.sv.T
        if self.kernel == "linear":
            return dot
        if self.kernel == "rbf":
            sq = ((x**2).sum(1, keepdim=True) + self.sv_sq - 2 * dot).clamp_min(0)
            return torch.exp(-self.gamma * sq)
        if self.kernel == "poly":
            return (self.gamma * dot + self.coef0) ** self.degree
        return torch.tanh(self.gamma * dot + self.coef0)

    def forward(self, x):
        dec = self._kernel(x) @ self.weight + self.bias
        if not self.multiclass:
            return dec
        # sklearn: _ovr_decision_function(dec < 0, -dec, n_classes)
        confidence = dec @ (self.win_pos - self.win_neg)
        votes = (dec >= 0).to(dec.dtype) @ self.win_pos + (dec < 0).to(dec.dtype) @ self.win_neg
        return votes + confidence / (3 * (confidence.abs() + 1))


@dataclass(frozen=True)
class _Converter:
    convert: object  # (fitted estimator, dtype) -> torch.nn.Module
    kind: str  # "transformer" or "classifier"
    check: object  # (estimator) -> None, or the reason it cannot be converted
    description: str


# estimator class -> _Converter; looked up along the estimator type's MRO
_CONVERTERS = {}


def register_sklearn_converter(cls, convert=None, *, kind="classifier", check=None,
                               description=None):
    """Register how :func:`sklearn_to_torch` re-expresses a fitted ``cls`` in torch.

    The converter serves ``cls`` and its subclasses (the most specific registered
    class in the estimator type's MRO wins), alone or as a step of a ``Pipeline``,
    so :func:`as_torch_model` and every gradient attack accept it. skrobust itself
    registers the scalers, PCA, linear models, SVCs and MLPs this way, and
    :class:`~skrobust.defenses.DNRClassifier`'s module registers
    ``OneVsRestClassifier``.

    Parameters
    ----------
    cls : type
        The estimator class.
    convert : callable, default=None
        ``convert(estimator, dtype) -> torch.nn.Module`` for a fitted ``estimator``.
        The module computes from ``dtype`` inputs what the estimator does: a
        transformer its ``transform``; a classifier its class scores, one column per
        class of ``classes_``, or a single column (the logit of ``classes_[1]``) for
        two classes. None returns a decorator.
    kind : {"classifier", "transformer"}, default="classifier"
        A classifier may only end a pipeline; a transformer may not.
    check : callable, default=None
        ``check(estimator) -> str or None``, for a fitted or unfitted estimator: why
        this instance cannot be converted (a kernel without a torch form), or None.
        Raising ``TypeError`` in ``convert`` is the place for reasons that need the
        fitted state.
    description : str, default=None
        How error messages name what is supported; ``cls.__name__`` by default.

    Returns
    -------
    convert : callable
        ``convert`` itself (or the decorator).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.base import BaseEstimator, TransformerMixin
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from skrobust.utils import as_torch_model, register_sklearn_converter
    >>> class Center(TransformerMixin, BaseEstimator):  # a custom preprocessing step
    ...     def fit(self, X, y=None):
    ...         self.mean_ = X.mean(axis=0)
    ...         return self
    ...     def transform(self, X):
    ...         return X - self.mean_
    >>> class TorchCenter(torch.nn.Module):  # the same computation in torch
    ...     def __init__(self, mean, dtype):
    ...         super().__init__()
    ...         self.register_buffer("mean", torch.as_tensor(mean, dtype=dtype))
    ...     def forward(self, x):
    ...         return x - self.mean
    >>> @register_sklearn_converter(Center, kind="transformer")
    ... def _(estimator, dtype):
    ...     return TorchCenter(estimator.mean_, dtype)
    >>> X, y = np.random.RandomState(0).rand(20, 3), np.arange(20) % 2
    >>> pipe = make_pipeline(Center(), LogisticRegression()).fit(X, y)
    >>> scores = as_torch_model(pipe).module(torch.as_tensor(X, dtype=torch.float32))
    >>> bool(np.allclose(scores[:, 0].detach().numpy(), pipe.decision_function(X),
    ...                  atol=1e-5))
    True
    """
    if kind not in ("classifier", "transformer"):
        raise ValueError(f'kind={kind!r} must be "classifier" or "transformer".')
    if not isinstance(cls, type):
        raise TypeError(f"cls={cls!r} must be a class.")
    if convert is None:
        return functools.partial(register_sklearn_converter, cls, kind=kind, check=check,
                                 description=description)
    _CONVERTERS[cls] = _Converter(convert, kind, check, description or cls.__name__)
    return convert


def _converter_for(estimator):
    for klass in type(estimator).__mro__:
        if klass in _CONVERTERS:
            return _CONVERTERS[klass]
    return None


def supported_description():
    """What the converter supports, for error messages (follows the registry)."""
    def names(kind):
        return ", ".join(dict.fromkeys(c.description for c in _CONVERTERS.values()
                                       if c.kind == kind))

    return (f"{names('transformer')} steps, ending in a {names('classifier')}, a skorch "
            "classifier or a skrobust estimator")


def _step_error(name, estimator, why):
    where = f"step {name!r} ({type(estimator).__name__})" if name else type(estimator).__name__
    return TypeError(
        f"{where} {why}: skrobust differentiates only {supported_description()}. Replace "
        f"the step, or {BLACK_BOX_HINT}."
    )


def check_convertible(estimator, name=None, *, final=True):
    """Raise TypeError unless ``estimator`` (fitted or not) can be re-expressed in torch.

    ``final=True`` requires a classifier at the end (a victim), ``final=False`` a
    transformer, ``final=None`` either; ``name`` names the step in error messages.
    """
    if isinstance(estimator, Pipeline):
        steps = estimator.steps
        if not steps:
            raise _step_error(name, estimator, "has no steps")
        for i, (step_name, step) in enumerate(steps):
            last = i == len(steps) - 1
            if step is None or step == "passthrough":
                if last and final is True:
                    raise _step_error(step_name, estimator, "ends in 'passthrough', not "
                                      "a classifier")
                continue
            check_convertible(step, step_name, final=final if last else False)
        return
    converter = None if _is_torch_classifier(estimator) else _converter_for(estimator)
    if converter is None and not _is_torch_classifier(estimator):
        raise _step_error(name, estimator, "is not differentiable")
    kind = "classifier" if converter is None else converter.kind
    if kind == "transformer" and final is True:
        raise _step_error(name, estimator, "is a transformer, not a classifier")
    if kind == "classifier" and final is False:
        raise _step_error(name, estimator, "is a classifier in the middle of a pipeline")
    why = None if converter is None or converter.check is None else converter.check(estimator)
    if why:
        raise _step_error(name, estimator, why)


def _is_torch_classifier(estimator):
    """A skorch net or a skrobust estimator: already differentiable (final step only)."""
    return is_skorch_net(estimator) or has_torch_hook(estimator)


def is_convertible(estimator):
    """Whether :func:`sklearn_to_torch` supports ``estimator`` as a victim."""
    try:
        check_convertible(estimator)
    except TypeError:
        return False
    return True


def _convert(estimator, name, dtype):
    if isinstance(estimator, Pipeline):
        layers = [
            (step_name, nn.Identity() if step is None or step == "passthrough"
             else _convert(step, step_name, dtype))
            for step_name, step in estimator.steps
        ]
        return nn.Sequential(OrderedDict(layers))
    if _is_torch_classifier(estimator):
        module = as_torch_model(estimator).module
        return module if dtype == torch.float32 else copy.deepcopy(module).to(dtype)
    check_is_fitted(estimator)
    try:
        return _converter_for(estimator).convert(estimator, dtype)
    except TypeError as exc:  # a reason that needs the fitted state: name the step
        raise _step_error(name, estimator, str(exc)) from None


# ---------------------------------------------------------------- built-in converters
def _standard_scaler(estimator, dtype):
    return _Elementwise(center=estimator.mean_ if estimator.with_mean else None,
                        scale=estimator.scale_, dtype=dtype)


def _max_abs_scaler(estimator, dtype):
    return _Elementwise(scale=estimator.scale_, dtype=dtype)


def _min_max_scaler(estimator, dtype):
    clamp = estimator.feature_range if estimator.clip else None
    return _Elementwise(mul=estimator.scale_, add=estimator.min_, clamp=clamp, dtype=dtype)


def _pca(estimator, dtype):
    weight = estimator.components_
    if estimator.whiten:
        weight = weight / np.sqrt(estimator.explained_variance_)[:, None]
    return _Affine(weight, center=estimator.mean_, dtype=dtype)


def _kernel_svc(estimator, dtype):
    if getattr(estimator, "_sparse", False):
        raise TypeError("was fitted on sparse data")
    return _KernelSVC(estimator, dtype=dtype)


def _check_svc(estimator):
    if estimator.kernel not in SVC_KERNELS:
        return f"has kernel={estimator.kernel!r}, which is not one of {SVC_KERNELS}"
    return None


def _mlp(estimator, dtype):
    if getattr(estimator._label_binarizer, "y_type_", None) == "multilabel-indicator":
        raise TypeError("is a multilabel classifier")
    act = MLP_ACTIVATIONS[estimator.activation]
    layers = []
    for i, (w, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_)):
        if i:
            layers.append(act())
        layers.append(_Affine(w.T, b, dtype=dtype))
    return nn.Sequential(*layers)


def _check_mlp(estimator):
    if estimator.activation not in MLP_ACTIVATIONS:
        return f"has activation={estimator.activation!r}"
    return None


def _linear(estimator, dtype):
    # scores = X @ coef_.T + intercept_ (binary: one column)
    coef = np.atleast_2d(estimator.coef_)
    intercept = np.broadcast_to(estimator.intercept_, (len(coef),))
    return _Affine(coef, intercept, dtype=dtype)


def _check_linear(estimator):
    return None if is_classifier(estimator) else "is not differentiable"


for _cls, _fn in ((StandardScaler, _standard_scaler), (MinMaxScaler, _min_max_scaler),
                  (MaxAbsScaler, _max_abs_scaler), (PCA, _pca)):
    register_sklearn_converter(_cls, _fn, kind="transformer")
register_sklearn_converter(
    LinearClassifierMixin, _linear, check=_check_linear,
    description="LogisticRegression, LinearSVC, SGDClassifier (or another linear classifier)")
for _cls in (SVC, NuSVC):
    register_sklearn_converter(_cls, _kernel_svc, check=_check_svc,
                               description="SVC/NuSVC with a linear, rbf, poly or sigmoid "
                               "kernel")
register_sklearn_converter(MLPClassifier, _mlp, check=_check_mlp)


@as_torch_model.register(BaseEstimator)
def _sklearn_torch_model(estimator):
    """scikit-learn victims: re-expressed in torch through the converter registry."""
    try:
        check_convertible(estimator)
    except TypeError as exc:
        raise TypeError(
            f"Cannot attack a {type(estimator).__name__} with gradients: {exc}"
        ) from None
    return TorchModel(sklearn_to_torch(estimator), torch.device("cpu"),
                      sklearn_classes(estimator))


def sklearn_to_torch(estimator, *, dtype=torch.float32):
    """Re-express a fitted scikit-learn pipeline or classifier as a torch module.

    Parameters
    ----------
    estimator : fitted estimator
        A ``Pipeline`` of ``StandardScaler``, ``MinMaxScaler``, ``MaxAbsScaler``,
        ``PCA`` (whitened or not) and ``"passthrough"`` steps, optionally ending in a
        classifier; or one of those steps; or a classifier: a linear one
        (``LogisticRegression``, ``LinearSVC``, ``SGDClassifier`` with any loss,
        ``RidgeClassifier``, ``Perceptron``...), ``SVC``/``NuSVC`` with a linear,
        rbf, poly or sigmoid kernel, an ``MLPClassifier``, or a
        ``OneVsRestClassifier`` of RBF or linear SVCs or linear models (registered
        by :mod:`skrobust.defenses`, whose DNR re-expresses its SVMs with it); or
        an instance of a class registered with :func:`register_sklearn_converter`.
        The final step of a pipeline may also be a fitted skorch classifier or a
        skrobust estimator (its own torch module is used; on CPU, fed X in the
        module's dtype).
    dtype : torch.dtype, default=torch.float32
        Floating dtype of the module's buffers (and of the inputs it expects).

    Returns
    -------
    module : torch.nn.Module
        Maps raw features of shape ``(n_samples, n_features)`` to what the estimator
        computes: ``transform`` for a transformer; class scores for a classifier,
        one column per class of ``classes_``, or a single column (the logit or
        decision value of ``classes_[1]``) for a binary classifier. Linear models
        and SVCs give ``decision_function`` (SVC with the ``"ovr"`` aggregation,
        whatever ``decision_function_shape``); an ``MLPClassifier`` gives the
        logits whose softmax (sigmoid if binary) is ``predict_proba``.

    Raises
    ------
    TypeError
        For a step that is not differentiable (a tree ensemble, a ``OneHotEncoder``),
        naming the step.
    sklearn.exceptions.NotFittedError
        If a step is not fitted.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skrobust.utils import sklearn_to_torch
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    >>> module = sklearn_to_torch(pipe, dtype=torch.float64)
    >>> scores = module(torch.as_tensor(X)).numpy()
    >>> bool(np.allclose(scores, pipe.decision_function(X)))
    True
    """
    check_convertible(estimator, final=None)
    return _convert(estimator, None, dtype)


def sklearn_classes(estimator):
    """``classes_`` of a fitted pipeline's final step (or of a classifier)."""
    while isinstance(estimator, Pipeline):
        estimator = estimator.steps[-1][1]
    return np.asarray(estimator.classes_)
