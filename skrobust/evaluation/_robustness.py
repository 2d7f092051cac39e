import numbers
import time
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ..attacks import (
    AdaptiveRejectionTransformer,
    APGDTransformer,
    FABTransformer,
    FGSMTransformer,
    PGDTransformer,
    SquareAttackTransformer,
)
from ..attacks._base import attack_estimator, resolve_norm
from ..attacks._square import resolve_image_shape
from ..utils._differentiable import TorchModel, as_torch_model, unfrozen
from ..utils._sklearn_torch import (
    check_convertible,
    sklearn_to_torch,
)
from ..utils._validation import check_bound
from ._sanity import (
    ResolvedVictim,
    check_black_box_weaker,
    check_flat_scores,
    check_gradients,
    check_input_bounds,
    check_iterative_stronger,
    predict_labels,
    resolve_victim,
    run_sanity_checks,
)

SINGLE_STEP = (FGSMTransformer,)
ITERATIVE = (PGDTransformer, APGDTransformer, FABTransformer)


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
    # the victim layer's cached dry forward; a width the victim cannot take is a
    # ValueError naming the expected and the given width
    return as_torch_model(estimator).n_classes(n_features)


SCREEN_STEPS = 10


def default_attacks(n_classes, *, n_iter=100, norm="inf", n_queries=5000):
    """AutoAttack's ensemble plus FGSM, cheapest first.

    APGD-CE, APGD-T-10, FAB-T-10, Square, APGD-T, FGSM. Every attack runs on the
    samples the previous ones left standing, so the order changes the cost and not
    the worst case. After APGD-CE come two short runs at ``SCREEN_STEPS = 10``
    steps per target class, the budget of torchattacks'
    ``AutoAttack(version="standard")``: APGD-T (DLR loss, 9 targets) and FAB-T (the
    targeted Fast Adaptive Boundary attack, 9 targets). Then the black-box Square
    Attack (Linf only), which guards against gradient masking; then APGD-T at
    ``n_iter`` steps on what still stands. A sample robust to everything pays for
    both APGD-T runs (10 % more than the full run alone); one that falls to a
    short run or to Square never pays for the long one, and on models with masked
    or noisy gradients (where Square succeeds and APGD does not) that is most of
    them. FGSM comes last, so that the sanity check "a single step beats the
    iterative attacks" sees both.

    With 3 classes the targeted DLR loss is undefined and APGD-DLR replaces APGD-T
    (FAB-T is left out with it); with 2 classes neither runs.

    Parameters
    ----------
    n_classes : int
        Number of classes (outputs) of the victim.
    n_iter : int, default=100
        Iterations of each full APGD run; the short runs take
        ``min(10, n_iter)`` and the short APGD-T run is left out when
        ``n_iter <= 10``.
    norm : {"inf", 2}, default="inf"
        Norm of the budget; Square runs for ``"inf"`` only.
    n_queries : int, default=5000
        Queries of the Square Attack per sample still standing (AutoAttack's
        budget); 0 leaves it out.

    Returns
    -------
    attacks : list of (str, attack) tuples

    Examples
    --------
    >>> from skrobust.evaluation import default_attacks
    >>> [name for name, _ in default_attacks(10)]
    ['APGD-CE', 'APGD-T-10', 'FAB-T-10', 'Square', 'APGD-T', 'FGSM']
    """
    norm = resolve_norm(norm)
    attacks = [("APGD-CE", APGDTransformer(loss="ce", n_iter=n_iter, norm=norm))]
    short = min(SCREEN_STEPS, n_iter)
    if n_classes >= 4:
        n_targets = min(9, n_classes - 1)
        targeted = dict(loss="dlr", norm=norm, n_target_classes=n_targets)
        if n_iter > SCREEN_STEPS:
            attacks.append((f"APGD-T-{short}", APGDTransformer(n_iter=short, **targeted)))
        attacks.append((f"FAB-T-{short}", FABTransformer(n_iter=short, norm=norm,
                                                         n_target_classes=n_targets)))
        last = [("APGD-T", APGDTransformer(n_iter=n_iter, **targeted))]
    elif n_classes == 3:
        last = [("APGD-DLR", APGDTransformer(loss="dlr", n_iter=n_iter, norm=norm))]
    else:
        last = []
    if norm == "inf" and n_queries > 0:
        attacks.append(("Square", SquareAttackTransformer(n_queries=n_queries)))
    return attacks + last + [("FGSM", FGSMTransformer(norm=norm))]


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
                        escalate=True, surrogate=None, non_differentiable=None,
                        random_state=None):
    """Worst-case robust accuracy over an ensemble of attacks (the AutoAttack protocol).

    Attacks run in turn, each only on the samples still standing (correctly
    classified on clean data and not yet fooled), so the cost falls as samples
    fall; a sample is robust only if it survives every attack. Each attack is
    cloned, given the budget ``eps`` and the bounds, and run against a frozen
    ``estimator`` with the true labels. The victim is resolved into its torch
    model once and shared by the sanity checks and every attack.

    When a sanity check detects masked or obfuscated gradients (zero or NaN
    gradients, flat cross-entropy scores, a mismatch at ``eps=0``, FGSM beating the
    iterative attacks), the evaluation escalates (``escalate=True``): on the
    samples still standing it runs the gradient attacks of the ensemble through
    the declared non-differentiable parts with straight-through gradients (BPDA),
    transfers their adversarial examples from the same network without those
    parts, and runs the Square Attack again with a larger budget and a new seed.
    When the masking is detected before the attacks (by the gradient checks), the
    white-box escalation runs first, so the ensemble's futile gradient attacks
    only see its survivors; with flat cross-entropy scores the ensemble's DLR runs
    (APGD-T) also go before APGD-CE. A
    ``surrogate`` given by the user is always attacked and its examples
    transferred. Every escalated attack is listed in ``escalations`` with its
    reason, and ``robust_accuracy`` is the worst case per sample over everything
    run (adversarial examples are always judged on ``estimator`` itself).

    Parameters
    ----------
    estimator : fitted classifier or torch.nn.Module
        The victim: a fitted skorch net, a skrobust estimator, a torch module
        returning logits (labels are then column indices), a scikit-learn
        pipeline, each optionally wrapped in ``FrozenEstimator``. It is neither
        refitted nor modified.
    X : array-like of shape (n_samples, n_features)
        Clean inputs inside ``[clip_min, clip_max]``, finite.
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
        The input domain, set on every attack; ``clip_min <= clip_max``.
    reject_label : int, str or None, default=None
        For classifiers with a reject option: the label of a rejection. A rejected
        clean sample is an error; a rejected adversarial example counts as robust.
        With ``attacks=None``, the two-stage adaptive attack
        :class:`~skrobust.attacks.AdaptiveRejectionTransformer` runs last.
    sanity_checks : bool, default=True
        Run :func:`run_sanity_checks` before and :func:`check_iterative_stronger`
        after the attacks, warning with a :class:`RobustnessWarning` on failure.
        The input-bounds check always runs: inputs outside the bounds are warned
        about and the bounds are widened to cover them.
    escalate : bool, default=True
        Escalate when gradient masking is detected (see above). With
        ``sanity_checks=False`` the cheap gradient checks still run, silently, to
        decide. False keeps the plain protocol: the ensemble and nothing else.
    surrogate : fitted classifier or torch.nn.Module or None, default=None
        A differentiable model with the victim's classes (e.g. the same network
        trained without the defense): the gradient attacks of the ensemble run on
        it and their examples are transferred to ``estimator``. Needs
        ``escalate=True``.
    non_differentiable : list of str or None, default=None
        Names of the victim's non-differentiable or gradient-masking parts:
        submodules of its torch module (as in ``named_modules()``; for a converted
        scikit-learn pipeline, its step names) whose output has the shape of their
        input (input quantisation, a clamped log-softmax on the logits). None:
        the submodules with an attribute ``skrobust_non_differentiable = True``,
        and the steps of a scikit-learn pipeline that cannot be differentiated
        (e.g. a rounding ``FunctionTransformer``) before a differentiable final
        part; such a pipeline is attacked with straight-through gradients
        through those steps from the start. Used by the escalation.
    random_state : int or None, default=None
        Set on every attack that has a ``random_state`` (random starts).

    Returns
    -------
    result : :class:`~sklearn.utils.Bunch`
        - ``clean_accuracy``, ``robust_accuracy`` : float
        - ``attacks`` : list of the attack names, in order (escalated ones last)
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
        - ``escalations`` : list of dicts ``{"attack": name, "reason": why}``, one
          per escalated attack (empty when nothing was escalated)
        - ``plain_robust_accuracy`` : robust accuracy after the ensemble alone,
          before any escalation; None when masking was detected before the attacks
          and the white-box escalation ran first (the ensemble then only attacked
          its survivors)

    See Also
    --------
    security_curve : Robust accuracy over a range of budgets.

    References
    ----------
    F. Croce and M. Hein, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks", ICML 2020.

    A. Athalye, N. Carlini and D. Wagner, "Obfuscated gradients give a false sense
    of security: circumventing defenses to adversarial examples", ICML 2018.

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
    >>> result.attacks, result.escalations
    (['APGD-CE', 'FGSM'], [])
    >>> result.robust_accuracy <= min(result.accuracy.values()) <= result.clean_accuracy
    True
    """
    X, y = _check_X_y(X, y)
    lo, hi, bounds_check = _domain(X, clip_min, clip_max)
    return _evaluate(estimator, X, y, eps=eps, norm=norm, attacks=attacks, clip_min=lo,
                     clip_max=hi, reject_label=reject_label, sanity_checks=sanity_checks,
                     model_checks=sanity_checks, random_state=random_state,
                     bounds_check=bounds_check, escalate=escalate, surrogate=surrogate,
                     non_differentiable=non_differentiable)


