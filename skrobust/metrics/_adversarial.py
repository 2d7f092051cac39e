"""Label- and probability-level metrics of adversarial examples (MindArmour's set)."""

import numpy as np
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ..utils._differentiable import encode_labels
from ..utils._docstrings import fill_doc


@fill_doc
def misclassification_rate(y_true, y_pred_adv):
    """Fraction of adversarial examples classified wrongly (lower is better for a model).

    Parameters
    ----------
    {y_true}
    {y_pred_adv}

    Returns
    -------
    float
        ``mean(y_pred_adv != y_true)``; the attack's success rate when untargeted.

    Examples
    --------
    >>> from skrobust.metrics import misclassification_rate
    >>> misclassification_rate([0, 1, 2, 3], [0, 2, 2, 0])
    0.5
    """
    y_true, y_pred_adv = column_or_1d(y_true), column_or_1d(y_pred_adv)
    check_consistent_length(y_true, y_pred_adv)
    return float(np.mean(y_true != y_pred_adv))


@fill_doc
def attack_success_rate(y_target, y_pred_adv):
    """Fraction of targeted adversarial examples classified as their target.

    Parameters
    ----------
    y_target : array-like of shape (n_samples,)
        Target labels of the attack.
    {y_pred_adv}

    Returns
    -------
    float
        ``mean(y_pred_adv == y_target)`` (higher means a stronger attack).

    Examples
    --------
    >>> from skrobust.metrics import attack_success_rate
    >>> attack_success_rate([1, 1, 1, 1], [1, 0, 1, 1])
    0.75
    """
    y_target, y_pred_adv = column_or_1d(y_target), column_or_1d(y_pred_adv)
    check_consistent_length(y_target, y_pred_adv)
    return float(np.mean(y_target == y_pred_adv))


def proba_and_index(y_true, proba_adv, labels, *, name="y_true"):
    """Validated probabilities and the column of each true label.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba_adv : array-like of shape (n_samples, n_classes)
        Predicted probabilities.
    labels : array-like of shape (n_classes,) or None
        Label of each column of ``proba_adv``; ``0..n_classes-1`` if None.
    name : str, default="y_true"
        Name of ``y_true`` in the caller, for the message.

    Returns
    -------
    proba_adv : ndarray of shape (n_samples, n_classes)
        float64 probabilities.
    index : ndarray of shape (n_samples,)
        ``proba_adv[i, index[i]]`` is the probability of ``y_true[i]``, mapped by
        the victims' own label mapping (``encode_labels``, as in
        :meth:`~skrobust.utils.TorchModel.encode`).

    Raises
    ------
    ValueError
        If ``labels`` does not match the columns, or ``y_true`` has a label not in it.
    """
    proba_adv = check_array(proba_adv, dtype=np.float64)
    y_true = column_or_1d(y_true)
    check_consistent_length(y_true, proba_adv)
    labels = np.arange(proba_adv.shape[1]) if labels is None else np.asarray(labels)
    if len(labels) != proba_adv.shape[1]:
        raise ValueError(
            f"labels has {len(labels)} entries but proba_adv has {proba_adv.shape[1]} columns."
        )
    return proba_adv, encode_labels(y_true, labels, name=name)


@fill_doc
def avg_confidence_adv_class(y_true, proba_adv, *, labels=None):
    """Average Confidence of the Adversarial Class (ACAC).

    The mean predicted probability of the (wrong) predicted class over the
    successful adversarial examples, i.e. those whose argmax differs from
    ``y_true``. Higher means the model is fooled with more confidence.

    Parameters
    ----------
    {deepsec}

    Examples
    --------
    >>> from skrobust.metrics import avg_confidence_adv_class
    >>> avg_confidence_adv_class([0, 0], [[0.2, 0.8], [0.9, 0.1]])
    0.8
    """
    proba_adv, index = proba_and_index(y_true, proba_adv, labels)
    fooled = proba_adv.argmax(1) != index
    return float(proba_adv[fooled].max(1).mean()) if fooled.any() else 0.0


@fill_doc
def avg_confidence_true_class(y_true, proba_adv, *, labels=None):
    """Average Confidence of the True Class (ACTC).

    The mean predicted probability of the true class over the successful
    adversarial examples. Lower means the attack moved the model further from
    the truth.

    Parameters
    ----------
    {deepsec}

    Examples
    --------
    >>> from skrobust.metrics import avg_confidence_true_class
    >>> avg_confidence_true_class(["cat", "cat"], [[0.2, 0.8], [0.9, 0.1]],
    ...                           labels=["cat", "dog"])
    0.2
    """
    proba_adv, index = proba_and_index(y_true, proba_adv, labels)
    fooled = proba_adv.argmax(1) != index
    return float(proba_adv[fooled, index[fooled]].mean()) if fooled.any() else 0.0
