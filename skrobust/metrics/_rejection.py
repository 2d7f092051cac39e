"""Metrics of classifiers with a reject option (e.g. :class:`~skrobust.defenses.DNRClassifier`).

All take ``(y_true, y_pred, *, reject_label=-1)`` like scikit-learn's metrics, so
:func:`~sklearn.metrics.make_scorer` and
:func:`~skrobust.metrics.make_adversarial_scorer` accept them unchanged.
"""

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d


def _labels(y_true, y_pred):
    y_true, y_pred = column_or_1d(y_true), column_or_1d(y_pred)
    check_consistent_length(y_true, y_pred)
    return y_true, y_pred


def _is_reject(y_pred, reject_label):
    mask = np.asarray(y_pred.astype(object) == reject_label, dtype=bool)
    return mask if mask.shape == y_pred.shape else np.zeros(len(y_pred), dtype=bool)


def rejection_rate(y_true, y_pred, *, reject_label=-1):
    """Fraction of samples rejected (predicted as ``reject_label``).

    On clean data a rejection is a cost (lower is better); on adversarial data it is
    the defense working.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (only their number is checked; kept for the scorer signature).
    y_pred : array-like of shape (n_samples,)
        Predictions, ``reject_label`` for rejected samples.
    reject_label : int, float or str, default=-1
        The label of a rejection.

    Returns
    -------
    float
        ``mean(y_pred == reject_label)``.

    Examples
    --------
    >>> from skrobust.metrics import rejection_rate
    >>> rejection_rate([0, 1, 2, 3], [0, -1, 2, -1])
    0.5
    """
    _, y_pred = _labels(y_true, y_pred)
    return float(np.mean(_is_reject(y_pred, reject_label))) if len(y_pred) else 0.0


def accepted_accuracy_score(y_true, y_pred, *, reject_label=-1, zero_division=0.0):
    """Accuracy on the accepted (not rejected) samples only (higher is better).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predictions, ``reject_label`` for rejected samples.
    reject_label : int, float or str, default=-1
        The label of a rejection.
    zero_division : float, default=0.0
        Returned when every sample is rejected.

    Returns
    -------
    float
        ``mean(y_pred == y_true)`` over samples with ``y_pred != reject_label``.

    Examples
    --------
    >>> from skrobust.metrics import accepted_accuracy_score
    >>> accepted_accuracy_score([0, 1, 2, 3], [0, -1, 2, 1])
    0.6666666666666666
    """
    y_true, y_pred = _labels(y_true, y_pred)
    accepted = ~_is_reject(y_pred, reject_label)
    if not accepted.any():
        return float(zero_division)
    return float(np.mean(y_true[accepted] == y_pred[accepted]))


def robust_accuracy_with_rejection_score(y_true, y_pred_adv, *, reject_label=-1):
    """Accuracy on adversarial examples where a rejection counts as correct (higher is better).

    The security-evaluation metric of reject defenses (Sotgiu et al., 2020): an
    adversarial example is handled correctly when it is classified as its true
    class *or* rejected. Use it with
    :func:`~skrobust.metrics.make_adversarial_scorer` to score a defense on attacks
    crafted against it; on clean data use plain accuracy, which counts a rejection
    as an error.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred_adv : array-like of shape (n_samples,)
        Predictions on the adversarial examples, ``reject_label`` for rejections.
    reject_label : int, float or str, default=-1
        The label of a rejection.

    Returns
    -------
    float
        ``mean((y_pred_adv == y_true) | (y_pred_adv == reject_label))``.

    References
    ----------
    A. Sotgiu et al., "Deep neural rejection against adversarial examples",
    EURASIP Journal on Information Security 2020:5 (2020).

    Examples
    --------
    >>> from skrobust.metrics import robust_accuracy_with_rejection_score
    >>> robust_accuracy_with_rejection_score([0, 1, 2, 3], [0, -1, 1, 3])
    0.75
    """
    y_true, y_pred_adv = _labels(y_true, y_pred_adv)
    if not len(y_true):
        return 0.0
    return float(np.mean((y_true == y_pred_adv) | _is_reject(y_pred_adv, reject_label)))