def _check_X_y(X, y):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"X must hold real numbers; got dtype {X.dtype}.")
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"X contains NaN or infinite values in {len(bad)} of {len(X)} rows (first: "
            f"row {bad[0]}); an attack cannot start from them. Remove or impute those "
            "rows before evaluating.")
    y = column_or_1d(y)
    check_consistent_length(X, y)
    return X, y


def _domain(X, clip_min, clip_max):
    """Validated bounds, widened to cover X (with a warning) when X lies outside."""
    lo = check_bound(clip_min, "clip_min", X.shape[1])
    hi = check_bound(clip_max, "clip_max", X.shape[1])
    if lo is not None and hi is not None and np.any(np.asarray(lo) > np.asarray(hi)):
        raise ValueError(
            f"clip_min > clip_max ({clip_min!r} > {clip_max!r}); the lower bound must not "
            "exceed the upper bound.")
    bounds_check = check_input_bounds(X, clip_min=clip_min, clip_max=clip_max)
    if not bounds_check.passed and len(X):
        # widen the box to the data, so the attacks run; the warning says why
        lo = None if lo is None else np.minimum(lo, X.min(axis=0))
        hi = None if hi is None else np.maximum(hi, X.max(axis=0))
    return lo, hi, bounds_check


# Checks whose failure means masked or obfuscated gradients (the name up to " (")
MASKING_CHECKS = ("gradients", "cross-entropy gradients", "eps=0 reproduces clean accuracy",
                  "iterative attacks beat FGSM",
                  "black-box attack weaker than gradient attacks")
