"""Sanity checks of a robustness evaluation: they catch the wrong numbers.

Each check returns a :class:`SanityCheck` verdict and, when it fails, warns with a
:class:`RobustnessWarning`. :func:`evaluate_robustness` and :func:`security_curve`
run them by default.
"""

import numbers
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import fisher_exact
from sklearn.base import clone

from ..attacks._base import attack_estimator, outside_bounds
from ..attacks.functional import two_class_scores
from ..models._skorch import is_skorch_net
from ..utils._differentiable import as_torch_model, unfrozen, victim_input
from ..utils._docstrings import fill_doc
from ..utils._torch import eval_mode, to_tensor
from ..utils._validation import check_bound


class RobustnessWarning(UserWarning):
    """A robustness evaluation is probably wrong (too optimistic or broken).

    Raised by the sanity checks of :func:`~skrobust.evaluation.evaluate_robustness`,
    :func:`~skrobust.evaluation.security_curve` and
    :func:`~skrobust.evaluation.run_sanity_checks`. Turn it into an error with
    ``warnings.simplefilter("error", RobustnessWarning)``.
    """


@dataclass(frozen=True)
class SanityCheck:
    """The verdict of one sanity check.

    Attributes
    ----------
    name : str
        Short name of the check.
    passed : bool or None
        True when the check passed, False when it failed, None when it could not run.
    message : str
        What was measured, and what to do on failure.
    """

    name: str
    passed: bool | None
    message: str

    def to_dict(self):
        """The verdict as a plain dict (JSON-ready)."""
        return asdict(self)


def _verdict(name, passed, message, warn, *, depth=0):
    """The verdict, warned about when it failed; ``depth``: helper calls between the
    check and this function (the warning points at the check's caller)."""
    if passed is False and warn:
        warnings.warn(f"{name}: {message}", RobustnessWarning, stacklevel=3 + depth)
    return SanityCheck(name, passed, message)


def _measured(name, failed, detail, advice, warn):
    """The verdict on a measurement: ``"<detail>: <advice>"`` when the check failed,
    ``"<detail>."`` when it passed."""
    message = f"{detail}: {advice}" if failed else f"{detail}."
    return _verdict(name, not failed, message, warn, depth=1)


class ResolvedVictim:
    """A differentiable victim resolved once per evaluation (private).

    Holds the caller's ``estimator`` and its :class:`TorchModel`, so that the sanity
    checks and the attacks of one evaluation share one resolution (a scikit-learn
    pipeline is re-expressed in torch once, not once per check and attack).
    Predictions are the estimator's own (reject options and preprocessing count).
    """

    def __init__(self, estimator, model):
        self.estimator = estimator
        self.model = model

    def __skrobust_torch_model__(self):
        return self.model

    def predict(self, X):
        return predict_labels(self.estimator, X)


def resolve_victim(estimator):
    """The victim resolved once: a :class:`ResolvedVictim`, or ``estimator`` itself
    when it has no torch gradient (a black-box model)."""
    if isinstance(estimator, ResolvedVictim):
        return estimator
    try:
        model = as_torch_model(estimator)
    except TypeError:
        return estimator
    return ResolvedVictim(estimator, model)


def _original(estimator):
    """The caller's estimator behind a :class:`ResolvedVictim`."""
    return estimator.estimator if isinstance(estimator, ResolvedVictim) else estimator


def predict_labels(estimator, X, *, batch_size=256):
    """Predictions of a fitted classifier, or of a torch module (argmax, eval mode).

    Estimators with ``predict`` are asked directly (so reject options and
    preprocessing count); a bare ``torch.nn.Module`` is run in eval mode, as the
    attacks run it, and its column indices are returned.
    """
    model = estimator.model if isinstance(estimator, ResolvedVictim) else None
    estimator = _original(estimator)
    if hasattr(estimator, "predict"):
        return np.asarray(estimator.predict(victim_input(estimator, X)))
    model = as_torch_model(estimator) if model is None else model
    index = model.predict_scores(X, batch_size=batch_size,
                                 transform=lambda logits: two_class_scores(logits).argmax(1))
    return index if model.classes is None else np.asarray(model.classes)[index]


