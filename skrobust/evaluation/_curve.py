import time

import numpy as np
from sklearn.utils import Bunch

from ..attacks._base import resolve_norm
from ..utils._docstrings import fill_doc

from ._robustness import (_check_eps, _check_X_y, _domain, _evaluate, check_escalation,
                          resolve_plan)
from ._sanity import check_monotonic_accuracy, predict_labels, run_sanity_checks


def check_eps_values(eps_values):
    """Validate a list of budgets: non-empty, finite, >= 0; returned sorted and unique."""
    if np.ndim(eps_values) == 0:
        raise ValueError(f"eps_values={eps_values!r} must be a list of budgets, e.g. "
                         "[0, 0.1, 0.2, 0.3].")
    values = [_check_eps(e, "eps_values") for e in eps_values]
    if not values:
        raise ValueError("eps_values is empty; give at least one budget, e.g. [0, 0.1, 0.3].")
    return np.unique(np.asarray(values, dtype=float))


@fill_doc
def security_curve(estimator, X, y, eps_values, *, attack=None, norm="inf", clip_min=0.0,
                   clip_max=1.0, reject_label=None, sanity_checks=True, random_state=None,
                   escalate=True, surrogate=None, non_differentiable=None):
    """Robust accuracy against the perturbation budget: a security-evaluation curve.

    At each budget, :func:`evaluate_robustness` runs ``attack`` (or the worst case of
    an ensemble of attacks). The accuracy at ``eps=0`` is the clean accuracy (no
    attack is run). With ``sanity_checks``, the model checks run once and
    :func:`check_monotonic_accuracy` checks the curve. Where gradient masking is
    detected, each budget's evaluation escalates as :func:`evaluate_robustness`
    does, so every point of the curve is a worst case over the escalated attacks
    too.

    Parameters
    ----------
    estimator : fitted classifier or torch.nn.Module
        The victim (see :func:`evaluate_robustness`).
    {X_clean}
    {y_true_labels}
    eps_values : array-like of float
        Budgets (>= 0); they are sorted and deduplicated.
    attack : attack, list of attacks or None, default=None
        One attack, or an ensemble (see ``attacks`` of :func:`evaluate_robustness`);
        None for the default ensemble (:func:`default_attacks`).
    norm : {"inf", 2}, default="inf"
        The norm of the budget.
    clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
        The input domain.
    reject_label : int, str or None, default=None
        Label of a rejection: rejected adversarial examples count as correct
        (rejection-aware accuracy), rejected clean samples as errors. With
        ``attack=None``, the two-stage adaptive attack
        :class:`~skrobust.attacks.AdaptiveRejectionTransformer` runs after the
        default ensemble on the samples still standing (a non-adaptive attack
        over-reports rejection defenses).
    sanity_checks : bool, default=True
        Run the sanity checks, warning with a :class:`RobustnessWarning` on failure.
    random_state : int or None, default=None
        Seeds the attacks' random starts.
    escalate : bool, default=True
        Escalate at each budget when gradient masking is detected (see
        :func:`evaluate_robustness`); False keeps the plain protocol.
    surrogate : fitted classifier or torch.nn.Module or None, default=None
        A differentiable model whose examples are transferred to ``estimator`` at
        each budget (see :func:`evaluate_robustness`). Needs ``escalate=True``.
    non_differentiable : list of str or None, default=None
        The victim's non-differentiable parts, attacked with straight-through
        gradients (see :func:`evaluate_robustness`).

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        ``eps`` (sorted budgets), ``accuracy`` (robust accuracy at each),
        ``clean_accuracy``, ``results`` (the :func:`evaluate_robustness` result of each
        budget > 0), ``attacks`` (names), ``norm``, ``seconds``, ``sanity_checks``.

    See Also
    --------
    SecurityCurveDisplay : Plot the curve.

    References
    ----------
    B. Biggio and F. Roli, "Wild patterns: ten years after the rise of adversarial
    machine learning", Pattern Recognition 84, 2018.

    Examples
    --------
    {example_victim}
    >>> from skrobust.evaluation import security_curve
    >>> curve = security_curve(victim, X, y, [0, 0.1, 0.2], attack=FGSMTransformer())
    >>> bool(curve.accuracy[0] == curve.clean_accuracy >= curve.accuracy[-1])
    True
    """
    eps_values = check_eps_values(eps_values)
    X, y = _check_X_y(X, y)
    check_escalation(escalate, surrogate)
    attacks = None if attack is None else (
        attack if isinstance(attack, (list, tuple, dict)) else [attack])
    start = time.perf_counter()
    lo, hi, bounds_check = _domain(X, clip_min, clip_max)
    plan = resolve_plan(estimator, X, escalate=escalate, non_differentiable=non_differentiable)
    y_pred = predict_labels(plan.victim, X)
    clean_accuracy = float(np.mean(y_pred == y)) if len(y) else 0.0
    accuracy, results, checks = [], [], [bounds_check]
    for eps in eps_values:
        if eps == 0:
            accuracy.append(clean_accuracy)
            continue
        result = _evaluate(
            estimator, X, y, eps=eps, norm=norm, attacks=attacks, clip_min=lo, clip_max=hi,
            reject_label=reject_label, sanity_checks=sanity_checks,
            model_checks=sanity_checks and not results, random_state=random_state,
            bounds_check=bounds_check, y_pred=y_pred, escalate=escalate,
            surrogate=surrogate, non_differentiable=non_differentiable, plan=plan)
        # the bounds check is shared; keep one copy
        checks += [c for c in result.sanity_checks if c is not bounds_check]
        accuracy.append(result.robust_accuracy)
        results.append(result)
    if sanity_checks and not results:
        checks = run_sanity_checks(plan.victim, X, y, clip_min=lo, clip_max=hi)
        checks[0] = bounds_check
    accuracy = np.asarray(accuracy, dtype=float)
    n_samples = len(y)
    if sanity_checks and len(eps_values) > 1:
        # one sample of noise is tolerated: random starts differ between budgets
        checks.append(check_monotonic_accuracy(eps_values, accuracy,
                                               tol=1.0 / max(n_samples, 1) + 1e-12))
    return Bunch(
        eps=eps_values,
        accuracy=accuracy,
        clean_accuracy=clean_accuracy,
        results=results,
        attacks=results[0].attacks if results else [],
        norm=results[0].norm if results else resolve_norm(norm),
        seconds=time.perf_counter() - start,
        sanity_checks=checks,
    )