NON_DIFFERENTIABLE_MARK = "skrobust_non_differentiable"
# The escalated Square Attack: at least AutoAttack's budget, with new seeds
ESCALATED_SQUARE_QUERIES = 5000
ESCALATED_SQUARE_RUNS = 1


class _Rewired(torch.nn.Module):
    """A victim's module with declared parts made straight-through or skipped.

    ``mode="bpda"``: each part computes its output in the forward pass and passes
    the gradient unchanged in the backward pass (x + (f(x) - x).detach()).
    ``mode="skip"``: each part is the identity (the network without it). The
    parts' forward hooks live only during a call; the module itself is shared,
    never copied or changed.
    """

    def __init__(self, module, names, mode):
        super().__init__()
        self.inner = module
        self.names = tuple(names)
        self.mode = mode

    def _hook(self, name):
        def hook(module, args, output):
            x = args[0]
            if not isinstance(output, torch.Tensor) or output.shape != x.shape:
                raise ValueError(
                    f"non_differentiable part {name!r} changes the shape of its input "
                    f"({tuple(x.shape)} -> {tuple(getattr(output, 'shape', ()))}); only "
                    "parts whose output has the shape of their input can be skipped or "
                    "passed straight through.")
            return x if self.mode == "skip" else x + (output - x).detach()
        return hook

    def forward(self, x):
        parts = dict(self.inner.named_modules())
        handles = [parts[name].register_forward_hook(self._hook(name)) for name in self.names]
        try:
            return self.inner(x)
        finally:
            for handle in handles:
                handle.remove()