@fill_doc
def check_input_bounds(X, *, clip_min=0.0, clip_max=1.0, tol=1e-6, warn=True):
    """Check that the inputs lie inside the declared domain ``[clip_min, clip_max]``.

    Inputs outside the domain usually mean a preprocessing mismatch (pixels in
    [0, 255] against a [0, 1] box), under which the budget ``eps`` means something
    else than intended.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The inputs to attack.
    clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
        The declared bounds; None disables a bound.
    tol : float, default=1e-6
        Tolerated excess.
    {warn_check}

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.evaluation import check_input_bounds
    >>> check_input_bounds(np.array([[0.0, 255.0]]), warn=False).passed
    False
    """
    X = np.asarray(X, dtype=np.float64)
    lo = check_bound(clip_min, "clip_min", X.shape[1])
    hi = check_bound(clip_max, "clip_max", X.shape[1])
    below, above = outside_bounds(X, lo, hi, tol)
    if below.any() or above.any():
        return _verdict(
            "input bounds", False,
            f"{int(np.sum(below | above))} of {len(X)} samples lie outside the declared bounds "
            f"[{clip_min}, {clip_max}] (X ranges over [{X.min():.4g}, {X.max():.4g}]); "
            "scale X into the bounds or declare the bounds of your preprocessing.", warn)
    return _verdict("input bounds", True,
                    f"all samples lie inside [{clip_min}, {clip_max}].", warn)


@fill_doc
def check_not_constant(estimator, X, y, *, n_samples=256, max_share=0.95, warn=True):
    """Check that the model does not predict (nearly) one class for every input.

    A model stuck at one prediction (adversarial training that never left chance
    level, a collapsed net) looks robust on every sample of that class: no attack
    changes its output, so its robust accuracy is that class's share of the data,
    not a measure of robustness. The check fails when one class takes at least
    ``max_share`` of the predictions and more than its share of ``y`` plus 10
    points (so a sound model of imbalanced data passes).

    Parameters
    ----------
    {victim}
    {X_head}
    {y_head}
    n_samples : int, default=256
        Samples to predict.
    max_share : float, default=0.95
        Share of the predictions one class may take.
    {warn_check}
    """
    X, y = np.asarray(X)[:n_samples], np.asarray(y)[:n_samples]
    name = "not a constant prediction"
    pred = predict_labels(estimator, X)
    if len(pred) == 0:
        return SanityCheck(name, None, "not run: no samples.")
    labels, counts = np.unique(pred, return_counts=True)
    top, share = labels.tolist()[counts.argmax()], counts.max() / len(pred)
    true_share = float(np.mean(y == top))
    if share >= max_share and true_share < share - 0.1:
        return _verdict(
            name, False,
            f"the model predicts {top!r} for {100 * share:.0f} % of {len(pred)} samples "
            f"({100 * true_share:.0f} % of y): a constant model is 'robust' on every sample "
            "of that class and its robust accuracy means nothing; check its training "
            "(e.g. adversarial training stuck at chance level: try a learning-rate "
            "warm-up or a smaller eps).", warn)
    return _verdict(name, True,
                    f"the most frequent prediction takes {100 * share:.0f} % of "
                    f"{len(pred)} samples ({100 * true_share:.0f} % of y).", warn)


@fill_doc
def check_training_mode(estimator, *, warn=True):
    """Check that a torch victim was not handed over in training mode.

    The attacks run the module in eval mode; a module left in training mode is
    deployed with different dropout and batch-norm behaviour from the one attacked.
    skorch nets switch modes themselves and always pass.

    Parameters
    ----------
    {victim}
    {warn_check}

    Examples
    --------
    >>> from torch import nn
    >>> from skrobust.evaluation import check_training_mode
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    >>> check_training_mode(model, warn=False).passed
    False
    >>> check_training_mode(model.eval(), warn=False).passed
    True
    """
    inner = unfrozen(_original(estimator))
    if is_skorch_net(inner):
        return _verdict("training mode", True,
                        "skorch puts the module in eval mode to predict.", warn)
    module = as_torch_model(estimator).module
    training = [name or type(module).__name__ for name, m in module.named_modules()
                if m.training]
    if training:
        return _verdict(
            "training mode", False,
            f"the model is in training mode ({len(training)} submodules, e.g. "
            f"{training[:3]}); the attacks ran it in eval mode, so call model.eval() "
            "before deploying or evaluating it.", warn)
    return _verdict("training mode", True, "the model is in eval mode.", warn)


