import inspect
from collections.abc import Callable
from dataclasses import dataclass

from sklearn.metrics import accuracy_score

from ..attacks._base import attack_estimator
from ..utils._differentiable import victim_input
from ..utils._docstrings import fill_doc


@dataclass(frozen=True, eq=False, repr=False)
class AdversarialScorer:
    """Scorer ``(estimator, X, y)`` that attacks the estimator it scores.

    Build it with :func:`make_adversarial_scorer`, which checks the arguments.
    """

    attack: object
    metric: Callable
    response_method: str
    sign: int
    kwargs: dict

    def __call__(self, estimator, X, y):
        X_adv = attack_estimator(self.attack, estimator, X, y)
        response = getattr(estimator, self.response_method)(victim_input(estimator, X_adv))
        kwargs = dict(self.kwargs)
        if (self.response_method == "predict_proba" and "labels" not in kwargs
                and "labels" in inspect.signature(self.metric).parameters):
            kwargs["labels"] = getattr(estimator, "classes_", None)
        return self.sign * float(self.metric(y, response, **kwargs))

    def __repr__(self):
        args = [repr(self.attack), f"metric={getattr(self.metric, '__name__', self.metric)}"]
        if self.response_method != "predict":
            args.append(f"response_method={self.response_method!r}")
        if self.sign < 0:
            args.append("greater_is_better=False")
        args += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"make_adversarial_scorer({', '.join(args)})"


@fill_doc
def make_adversarial_scorer(attack, metric=accuracy_score, *, response_method="predict",
                            greater_is_better=True, **kwargs):
    """Make a scorer that scores an estimator on adversarial examples crafted against it.

    The scorer ``(estimator, X, y)`` clones ``attack``, points it at a frozen copy of
    the very estimator being scored (white-box), crafts ``attack.generate(X, y)``
    with the true labels and returns ``metric(y, estimator.<response_method>(X_adv))``.
    Use it as ``scoring=`` in :func:`~sklearn.model_selection.cross_validate` or
    :class:`~sklearn.model_selection.GridSearchCV`, alone or in a dict.

    **Where the attack learns its bounds and scales.** An unfitted ``attack`` is
    fitted on the fold being scored, so ``clip_min="data"``/``clip_max="data"`` and
    ``eps_scale`` come from the *test* fold: the bounds then contain every scored
    row and the budget changes from fold to fold. Pass an attack fitted on the
    training data instead (``attack.fit(X_train, y_train)``): the scorer keeps its
    learned ``clip_min_``, ``clip_max_`` and ``feature_scale_`` and only replaces
    its victim, so every fold and every grid point is attacked under the same
    threat model.

    **Failures are not scores.** scikit-learn turns an exception raised by a scorer
    into a NaN score and a warning (``error_score=np.nan``, the default). The
    scorer raises a ``ValueError`` saying what is wrong (for example inputs outside
    ``[clip_min, clip_max]``, with the tabular options ``clip_min="data"``,
    ``clip_max="data"``, ``eps_scale="std"``); pass ``error_score="raise"`` to
    ``cross_validate``/``GridSearchCV`` so that it stops the search instead.

    Parameters
    ----------
    attack : FGSMTransformer, PGDTransformer or another skrobust attack
        Attack template; its ``estimator`` is replaced.
    metric : callable, default=accuracy_score
        ``metric(y_true, response, **kwargs)``, e.g. ``accuracy_score``,
        ``balanced_accuracy_score`` or :func:`misclassification_rate`.
    response_method : {"predict", "predict_proba"}, default="predict"
        What the metric receives. With ``"predict_proba"`` and a metric taking
        ``labels``, the estimator's ``classes_`` are passed as ``labels``.
    greater_is_better : bool, default=True
        Set False for losses and rates of bad events; the score is then negated,
        as with :func:`~sklearn.metrics.make_scorer`.
    **kwargs
        Passed to ``metric``.

    {scorer_returns}

    Examples
    --------
    >>> from skrobust.attacks import FGSMTransformer
    >>> from skrobust.metrics import make_adversarial_scorer
    >>> make_adversarial_scorer(FGSMTransformer(eps=0.1))
    make_adversarial_scorer(FGSMTransformer(eps=0.1), metric=accuracy_score)
    """
    if response_method not in ("predict", "predict_proba"):
        raise ValueError(
            f'response_method={response_method!r}; use "predict" or "predict_proba".'
        )
    if not callable(metric):
        raise ValueError(
            f"metric={metric!r} is not callable; pass a function metric(y_true, "
            "response, **kwargs), e.g. sklearn.metrics.accuracy_score, "
            "sklearn.metrics.balanced_accuracy_score or "
            "skrobust.metrics.misclassification_rate."
        )
    if not hasattr(attack, "generate"):
        raise TypeError(
            f"attack must be a skrobust attack with a generate(X, y) method, got "
            f"{type(attack).__name__}."
        )
    return AdversarialScorer(attack, metric, response_method,
                             1 if greater_is_better else -1, kwargs)