class _StraightThroughStep(torch.autograd.Function):
    """A fitted scikit-learn transformer in the forward pass, the identity backward."""

    @staticmethod
    def forward(ctx, x, step):
        out = np.asarray(step.transform(x.detach().cpu().numpy()), dtype=np.float32)
        return torch.from_numpy(out).to(x.device)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _NumpyStep(torch.nn.Module):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def forward(self, x):
        return _StraightThroughStep.apply(x, self.step)


def _split_pipeline(pipeline):
    """``(k, model)``: ``pipeline.steps[k:]`` (``k >= 1``) is the longest tail that is
    a differentiable classifier, ``model`` its :class:`TorchModel`; or None."""
    steps = pipeline.steps
    for k in range(1, len(steps)):
        tail = steps[k][1] if k == len(steps) - 1 else Pipeline(steps[k:])
        try:
            return k, as_torch_model(tail)
        except TypeError:
            continue
    return None


def _pipeline_models(pipeline, X):
    """Straight-through and skipped torch models of a pipeline whose first steps
    cannot be differentiated, with the names of those steps; None if not such a
    pipeline (or a step changes the width, which straight-through cannot pass)."""
    split = _split_pipeline(pipeline)
    if split is None:
        return None
    k, tail = split
    tail_module, device = tail.module, tail.device
    bpda, skip, names = [], [], []
    row = np.asarray(X[:1], dtype=np.float64)
    for name, step in pipeline.steps[:k]:
        if step is None or step == "passthrough":
            continue
        try:
            check_convertible(step, name, final=False)
        except TypeError:
            if len(row) and np.shape(step.transform(row)) != row.shape:
                return None
            names.append(name)
            bpda.append((name, _NumpyStep(step)))
            skip.append((name, torch.nn.Identity()))
        else:
            converted = sklearn_to_torch(step)
            bpda.append((name, converted))
            skip.append((name, converted))
        row = np.asarray(step.transform(row), dtype=np.float64) if len(row) else row
    if not names:
        return None
    def model(parts):
        # the new container and steps in eval mode, the classifier's own mode untouched
        # (a training-mode warning must be about the user's model, never about ours)
        for _, part in parts:
            part.eval()
        module = torch.nn.Sequential(OrderedDict([*parts, ("classifier", tail_module)]))
        module.training = False
        return TorchModel(module, device, tail.classes)
    return model(bpda), model(skip), names


def _declared_parts(model, non_differentiable):
    """Names of the declared non-differentiable submodules of ``model.module``."""
    modules = dict(model.module.named_modules())
    if non_differentiable is None:
        return [name for name, m in modules.items()
                if name and getattr(m, NON_DIFFERENTIABLE_MARK, False)]
    if isinstance(non_differentiable, str):
        non_differentiable = [non_differentiable]
    names = list(non_differentiable)
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        known = [n for n in modules if n][:10]
        raise ValueError(
            f"non_differentiable={names!r} names {unknown!r}, which are not submodules of "
            f"the victim's module; its submodules include {known}.")
    return names


def resolve_plan(estimator, X, *, escalate, non_differentiable):
    """The victim resolved once, its declared non-differentiable parts and the
    straight-through and skipped models built from them."""
    victim = resolve_victim(estimator)
    plan = Bunch(victim=victim, parts=[], bpda=None, skip=None, pipeline=False)
    if not escalate:
        return plan
    if isinstance(victim, ResolvedVictim):
        parts = _declared_parts(victim.model, non_differentiable)
        if parts:
            model = victim.model
            plan.parts = parts
            plan.bpda = TorchModel(_Rewired(model.module, parts, "bpda"), model.device,
                                   model.classes)
            plan.skip = TorchModel(_Rewired(model.module, parts, "skip"), model.device,
                                   model.classes)
        return plan
    inner = unfrozen(estimator)
    if isinstance(inner, Pipeline) and non_differentiable is None:
        models = _pipeline_models(inner, X)
        if models is not None:
            bpda, skip, names = models
            # attack through the non-differentiable steps from the start
            plan.update(victim=ResolvedVictim(estimator, bpda), parts=names, bpda=bpda,
                        skip=skip, pipeline=True)
    elif non_differentiable is not None:
        raise ValueError(
            "non_differentiable names parts of a differentiable victim, but "
            f"{type(inner).__name__} has no torch gradient.")
    return plan