@fill_doc
def check_deterministic(estimator, X, *, n_samples=64, warn=True):
    """Check that two identical forward passes (and predictions) agree.

    Stochastic outputs (dropout left on in ``forward``, input noise) hide the
    gradient behind randomness: the attack sees one function, the evaluation
    another. Such models need an attack with expectation over transformation.

    Parameters
    ----------
    {victim}
    {X_head}
    n_samples : int, default=64
        Samples to test.
    {warn_check}
    """
    X = np.asarray(X)[:n_samples]
    model = as_torch_model(estimator)
    x = to_tensor(X, model.device)
    with eval_mode(model.module), torch.no_grad():
        first, second = model.module(x), model.module(x)
    scale = float(first.abs().max()) if first.numel() else 0.0
    differ = int(torch.sum(~torch.isclose(first, second, rtol=1e-4, atol=1e-5 * scale + 1e-7)
                           .all(dim=1)))
    label_differ = 0
    if hasattr(_original(estimator), "predict"):
        label_differ = int(np.sum(predict_labels(estimator, X) != predict_labels(estimator, X)))
    if differ or label_differ:
        return _verdict(
            "deterministic outputs", False,
            f"two identical forward passes differ on {differ} of {len(X)} samples "
            f"(predictions on {label_differ}): the model is stochastic (dropout left on, "
            "random noise), so gradient attacks see a moving target; fix the "
            "randomness or attack the expectation (EOT).", warn)
    return _verdict("deterministic outputs", True,
                    f"two forward passes agree on {len(X)} samples.", warn)


def _input_gradient(model, X, objective):
    """Per-row input gradient of ``objective(logits).sum()``, flattened (zeros for
    an input the objective does not depend on)."""
    with eval_mode(model.module), torch.enable_grad():
        x = to_tensor(X, model.device).requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(model.module(x)).sum(), x,
                                      allow_unused=True)
    return (torch.zeros_like(x) if grad is None else grad).flatten(1)


@fill_doc
def check_gradients(estimator, X, *, threshold=0.1, n_samples=256, warn=True):
    """Check that input gradients are neither zero nor NaN for many samples.

    Takes the gradient of the logit margin (top score minus the runner-up), which,
    unlike the cross-entropy's, does not vanish on confident predictions. Zero
    gradients (input rounding, quantisation, saturated non-linearities) or NaN
    gradients make gradient attacks fail while the model is not robust: gradient
    masking.

    Parameters
    ----------
    {victim}
    {X_head}
    {gradient_share}
    {warn_check}
    """
    X = np.asarray(X)[:n_samples]

    def margin(logits):
        if logits.shape[1] == 1:
            return logits[:, 0].abs()
        top2 = logits.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]

    grad = _input_gradient(as_torch_model(estimator), X, margin)
    nonfinite = ~torch.isfinite(grad).all(dim=1)
    zero = (grad == 0).all(dim=1) & ~nonfinite
    share = float((zero | nonfinite).float().mean()) if len(X) else 0.0
    detail = (f"{int(zero.sum())} zero and {int(nonfinite.sum())} NaN/inf input gradients "
              f"out of {len(X)} samples ({100 * share:.1f} %)")
    return _measured(
        "gradients", share > threshold, detail,
        "gradient attacks cannot make progress (gradient masking, e.g. input rounding); "
        "the robust accuracy is an overestimate. Use a differentiable approximation "
        "(BPDA) or a black-box attack.", warn)


