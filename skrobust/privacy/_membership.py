"""Threshold membership inference attacks (Yeom et al., 2018) as a function and a scorer."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.utils import Bunch
from sklearn.utils.validation import check_array, column_or_1d

from ..metrics._adversarial import proba_and_index
from ..utils._docstrings import fill_doc
from ._common import predict_proba_with_classes

SIGNALS = ("loss", "confidence")
METRICS = ("advantage", "auc")


def _check_signal(signal):
    if signal not in SIGNALS:
        raise ValueError(f"signal={signal!r} is not supported; use one of {list(SIGNALS)}.")


def membership_signal(estimator, X, y, *, signal="loss"):
    """Per-sample membership score: higher means "more likely a training member".

    Parameters
    ----------
    estimator : fitted classifier or torch.nn.Module
        The model under attack: a classifier with ``predict_proba`` (and
        ``classes_``) or a torch module / skorch net returning logits.
    X : array-like of shape (n_samples, n_features)
        Samples.
    y : array-like of shape (n_samples,)
        Their true labels (unused by ``signal="confidence"``).
    signal : {"loss", "confidence"}, default="loss"
        ``"loss"``: minus the cross-entropy of the true label (Yeom et al.);
        ``"confidence"``: the largest predicted probability (label-free).

    Returns
    -------
    scores : ndarray of shape (n_samples,)
    """
    _check_signal(signal)
    X = check_array(X, dtype=[np.float32, np.float64])
    proba, classes = predict_proba_with_classes(estimator, X)
    if signal == "confidence":
        return proba.max(axis=1)
    y = column_or_1d(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
    proba, index = proba_and_index(y, proba, classes, name="y")
    return np.log(np.clip(proba[np.arange(len(index)), index], 1e-12, None))


@fill_doc
def membership_inference(estimator, X_members, y_members, X_nonmembers, y_nonmembers, *,
                         signal="loss"):
    """Loss- or confidence-threshold membership inference against a fitted model.

    The attacker guesses "member" when the model's loss on a sample is below a
    threshold (``signal="loss"``, Yeom et al. 2018) or its top confidence is above
    one (``signal="confidence"``). Over all thresholds this gives the attack's ROC
    curve; the report holds its AUC and the membership advantage, the largest
    ``TPR - FPR`` (Yeom et al.'s advantage at the best threshold).

    Parameters
    ----------
    estimator : fitted classifier or torch.nn.Module
        The model under attack (see :func:`membership_signal`).
    X_members, y_members : array-like
        Samples the model was trained on, and their labels.
    X_nonmembers, y_nonmembers : array-like
        Samples from the same distribution it was not trained on. Balanced sets
        make the advantage easiest to read.

    signal : {"loss", "confidence"}, default="loss"
        Which threshold attack (see :func:`membership_signal`).

    Returns
    -------
    result : Bunch
        ``auc`` (0.5 = no leak, 1 = every member told apart), ``advantage`` (max
        TPR - FPR in [0, 1]), ``threshold`` (signal value achieving it; members are
        guessed where the signal is >= it), ``tpr`` and ``fpr`` at that threshold,
        ``member_scores`` and ``nonmember_scores``.

    References
    ----------
    S. Yeom, I. Giacomelli, M. Fredrikson and S. Jha, "Privacy risk in machine
    learning: analyzing the connection to overfitting", IEEE CSF 2018.

    Examples
    --------
    {example_members}
    >>> from skrobust.privacy import membership_inference
    >>> result = membership_inference(model, X[:100], y[:100], X[100:], y[100:])
    >>> 0.0 <= result.advantage <= 1.0
    True
    """
    if len(X_members) == 0 or len(X_nonmembers) == 0:
        raise ValueError(
            f"membership inference needs members and non-members, got {len(X_members)} "
            f"members and {len(X_nonmembers)} non-members."
        )
    scores_in = membership_signal(estimator, X_members, y_members, signal=signal)
    scores_out = membership_signal(estimator, X_nonmembers, y_nonmembers, signal=signal)
    truth = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    scores = np.r_[scores_in, scores_out]
    fpr, tpr, thresholds = roc_curve(truth, scores)
    best = int(np.argmax(tpr - fpr))
    return Bunch(
        auc=float(roc_auc_score(truth, scores)),
        advantage=float(max(tpr[best] - fpr[best], 0.0)),
        threshold=float(thresholds[best]),
        tpr=float(tpr[best]),
        fpr=float(fpr[best]),
        member_scores=scores_in,
        nonmember_scores=scores_out,
    )


@dataclass(frozen=True, eq=False, repr=False)
class MembershipScorer:
    """Scorer ``(estimator, X, y)``: membership inference with ``(X, y)`` as non-members.

    Build it with :func:`make_membership_scorer`, which validates the members.
    """

    X_members: np.ndarray
    y_members: np.ndarray
    signal: str
    metric: str
    sign: int

    def __call__(self, estimator, X, y):
        result = membership_inference(estimator, self.X_members, self.y_members, X, y,
                                      signal=self.signal)
        return self.sign * result[self.metric]

    def __repr__(self):
        args = [f"<{len(self.X_members)} members>", f"signal={self.signal!r}",
                f"metric={self.metric!r}"]
        if self.sign > 0:
            args.append("greater_is_better=True")
        return f"make_membership_scorer({', '.join(args)})"


@fill_doc
def make_membership_scorer(X_members, y_members, *, signal="loss", metric="advantage",
                           greater_is_better=False):
    """Make a scorer ``(estimator, X, y)`` of membership leakage.

    The scorer runs :func:`membership_inference` with the given members and the
    scored ``(X, y)`` as non-members. Use it on models fitted on exactly
    ``X_members`` (a list of candidate models, or ``cross_validate`` with one
    predefined split whose training part is ``X_members``); members that a model
    did not see would lower the measured leak.

    Parameters
    ----------
    X_members, y_members : array-like
        The training samples of the scored models and their labels.
    signal : {"loss", "confidence"}, default="loss"
        Which threshold attack (see :func:`membership_signal`).
    metric : {"advantage", "auc"}, default="advantage"
        What the scorer reports.
    greater_is_better : bool, default=False
        Leakage is a bad event, so by default the score is negated (higher is
        better, like scikit-learn's ``neg_*`` scorers). Set True for the raw value.

    {scorer_returns}

    Examples
    --------
    {example_members}
    >>> from skrobust.privacy import make_membership_scorer
    >>> scorer = make_membership_scorer(X[:100], y[:100], metric="auc")
    >>> scorer
    make_membership_scorer(<100 members>, signal='loss', metric='auc')
    >>> -1.0 <= scorer(model, X[100:], y[100:]) <= 0.0
    True
    """
    _check_signal(signal)
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not supported; use one of {list(METRICS)}.")
    X_members = check_array(X_members, dtype=[np.float32, np.float64])
    y_members = column_or_1d(y_members)
    if len(X_members) != len(y_members):
        raise ValueError(f"X_members has {len(X_members)} samples but y_members has "
                         f"{len(y_members)}.")
    return MembershipScorer(X_members, y_members, signal, metric,
                            1 if greater_is_better else -1)