def _masking_reasons(checks):
    """Short reasons from the failed masking checks."""
    return [f"{c.name} check failed" for c in checks
            if c.passed is False and c.name.split(" (")[0] in MASKING_CHECKS]


def _is_black_box(attack):
    return isinstance(attack, SquareAttackTransformer)


def _escalated_square(attacks, *, eps, norm, clip_min, clip_max, n_features):
    """The Square Attack with at least AutoAttack's 5000 queries (twice the
    ensemble's own, if more); None when it cannot take ``norm`` (the L2 Square
    Attack needs rows that read as images)."""
    base = next((a for _, a in attacks if _is_black_box(a)), None)
    square = SquareAttackTransformer() if base is None else clone(base)
    params = square.get_params(deep=False)
    if "norm" in params:
        if norm == 2 and resolve_image_shape(params.get("image_shape", "auto"),
                                             n_features) is None:
            return None
        square.set_params(norm=norm)
    elif norm != "inf":
        return None
    own = 0 if base is None else int(params.get("n_queries", 0) or 0)
    queries = max(ESCALATED_SQUARE_QUERIES, 2 * own)
    return square.set_params(eps=eps, clip_min=clip_min, clip_max=clip_max,
                             n_queries=queries)


def _offset_seed(random_state, offset):
    if isinstance(random_state, numbers.Integral):
        return int(random_state) + offset
    return random_state


def _escalation_stages(plan, attacks, *, reasons, surrogate, eps, norm, clip_min,
                       clip_max, random_state, n_features, square=True):
    """``(name, attack, victim, reason)`` of each escalated attack, in order (the
    black-box Square Attack last, and only when ``square``)."""
    gradient = [(name, attack) for name, attack in attacks if not _is_black_box(attack)]
    stages = []
    if surrogate is not None:
        for name, attack in gradient:
            stages.append((f"{name} (transfer from surrogate)", attack, surrogate,
                           "a surrogate was given: its adversarial examples are "
                           "transferred"))
    if not reasons:
        return stages
    why = "; ".join(reasons)
    parts = ", ".join(repr(p) for p in plan.parts)
    if plan.bpda is not None and not plan.pipeline:
        for name, attack in gradient:
            stages.append((f"{name} (BPDA)", attack, ResolvedVictim(None, plan.bpda),
                           f"{why}: straight-through gradients through {parts}"))
    if plan.skip is not None:
        for name, attack in gradient:
            stages.append((f"{name} (transfer without {parts})", attack,
                           ResolvedVictim(None, plan.skip),
                           f"{why}: examples of the network without {parts}, transferred"))
    square = _escalated_square(attacks, eps=eps, norm=norm, clip_min=clip_min,
                               clip_max=clip_max, n_features=n_features) if square else None
    if square is not None:
        queries = square.get_params()["n_queries"]
        for restart in range(ESCALATED_SQUARE_RUNS):
            run = clone(square)
            if "random_state" in run.get_params(deep=False):
                run.set_params(random_state=_offset_seed(random_state, restart + 1))
            suffix = "" if restart == 0 else f" #{restart + 1}"
            stages.append((f"Square-{queries} (escalated{suffix})", run, None,
                           f"{why}: black-box random search with a larger budget and a "
                           "new seed"))
    return stages


def check_escalation(escalate, surrogate):
    """A surrogate only serves the escalation: refuse one with ``escalate=False``."""
    if surrogate is not None and not escalate:
        raise ValueError("surrogate is used by the escalation; set escalate=True, or "
                         "surrogate=None for the plain protocol.")


def _cross_entropy_last(attacks):
    """The ensemble with the APGD runs on the cross-entropy moved to just after the
    last other APGD run (the worst case per sample is the same, only its cost
    changes)."""
    def on_ce(attack):
        return isinstance(attack, APGDTransformer) and attack.loss == "ce"

    others = [i for i, (_, a) in enumerate(attacks)
              if isinstance(a, APGDTransformer) and not on_ce(a)]
    if not others or not any(on_ce(a) for _, a in attacks):
        return attacks
    ce = [pair for pair in attacks if on_ce(pair[1])]
    head = [pair for pair in attacks[:others[-1] + 1] if not on_ce(pair[1])]
    tail = [pair for pair in attacks[others[-1] + 1:] if not on_ce(pair[1])]
    return head + ce + tail