@fill_doc
def check_flat_scores(estimator, X, y, *, threshold=0.1, n_samples=256, warn=True):
    """Check that the cross-entropy loss has a usable input gradient.

    Over-confident or clamped scores (logits scaled by 1000, log-probabilities
    clamped at a floor) make the softmax saturate in float32: the cross-entropy
    gradient is exactly zero, so cross-entropy attacks (FGSM, PGD, APGD-CE) cannot
    move while the model is not robust. Scale-invariant losses (DLR) and
    black-box attacks are not fooled. :func:`check_gradients`, which
    differentiates the logit margin, does not see this form of masking.

    Parameters
    ----------
    {victim}
    {X_head}
    {y_head}
    {gradient_share}
    {warn_check}

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skrobust.evaluation import check_flat_scores
    >>> model = torch.nn.Linear(4, 3).eval()
    >>> X = np.random.RandomState(0).rand(20, 4).astype("float32")
    >>> y = model(torch.from_numpy(X)).argmax(1).numpy()
    >>> check_flat_scores(model, X, y, warn=False).passed
    True
    >>> scaled = torch.nn.Sequential(model, torch.nn.Identity())
    >>> _ = scaled[0].weight.data.mul_(1e4)  # saturated softmax
    >>> check_flat_scores(scaled, X, y, warn=False).passed
    False
    """
    X, y = np.asarray(X)[:n_samples], np.asarray(y)[:n_samples]
    name = "cross-entropy gradients"
    model = as_torch_model(estimator)
    if len(X) == 0:
        return SanityCheck(name, None, "not run: no samples.")
    y_index = torch.as_tensor(model.encode(y, n_features=X.shape[1]), device=model.device)
    grad = _input_gradient(model, X, lambda logits: torch.nn.functional.cross_entropy(
        two_class_scores(logits), y_index, reduction="none"))
    flat = ~torch.isfinite(grad).all(dim=1) | (grad == 0).all(dim=1)
    share = float(flat.float().mean())
    detail = (f"{int(flat.sum())} of {len(X)} samples ({100 * share:.1f} %) have a zero "
              "or non-finite cross-entropy input gradient")
    return _measured(
        name, share > threshold, detail,
        "the scores are flat (saturated softmax, clamped or scaled outputs), so "
        "cross-entropy attacks cannot make progress and their robust accuracy is an "
        "overestimate; use scale-invariant (DLR) and black-box attacks, or attack the "
        "logits before the saturating output.", warn)


@fill_doc
def check_eps_zero(estimator, X, y, attack, *, n_samples=100, warn=True):
    """Check that the attack at ``eps=0`` reproduces the clean accuracy.

    A mismatch means the attacked pipeline is not the evaluated one (different
    preprocessing, a stochastic model, an attack that moves points at zero budget).

    Parameters
    ----------
    {victim}
    {X_head}
    {y_true_labels}
    attack : skrobust attack transformer
        Cloned and run with ``eps=0`` and at most 3 iterations (or queries):
        a few steps show whether it moves points at zero budget.
    n_samples : int, default=100
        Samples to test.
    {warn_check}
    """
    X, y = np.asarray(X)[:n_samples], np.asarray(y)[:n_samples]
    zero = clone(attack).set_params(eps=0.0)
    params = zero.get_params(deep=False)
    for budget in ("n_iter", "n_queries"):
        # a few steps show whether the attack moves at zero budget; all of them
        # would cost as much as the attack itself
        if isinstance(params.get(budget), numbers.Integral) and params[budget] > 3:
            zero.set_params(**{budget: 3})
    X_adv = attack_estimator(zero, estimator, X, y)
    moved = float(np.abs(X_adv - X).max()) if len(X) else 0.0
    clean = float(np.mean(predict_labels(estimator, X) == y)) if len(X) else 0.0
    at_zero = float(np.mean(predict_labels(estimator, X_adv) == y)) if len(X) else 0.0
    detail = (f"clean accuracy {100 * clean:.1f} %, accuracy under the attack at eps=0 "
              f"{100 * at_zero:.1f} % on {len(X)} samples (largest move {moved:.2g})")
    return _measured(
        "eps=0 reproduces clean accuracy", moved > 1e-6 or abs(clean - at_zero) > 1e-12,
        detail, "the attacked model is not the evaluated one (preprocessing outside the "
        "module, stochastic predictions) or the attack moves points at zero budget.", warn)


