import time
from dataclasses import replace

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ..attacks import APGDTransformer, FGSMTransformer, PGDTransformer
from ..attacks._base import _bound, attack_estimator, resolve_norm
from ..utils._differentiable import as_torch_model
from ..utils._torch import eval_mode, to_tensor
from ._sanity import (
    check_input_bounds,
    check_iterative_stronger,
    predict_labels,
    run_sanity_checks,
)

SINGLE_STEP = (FGSMTransformer,)
ITERATIVE = (PGDTransformer, APGDTransformer)


def attack_name(attack):
    """A short readable name of an attack: ``"APGD-CE"``, ``"APGD-T"``, ``"PGD-40"``, ..."""
    if isinstance(attack, APGDTransformer):
        if attack.n_target_classes is not None:
            return "APGD-T" if attack.loss == "dlr" else f"APGD-{attack.loss.upper()}-T"
        suffix = "-targeted" if attack.targeted else ""
        return f"APGD-{str(attack.loss).upper()}{suffix}"
    if isinstance(attack, PGDTransformer):
        return f"PGD-{attack.n_iter}"
    if isinstance(attack, FGSMTransformer):
        return "FGSM"
    return type(attack).__name__.removesuffix("Transformer")


def _n_outputs(estimator, n_features):
    model = as_torch_model(estimator)
    import torch

    with eval_mode(model.module), torch.no_grad():
        logits = model.module(to_tensor(np.zeros((1, n_features)), model.device))
    return max(int(logits.shape[1]), 2)


def default_attacks(n_classes, *, n_iter=100, norm="inf", n_queries=1000):
    """AutoAttack's ensemble plus FGSM: APGD-CE, APGD-T (DLR, 9 targets), FGSM, Square.

    With 3 classes the targeted DLR loss is undefined and APGD-DLR replaces APGD-T;
    with 2 classes neither runs. The black-box Square Attack (Linf only) guards
    against gradient masking, which fools gradient attacks but not random search.

    Parameters
    ----------
    n_classes : int
        Number of classes (outputs) of the victim.
    n_iter : int, default=100
        Iterations of each APGD run.
    norm : {"inf", 2}, default="inf"
        Norm of the budget; Square runs for ``"inf"`` only.
    n_queries : int, default=1000
        Queries of the Square Attack (AutoAttack uses 5000); 0 leaves it out.

    Returns
    -------
    attacks : list of (str, attack) tuples

    Examples
    --------
    >>> from skrobust.evaluation import default_attacks
    >>> [name for name, _ in default_attacks(10)]
    ['APGD-CE', 'APGD-T', 'FGSM', 'Square']
    """
    norm = resolve_norm(norm)
    attacks = [("APGD-CE", APGDTransformer(loss="ce", n_iter=n_iter, norm=norm))]
    if n_classes >= 4:
        attacks.append(("APGD-T", APGDTransformer(loss="dlr", n_iter=n_iter, norm=norm,
                                                  n_target_classes=min(9, n_classes - 1))))
    elif n_classes == 3:
        attacks.append(("APGD-DLR", APGDTransformer(loss="dlr", n_iter=n_iter, norm=norm)))
    attacks.append(("FGSM", FGSMTransformer(norm=norm)))
    if norm == "inf" and n_queries > 0:
        from ..attacks import SquareAttackTransformer

        attacks.append(("Square", SquareAttackTransformer(n_queries=n_queries)))
    return attacks


def _named_attacks(attacks):
    if isinstance(attacks, dict):
        pairs = list(attacks.items())
    else:
        try:
            items = list(attacks)
        except TypeError:
            items = [attacks]
        pairs = [item if isinstance(item, tuple) else (attack_name(item), item)
                 for item in items]
    if not pairs:
        raise ValueError("attacks is empty; give at least one attack, or None for the "
                         "default ensemble.")
    named, seen = [], {}
    for name, attack in pairs:
        if not hasattr(attack, "generate") or not hasattr(attack, "get_params"):
            raise TypeError(
                f"attack {name!r} is a {type(attack).__name__}; attacks must be skrobust "
                "attack transformers (with generate and get_params).")
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}-{seen[name]}", attack))
    return named


def _check_eps(eps, name="eps"):
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={eps!r} must be a float >= 0.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={eps!r} must be a finite float >= 0.")
    return value