def _evaluate(estimator, X, y, *, eps, norm, attacks, clip_min, clip_max, reject_label,
              sanity_checks, model_checks, random_state, bounds_check, y_pred=None,
              escalate=True, surrogate=None, non_differentiable=None, plan=None):
    eps = _check_eps(eps)
    check_escalation(escalate, surrogate)
    if plan is None:  # security_curve resolves once for all its budgets
        plan = resolve_plan(estimator, X, escalate=escalate, non_differentiable=non_differentiable)
    victim = plan.victim
    default_ensemble = attacks is None
    attacks = configure_attacks(attacks, eps=eps, norm=norm, clip_min=clip_min,
                                clip_max=clip_max, random_state=random_state,
                                n_classes=lambda: _n_outputs(victim, X.shape[1]))
    if default_ensemble and reject_label is not None:
        # a reject option defeats non-adaptive attacks: add the two-stage one
        attacks += configure_attacks([AdaptiveRejectionTransformer(norm=resolve_norm(norm))],
                                     eps=eps, norm=norm, clip_min=clip_min, clip_max=clip_max,
                                     random_state=random_state, n_classes=None)
    if surrogate is not None:
        surrogate = resolve_victim(surrogate)
        if not isinstance(surrogate, ResolvedVictim):
            raise TypeError(
                f"surrogate={type(surrogate).__name__} has no torch gradient; give a "
                "differentiable model (a torch module, a skorch net, a pipeline of "
                "differentiable steps).")
    checks = [bounds_check]
    if model_checks:
        checks += run_sanity_checks(victim, X, y, attack=attacks[0][1],
                                    clip_min=clip_min, clip_max=clip_max)[1:]

    if y_pred is None:
        y_pred = predict_labels(victim, X)
    state = _State(victim, X, y, y_pred, reject_label)
    escalations, done = [], set()

    def escalate_with(reasons, *, square):
        for name, attack, target, reason in _escalation_stages(
                plan, attacks, reasons=reasons, surrogate=surrogate, eps=eps, norm=norm,
                clip_min=clip_min, clip_max=clip_max, random_state=random_state,
                n_features=X.shape[1], square=square):
            if name in done or not state.standing.any():
                continue
            done.add(name)
            escalations.append({"attack": name, "reason": reason})
            state.run(name, attack, estimator if target is None else target)

    reasons = []
    if escalate:
        if plan.pipeline:
            reasons.append(f"pipeline steps {plan.parts} cannot be differentiated (every "
                           "gradient attack went through them with straight-through "
                           "gradients)")
        masking = checks if model_checks else checks + _silent_masking_checks(victim, X, y)
        reasons += _masking_reasons(masking)
        if reasons:
            # masking is known before any attack: the white-box escalation runs first,
            # so the ensemble's futile gradient attacks only see its survivors
            escalate_with(reasons, square=False)
        if any(c.passed is False and c.name == "cross-entropy gradients" for c in masking):
            # flat cross-entropy: the scale-invariant (DLR) attacks go first, so the
            # stuck cross-entropy ones only see their survivors
            attacks = _cross_entropy_last(attacks)
    escalated_first = bool(escalations)

    single_fooled = np.zeros(len(X), dtype=bool)
    iterative_fooled = np.zeros(len(X), dtype=bool)
    single_after_iterative = False
    seen_iterative = False
    for name, attack in attacks:
        target = estimator if _is_black_box(attack) else victim
        fooled = state.run(name, attack, target)
        if isinstance(attack, ITERATIVE):
            seen_iterative = True
            iterative_fooled[fooled] = True
        elif isinstance(attack, SINGLE_STEP):
            single_after_iterative |= seen_iterative
            single_fooled[fooled] = True
    after_ensemble = []
    if single_after_iterative:
        after_ensemble.append(check_iterative_stronger(single_fooled, iterative_fooled,
                                                       warn=sanity_checks))
    if not escalated_first:
        after_ensemble += _black_box_checks(attacks, state, warn=sanity_checks)
    for check in after_ensemble if sanity_checks or escalate else []:
        check = replace(check, name=f"{check.name} (eps={eps:g})")
        if sanity_checks:
            checks.append(check)
        if escalate:
            reasons += _masking_reasons([check])
    plain_robust = None if escalated_first else state.robust_accuracy()
    if escalate and (reasons or surrogate is not None):
        escalate_with(reasons, square=True)
    return Bunch(
        clean_accuracy=float(state.correct.mean()) if len(X) else 0.0,
        robust_accuracy=state.robust_accuracy(),
        attacks=list(state.accuracy),
        accuracy=state.accuracy,
        n_attacked=state.n_attacked,
        n_fooled=state.n_fooled,
        seconds_per_attack=state.seconds,
        seconds=float(sum(state.seconds.values())),
        correct=state.correct,
        robust=state.standing,
        broken_by=state.broken_by,
        X_adv=state.X_adv,
        y_pred=y_pred,
        y_pred_adv=state.y_pred_adv,
        eps=eps,
        norm=resolve_norm(norm),
        n_samples=len(X),
        sanity_checks=checks,
        escalations=escalations,
        plain_robust_accuracy=plain_robust,
    )


