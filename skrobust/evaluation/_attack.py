import time

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.utils import Bunch
from sklearn.utils.validation import column_or_1d

from ..attacks._base import attack_estimator
from ..utils._differentiable import victim_input
from ..utils._docstrings import fill_doc
from ..metrics import (
    avg_confidence_adv_class,
    avg_confidence_true_class,
    avg_lp_distance,
    avg_ssim,
    misclassification_rate,
)


def _square_image_shape(n_features):
    # SSIM's 7x7 window needs images of at least 7x7 pixels
    side = int(round(np.sqrt(n_features)))
    return (side, side) if side * side == n_features and side >= 7 else None


@fill_doc
def evaluate_attack(estimator, X, y, attack, *, image_shape="auto", relative=False):
    """Attack a fitted classifier and report MindArmour's ``AttackEvaluate`` figures.

    The attack is cloned, pointed at a frozen ``estimator`` and run with the true
    labels (``generate(X, y)``), then the estimator is scored on the result.

    Parameters
    ----------
    estimator : fitted classifier
        A victim the attack supports, with ``predict_proba`` and ``classes_``.
    {X_clean}
    {y_true_labels}
    attack : skrobust attack transformer
        E.g. ``FGSMTransformer(eps=0.3)``; its ``estimator`` is replaced.
    image_shape : "auto", tuple of int or None, default="auto"
        Image shape for SSIM; ``"auto"`` uses a square image when ``n_features`` is
        a perfect square of at least 7x7 pixels; None skips SSIM (reported as NaN).
    relative : bool, default=False
        Report MindArmour's relative Lp distances instead of absolute ones
        (see :func:`~skrobust.metrics.avg_lp_distance`).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        ``clean_accuracy``, ``adversarial_accuracy``, ``misclassification_rate``,
        ``acac``, ``actc``, ``l0``, ``l2``, ``linf``, ``ssim``,
        ``seconds_per_sample`` (attack time), ``n_samples``, and the arrays
        ``X_adv``, ``y_pred`` (clean predictions), ``y_pred_adv``.
        As in MindArmour, ACAC, ACTC, distances and SSIM are averaged over the
        successful adversarial examples (0 or NaN when there are none).

    Examples
    --------
    {example_victim}
    >>> from skrobust.evaluation import evaluate_attack
    >>> result = evaluate_attack(victim, X, y, FGSMTransformer(eps=0.2))
    >>> result.adversarial_accuracy <= result.clean_accuracy
    True
    """
    y = column_or_1d(y)
    X = np.asarray(X)
    start = time.perf_counter()
    X_adv = attack_estimator(attack, estimator, X, y)
    seconds = time.perf_counter() - start
    y_pred = estimator.predict(victim_input(estimator, X))
    proba_adv = estimator.predict_proba(victim_input(estimator, X_adv))
    labels = getattr(estimator, "classes_", None)
    y_pred_adv = proba_adv.argmax(1)
    if labels is not None:
        y_pred_adv = np.asarray(labels)[y_pred_adv]
    fooled = y_pred_adv != y
    if image_shape == "auto":
        image_shape = _square_image_shape(X.shape[1])
    ssim = (avg_ssim(X[fooled], X_adv[fooled], image_shape=image_shape)
            if image_shape is not None and fooled.any() else float("nan"))
    return Bunch(
        clean_accuracy=float(accuracy_score(y, y_pred)),
        adversarial_accuracy=float(accuracy_score(y, y_pred_adv)),
        misclassification_rate=misclassification_rate(y, y_pred_adv),
        acac=avg_confidence_adv_class(y, proba_adv, labels=labels),
        actc=avg_confidence_true_class(y, proba_adv, labels=labels),
        # over the fooled samples only: NaN when none was fooled, as for ssim
        **{name: (avg_lp_distance(X[fooled], X_adv[fooled], p=p, relative=relative)
                  if fooled.any() else float("nan"))
           for name, p in (("l0", 0), ("l2", 2), ("linf", "inf"))},
        ssim=ssim,
        seconds_per_sample=seconds / max(len(X), 1),
        n_samples=len(X),
        X_adv=X_adv,
        y_pred=y_pred,
        y_pred_adv=y_pred_adv,
    )


def format_attack_table(result, *, title=None):
    """The table MindArmour's tutorials print, from an :func:`evaluate_attack` result."""
    rows = [
        ("accuracy on clean examples", f"{100 * result.clean_accuracy:.2f} %"),
        ("accuracy on adversarial examples", f"{100 * result.adversarial_accuracy:.2f} %"),
        ("misclassification rate", f"{100 * result.misclassification_rate:.2f} %"),
        ("avg confidence of adversarial class (ACAC)", f"{result.acac:.4f}"),
        ("avg confidence of true class (ACTC)", f"{result.actc:.4f}"),
        ("avg L0 / L2 / Linf distance", f"{result.l0:.1f} / {result.l2:.3f} / {result.linf:.3f}"),
        ("avg SSIM", f"{result.ssim:.4f}"),
        ("attack time per example", f"{1000 * result.seconds_per_sample:.2f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [title] if title else []
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