def configure_attacks(attacks, *, eps, norm, clip_min, clip_max, random_state,
                      n_classes):
    """Clone the attacks and set the threat model (eps, bounds) on each.

    ``n_classes`` is a callable giving the number of classes, called only for the
    default attacks. Raises a ValueError when an attack's norm differs from ``norm``.
    """
    norm = resolve_norm(norm)
    if attacks is None:
        attacks = default_attacks(n_classes(), norm=norm)
    configured = []
    for name, attack in _named_attacks(attacks):
        params = attack.get_params(deep=False)
        if "norm" in params and resolve_norm(params["norm"]) != norm:
            raise ValueError(
                f"attack {name!r} uses norm={params['norm']!r} but the evaluation asks "
                f"for norm={norm!r}; set the attack's norm to {norm!r} or evaluate with "
                f"norm={params['norm']!r}.")
        updates = {"eps": eps, "clip_min": clip_min, "clip_max": clip_max}
        if random_state is not None:
            updates["random_state"] = random_state
        attack = clone(attack).set_params(**{k: v for k, v in updates.items() if k in params})
        configured.append((name, attack))
    return configured


def evaluate_robustness(estimator, X, y, *, eps, norm="inf", attacks=None, clip_min=0.0,
                        clip_max=1.0, reject_label=None, sanity_checks=True,
                        random_state=None):
    """Worst-case robust accuracy over an ensemble of attacks (the AutoAttack protocol).

    Attacks run in turn, each only on the samples still standing (correctly
    classified on clean data and not yet fooled), so the cost falls as samples
    fall; a sample is robust only if it survives every attack. Each attack is
    cloned, given the budget ``eps`` and the bounds, and run against a frozen
    ``estimator`` with the true labels.

    Parameters
    ----------
    estimator : fitted classifier or torch.nn.Module
        The victim: a fitted skorch net, a skrobust estimator, a torch module
        returning logits (labels are then column indices), each optionally wrapped
        in ``FrozenEstimator``. It is neither refitted nor modified.
    X : array-like of shape (n_samples, n_features)
        Clean inputs inside ``[clip_min, clip_max]``.
    y : array-like of shape (n_samples,)
        True labels.
    eps : float
        The perturbation budget, set on every attack.
    norm : {"inf", 2}, default="inf"
        The norm of the budget; an attack with another norm is an error.
    attacks : list of attacks or of (name, attack) tuples, dict or None, default=None
        The ensemble, run in this order. None: APGD-CE, APGD-T (targeted DLR, 9
        target classes), FGSM and, for Linf, the black-box Square Attack (see
        :func:`default_attacks`), with norm ``norm``.
    clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
        The input domain, set on every attack.
    reject_label : int, str or None, default=None
        For classifiers with a reject option: the label of a rejection. A rejected
        clean sample is an error; a rejected adversarial example counts as robust.
    sanity_checks : bool, default=True
        Run :func:`run_sanity_checks` before and :func:`check_iterative_stronger`
        after the attacks, warning with a :class:`RobustnessWarning` on failure.
        The input-bounds check always runs: inputs outside the bounds are warned
        about and the bounds are widened to cover them.
    random_state : int or None, default=None
        Set on every attack that has a ``random_state`` (random starts).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        - ``clean_accuracy``, ``robust_accuracy`` : float
        - ``attacks`` : list of the attack names, in order
        - ``accuracy`` : dict, robust accuracy after each attack (cumulative)
        - ``n_attacked``, ``n_fooled``, ``seconds_per_attack`` : dicts by attack
        - ``correct`` : bool array, correct on clean data
        - ``robust`` : bool array, correct on clean data and survives every attack
        - ``broken_by`` : object array, the attack that fooled each sample,
          ``"clean"`` for clean errors, None for robust samples
        - ``X_adv`` : the adversarial example of each sample (from the attack that
          fooled it; from the last attack for robust samples; X for clean errors)
        - ``y_pred``, ``y_pred_adv`` : predictions on X and on ``X_adv``
        - ``seconds`` : total attack time; ``eps``, ``norm``, ``n_samples``
        - ``sanity_checks`` : list of :class:`SanityCheck`

    See Also
    --------
    security_curve : Robust accuracy over a range of budgets.

    References
    ----------
    F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.preprocessing import minmax_scale
    >>> from skrobust.attacks import APGDTransformer, FGSMTransformer
    >>> from skrobust.evaluation import evaluate_robustness
    >>> X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    >>> X = minmax_scale(X).astype("float32")
    >>> victim = FGSMTransformer(random_state=0).fit(X, y).estimator_
    >>> attacks = [APGDTransformer(n_iter=20), FGSMTransformer()]
    >>> result = evaluate_robustness(victim, X, y, eps=0.1, attacks=attacks, random_state=0)
    >>> result.attacks
    ['APGD-CE', 'FGSM']
    >>> result.robust_accuracy <= min(result.accuracy.values()) <= result.clean_accuracy
    True
    """
    X, y = _check_X_y(X, y)
    lo, hi, bounds_check = _domain(X, clip_min, clip_max)
    return _evaluate(estimator, X, y, eps=eps, norm=norm, attacks=attacks, clip_min=lo,
                     clip_max=hi, reject_label=reject_label, sanity_checks=sanity_checks,
                     model_checks=sanity_checks, random_state=random_state,
                     bounds_check=bounds_check)