def _black_box_checks(attacks, state, *, warn):
    """:func:`check_black_box_weaker` for each black-box attack of the ensemble that
    ran after gradient attacks, against the gradient attacks that ran after it."""
    checks = []
    for i, (name, attack) in enumerate(attacks):
        if not (_is_black_box(attack)
                and any(isinstance(a, ITERATIVE) for _, a in attacks[:i])):
            continue
        later = [n for n, a in attacks[i + 1:] if isinstance(a, ITERATIVE)]
        # the first of them attacked what the black-box attack left
        after = None
        if later and state.n_attacked[later[0]]:
            after = (state.n_attacked[later[0]], sum(state.n_fooled[n] for n in later))
        checks.append(check_black_box_weaker(
            state.n_attacked[name], state.n_fooled[name], name=name, warn=warn,
            gradient_after=after))
    return checks


def _silent_masking_checks(victim, X, y):
    """The cheap gradient checks, without warnings (to decide on escalation)."""
    if not isinstance(victim, ResolvedVictim) or len(X) == 0:
        return []
    return [check_gradients(victim, X, warn=False),
            check_flat_scores(victim, X, y, warn=False)]


class _State:
    """Per-sample bookkeeping of the worst case: who still stands, who fooled whom.

    Each attack runs on the samples still standing; its examples are judged on the
    victim's own predictions (``reject_label`` counts as robust).
    """

    def __init__(self, victim, X, y, y_pred, reject_label):
        self.victim, self.X, self.y, self.reject_label = victim, X, y, reject_label
        self.correct = y_pred == y
        self.standing = self.correct.copy()
        self.broken_by = np.full(len(X), None, dtype=object)
        self.broken_by[~self.correct] = "clean"
        self.X_adv = X.copy()
        self.y_pred_adv = y_pred.copy()
        self.accuracy, self.n_attacked, self.n_fooled, self.seconds = {}, {}, {}, {}

    def robust_accuracy(self):
        return float(self.standing.mean()) if len(self.X) else 0.0

    def run(self, name, attack, target):
        """Run ``attack`` against ``target`` on the standing samples; return the
        indices it fooled (on the victim)."""
        index = np.flatnonzero(self.standing)
        self.n_attacked[name] = len(index)
        start = time.perf_counter()
        fooled = np.zeros(0, dtype=int)
        if len(index):
            X_a = attack_estimator(attack, target, self.X[index], self.y[index])
            pred = predict_labels(self.victim, X_a)
            ok = pred == self.y[index]
            if self.reject_label is not None:
                ok |= np.asarray(pred.astype(object) == self.reject_label, dtype=bool)
            self.X_adv[index] = X_a
            self.y_pred_adv[index] = pred
            fooled = index[~ok]
            self.standing[fooled] = False
            self.broken_by[fooled] = name
        self.seconds[name] = time.perf_counter() - start
        self.n_fooled[name] = len(fooled)
        self.accuracy[name] = self.robust_accuracy()
        return fooled


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
    escalations = result.get("escalations", [])
    if escalations:
        plain = result.get("plain_robust_accuracy")
        lines.append("escalated" + ("" if plain is None else
                                    f" (the ensemble alone: {100 * plain:.2f}%)") + ":")
        reasons = {}
        for item in escalations:
            reasons.setdefault(item["reason"], []).append(item["attack"])
        lines += [f"  {', '.join(names)}: {reason}" for reason, names in reasons.items()]
    return "\n".join(lines)