@fill_doc
def check_monotonic_accuracy(eps_values, accuracy, *, tol=0.0, warn=True):
    """Check that accuracy does not rise as the budget grows.

    A larger budget contains every smaller one, so a sound attack's accuracy can
    only fall. A rise signals a failing attack (gradient masking, too few steps).

    Parameters
    ----------
    eps_values : array-like of shape (n_points,)
        Budgets.
    accuracy : array-like of shape (n_points,)
        Accuracy at each budget.
    tol : float, default=0.0
        Tolerated rise (sampling noise of random starts).
    {warn_check}

    Examples
    --------
    >>> from skrobust.evaluation import check_monotonic_accuracy
    >>> check_monotonic_accuracy([0.0, 0.1, 0.2], [0.9, 0.2, 0.6], warn=False).passed
    False
    """
    eps_values = np.asarray(eps_values, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    order = np.argsort(eps_values, kind="stable")
    eps_values, accuracy = eps_values[order], accuracy[order]
    rises = [(eps_values[i], eps_values[i + 1], accuracy[i], accuracy[i + 1])
             for i in range(len(accuracy) - 1) if accuracy[i + 1] > accuracy[i] + tol]
    if rises:
        text = "; ".join(f"{100 * a:.1f} % at eps={e0:g} -> {100 * b:.1f} % at eps={e1:g}"
                         for e0, e1, a, b in rises[:3])
        return _verdict(
            "accuracy falls with eps", False,
            f"accuracy rises as the budget grows ({text}): the attack fails at large "
            "budgets (gradient masking or too few iterations); more steps, restarts "
            "or a different loss are needed.", warn)
    return _verdict("accuracy falls with eps", True,
                    f"accuracy never rises over {len(accuracy)} budgets.", warn)


@fill_doc
def check_black_box_weaker(n_attacked, n_fooled, *, tol=0.1, min_fooled=2,
                           gradient_after=None, significance=0.05, name="Square",
                           warn=True):
    """Check that a black-box attack fools few of the samples gradient attacks left.

    The black-box attack (the Square Attack) runs after gradient attacks on the
    samples they left standing. It only sees scores, so on a model whose gradients
    are informative it fools few of them; when it fools many, the gradients are
    masked or noisy and the gradient attacks' numbers are an overestimate
    (Carlini et al., 2019: "if black-box attacks beat white-box attacks, the
    white-box attacks are not working"). When gradient attacks also ran after it
    (``gradient_after``), the check fails only if the black-box attack fooled a
    significantly larger share of its samples than they did of theirs (one-sided
    Fisher exact test at level ``significance``): a long gradient attack that still
    succeeds where random search stopped shows working gradients, and on a handful
    of samples (4 of 10 against 1 of 6) the difference is chance.

    Parameters
    ----------
    n_attacked : int
        Samples the black-box attack ran on (those the gradient attacks left).
    n_fooled : int
        Samples it fooled.
    tol : float, default=0.1
        Largest tolerated share of the attacked samples it fools.
    min_fooled : int, default=2
        Fewer fooled samples than this never fail the check.
    gradient_after : tuple of int (n_attacked, n_fooled) or None, default=None
        The gradient attacks that ran after it, on what it left standing.
    significance : float, default=0.05
        Level of the test against ``gradient_after``.
    name : str, default="Square"
        The black-box attack's name, for the message.
    {warn_check}

    Examples
    --------
    >>> from skrobust.evaluation import check_black_box_weaker
    >>> check = check_black_box_weaker(40, 30, warn=False)
    >>> check.name, check.passed
    ('black-box attack weaker than gradient attacks', False)
    """
    if not 0 < significance < 1:
        raise ValueError(f"significance={significance!r} must be in (0, 1), e.g. 0.05.")
    n_attacked, n_fooled = int(n_attacked), int(n_fooled)
    share = n_fooled / max(n_attacked, 1)
    detail = (f"{name} fooled {n_fooled} of the {n_attacked} samples the gradient attacks "
              f"before it left standing ({100 * share:.1f} %)")
    failed = n_fooled >= min_fooled and share > tol
    if gradient_after is not None and gradient_after[0] > 0:
        after_share = gradient_after[1] / gradient_after[0]
        detail += (f", the gradient attacks after it {gradient_after[1]} of the "
                   f"{gradient_after[0]} it left ({100 * after_share:.1f} %)")
        table = [[n_fooled, n_attacked - n_fooled],
                 [gradient_after[1], gradient_after[0] - gradient_after[1]]]
        p_value = fisher_exact(table, alternative="greater").pvalue
        detail += f"; one-sided Fisher exact test p = {p_value:.3g}"
        failed = failed and share > after_share and p_value < significance
    return _measured(
        "black-box attack weaker than gradient attacks", failed, detail,
        "the gradients are masked or noisy, so gradient attacks overestimate the "
        "robust accuracy; more black-box search and transfer attacks are needed", warn)


@fill_doc
def check_iterative_stronger(single_step_fooled, iterative_fooled, *, tol=0.01, warn=True):
    """Check that iterative attacks fool every sample that a single step fools.

    An iterative attack with the same budget explores a superset of FGSM's moves; a
    sample fooled by FGSM but not by PGD/APGD is a sign of gradient masking.

    Parameters
    ----------
    single_step_fooled : array-like of bool, shape (n_samples,)
        Samples fooled by the single-step attack(s).
    iterative_fooled : array-like of bool, shape (n_samples,)
        Samples fooled by the iterative attack(s).
    tol : float, default=0.01
        Largest tolerated share of samples fooled only by the single step.
    {warn_check}

    Examples
    --------
    >>> from skrobust.evaluation import check_iterative_stronger
    >>> check = check_iterative_stronger([True, True], [False, True], warn=False)
    >>> check.name, check.passed
    ('iterative attacks beat FGSM', False)
    """
    single = np.asarray(single_step_fooled, dtype=bool)
    iterative = np.asarray(iterative_fooled, dtype=bool)
    only_single = int(np.sum(single & ~iterative))
    share = only_single / max(len(single), 1)
    detail = (f"{only_single} of {len(single)} samples are fooled by the single-step "
              "attack but not by the iterative ones")
    if share > tol:
        return _verdict(
            "iterative attacks beat FGSM", False,
            f"{detail} ({100 * share:.1f} %): the iterative attacks are weaker than "
            "FGSM, a sign of gradient masking or a mis-configured step size.", warn)
    return _verdict("iterative attacks beat FGSM", True, detail + ".", warn)


@fill_doc
def run_sanity_checks(estimator, X, y, *, attack=None, clip_min=0.0, clip_max=1.0,
                      n_samples=256, warn=True):
    """Run the checks that need only the model and the data.

    Input bounds, a non-constant prediction, training mode, deterministic outputs,
    gradients of the logit margin and of the cross-entropy, and (when
    ``attack`` is given) that the attack at ``eps=0`` reproduces clean accuracy.
    The checks over budgets and attacks (:func:`check_monotonic_accuracy`,
    :func:`check_iterative_stronger`) run inside :func:`security_curve` and
    :func:`evaluate_robustness`.

    Parameters
    ----------
    {victim}
    X : array-like of shape (n_samples, n_features)
        Inputs.
    {y_true_labels}
    attack : skrobust attack transformer, default=None
        The attack for the ``eps=0`` check; skipped when None.
    clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
        The declared input domain.
    n_samples : int, default=256
        Samples used by the model checks (the ``eps=0`` check uses at most 100).
    warn : bool, default=True
        Warn with a :class:`RobustnessWarning` for each failed check.

    Returns
    -------
    checks : list of SanityCheck

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skrobust.evaluation import run_sanity_checks
    >>> model = torch.nn.Linear(4, 3).eval()
    >>> X = np.random.RandomState(0).rand(20, 4).astype("float32")
    >>> y = model(torch.from_numpy(X)).argmax(1).numpy()  # labels it gets right
    >>> [c.passed for c in run_sanity_checks(model, X, y)]
    [True, True, True, True, True, True]
    """
    X = np.asarray(X)
    checks = [check_input_bounds(X, clip_min=clip_min, clip_max=clip_max, warn=warn),
              check_not_constant(estimator, X, y, n_samples=n_samples, warn=warn)]
    try:
        as_torch_model(estimator)
    except TypeError:
        reason = "not run: the model has no torch gradient (a black-box model)."
        checks += [SanityCheck(name, None, reason) for name in
                   ("training mode", "deterministic outputs", "gradients",
                    "cross-entropy gradients")]
    else:
        checks += [
            check_training_mode(estimator, warn=warn),
            check_deterministic(estimator, X, n_samples=min(n_samples, 64), warn=warn),
            check_gradients(estimator, X, n_samples=n_samples, warn=warn),
            check_flat_scores(estimator, X, y, n_samples=n_samples, warn=warn),
        ]
    if attack is not None:
        if checks[0].passed:
            # a few samples show a move or a mismatch; stochastic outputs have
            # their own check (on 64 samples)
            checks.append(check_eps_zero(estimator, X, y, attack,
                                         n_samples=min(n_samples, 32), warn=warn))
        else:
            checks.append(SanityCheck("eps=0 reproduces clean accuracy", None,
                                      "not run: the inputs lie outside the bounds."))
    return checks