def _check_X_y(X, y):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    y = column_or_1d(y)
    check_consistent_length(X, y)
    return X, y


def _domain(X, clip_min, clip_max):
    """Validated bounds, widened to cover X (with a warning) when X lies outside."""
    lo = _bound(clip_min, "clip_min", X.shape[1])
    hi = _bound(clip_max, "clip_max", X.shape[1])
    bounds_check = check_input_bounds(X, clip_min=clip_min, clip_max=clip_max)
    if not bounds_check.passed and len(X):
        # widen the box to the data, so the attacks run; the warning says why
        lo = None if lo is None else np.minimum(lo, X.min(axis=0))
        hi = None if hi is None else np.maximum(hi, X.max(axis=0))
    return lo, hi, bounds_check


def _evaluate(estimator, X, y, *, eps, norm, attacks, clip_min, clip_max, reject_label,
              sanity_checks, model_checks, random_state, bounds_check, y_pred=None):
    eps = _check_eps(eps)
    attacks = configure_attacks(attacks, eps=eps, norm=norm, clip_min=clip_min,
                                clip_max=clip_max, random_state=random_state,
                                n_classes=lambda: _n_outputs(estimator, X.shape[1]))
    checks = [bounds_check]
    if model_checks:
        checks += run_sanity_checks(estimator, X, y, attack=attacks[0][1],
                                    clip_min=clip_min, clip_max=clip_max)[1:]

    if y_pred is None:
        y_pred = predict_labels(estimator, X)
    correct = y_pred == y
    standing = correct.copy()
    broken_by = np.full(len(X), None, dtype=object)
    broken_by[~correct] = "clean"
    X_adv = X.copy()
    y_pred_adv = y_pred.copy()
    accuracy, n_attacked, n_fooled, seconds = {}, {}, {}, {}
    single_fooled = np.zeros(len(X), dtype=bool)
    iterative_fooled = np.zeros(len(X), dtype=bool)
    single_after_iterative = False
    seen_iterative = False
    for name, attack in attacks:
        index = np.flatnonzero(standing)
        n_attacked[name] = len(index)
        start = time.perf_counter()
        if len(index):
            X_a = attack_estimator(attack, estimator, X[index], y[index])
            pred = predict_labels(estimator, X_a)
            ok = pred == y[index]
            if reject_label is not None:
                ok |= np.asarray(pred.astype(object) == reject_label, dtype=bool)
            X_adv[index] = X_a
            y_pred_adv[index] = pred
            fooled = index[~ok]
            standing[fooled] = False
            broken_by[fooled] = name
        else:
            fooled = np.zeros(0, dtype=int)
        seconds[name] = time.perf_counter() - start
        n_fooled[name] = len(fooled)
        accuracy[name] = float(standing.mean()) if len(X) else 0.0
        if isinstance(attack, ITERATIVE):
            seen_iterative = True
            iterative_fooled[fooled] = True
        elif isinstance(attack, SINGLE_STEP):
            single_after_iterative |= seen_iterative
            single_fooled[fooled] = True
    if sanity_checks and single_after_iterative:
        check = check_iterative_stronger(single_fooled, iterative_fooled)
        checks.append(replace(check, name=f"{check.name} (eps={eps:g})"))
    return Bunch(
        clean_accuracy=float(correct.mean()) if len(X) else 0.0,
        robust_accuracy=float(standing.mean()) if len(X) else 0.0,
        attacks=[name for name, _ in attacks],
        accuracy=accuracy,
        n_attacked=n_attacked,
        n_fooled=n_fooled,
        seconds_per_attack=seconds,
        seconds=float(sum(seconds.values())),
        correct=correct,
        robust=standing,
        broken_by=broken_by,
        X_adv=X_adv,
        y_pred=y_pred,
        y_pred_adv=y_pred_adv,
        eps=eps,
        norm=resolve_norm(norm),
        n_samples=len(X),
        sanity_checks=checks,
    )


def format_robustness_table(result, *, title=None):
    """A plain-text table of an :func:`evaluate_robustness` result."""
    rows = [("clean", result.clean_accuracy, len(result.correct), float("nan"))]
    rows += [(name, result.accuracy[name], result.n_attacked[name],
              result.seconds_per_attack[name]) for name in result.attacks]
    rows.append(("worst case (robust)", result.robust_accuracy, float("nan"), result.seconds))
    width = max(len(r[0]) for r in rows)
    lines = [title] if title else []
    lines.append(f"{'attack':<{width}}  accuracy  attacked  seconds")
    for name, acc, n, sec in rows:
        n_text = "" if n != n else str(n)
        sec_text = "" if sec != sec else f"{sec:.2f}"
        lines.append(f"{name:<{width}}  {100 * acc:7.2f}%  {n_text:>8}  {sec_text:>7}")
    return "\n".join(lines)
