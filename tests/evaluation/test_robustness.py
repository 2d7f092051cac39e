import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.frozen import FrozenEstimator

from skrobust.attacks import APGDTransformer, FGSMTransformer, PGDTransformer
from skrobust.evaluation import (
    RobustnessWarning,
    default_attacks,
    evaluate_robustness,
    format_robustness_table,
    security_curve,
)
from skrobust.attacks._base import attack_estimator
from skrobust.evaluation import _robustness
from skrobust.utils._differentiable import TorchModel

from ._robust_models import log_clamp_model, quantised_model


@pytest.fixture(autouse=True)
def _short_escalation(monkeypatch):
    """The escalated Square Attack with a test-sized budget."""
    monkeypatch.setattr(_robustness, "ESCALATED_SQUARE_QUERIES", 100)


@pytest.fixture(scope="module")
def data(mnist_small):
    _, _, X, y = mnist_small
    return X[:80], y[:80]


def _deterministic_attacks():
    return [("APGD-CE", APGDTransformer(n_iter=20, random_start=False)),
            ("PGD", PGDTransformer(n_iter=10, step_size=0.01)),
            ("FGSM", FGSMTransformer())]


def test_ensemble_is_never_weaker_than_its_strongest_member(mlp_net, data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)  # a sound model: no warning
        ensemble = evaluate_robustness(mlp_net, X, y, eps=0.04,
                                       attacks=_deterministic_attacks())
    alone = [evaluate_robustness(mlp_net, X, y, eps=0.04, attacks=[attack],
                                 sanity_checks=False).robust_accuracy
             for attack in _deterministic_attacks()]
    assert ensemble.robust_accuracy <= min(alone)
    assert ensemble.robust_accuracy < ensemble.clean_accuracy
    # cumulative accuracy only falls, and each attack sees only the survivors
    accuracies = [ensemble.accuracy[name] for name in ensemble.attacks]
    assert accuracies == sorted(accuracies, reverse=True)
    assert ensemble.n_attacked["APGD-CE"] == ensemble.correct.sum()
    for before, after in zip(ensemble.attacks, ensemble.attacks[1:]):
        assert (ensemble.n_attacked[after]
                == ensemble.n_attacked[before] - ensemble.n_fooled[before])


def test_per_sample_flags_and_adversarial_examples_agree(mlp_net, data):
    X, y = data
    result = evaluate_robustness(mlp_net, X, y, eps=0.05, attacks=_deterministic_attacks(),
                                 sanity_checks=False)
    assert result.robust.mean() == result.robust_accuracy
    assert np.array_equal(result.robust, np.equal(result.broken_by, None))
    assert set(result.broken_by[~result.correct]) <= {"clean"}
    fooled = ~result.robust & result.correct
    assert np.all(mlp_net.predict(result.X_adv[fooled]) != y[fooled])
    assert np.all(mlp_net.predict(result.X_adv[result.robust]) == y[result.robust])
    assert np.abs(result.X_adv - X).max() <= 0.05 + 1e-7
    assert result.seconds > 0 and set(result.seconds_per_attack) == set(result.attacks)
    table = format_robustness_table(result)
    assert "worst case" in table and "APGD-CE" in table


def test_default_ensemble_follows_the_number_of_classes():
    attacks = default_attacks(10)
    assert [name for name, _ in attacks] == ["APGD-CE", "APGD-T-10", "FAB-T-10", "Square",
                                             "APGD-T", "FGSM"]
    assert [attacks[i][1].n_iter for i in (1, 2, 4)] == [10, 10, 100]
    assert all(attacks[i][1].n_target_classes == 9 for i in (1, 2, 4))
    assert default_attacks(5)[2][1].n_target_classes == 4
    # the short APGD-T run only screens for a longer one
    assert [name for name, _ in default_attacks(10, n_iter=10, n_queries=0)] == [
        "APGD-CE", "FAB-T-10", "APGD-T", "FGSM"]
    assert [name for name, _ in default_attacks(3, n_queries=0)] == [
        "APGD-CE", "APGD-DLR", "FGSM"]
    # Square is Linf only
    l2 = default_attacks(2, norm=2)
    assert [name for name, _ in l2] == ["APGD-CE", "FGSM"]
    assert all(attack.norm == 2 for _, attack in l2)


def test_default_ensemble_on_a_torch_module(mlp_net, data):
    X, y = data
    result = evaluate_robustness(mlp_net.module_, X[:30], y[:30], eps=0.1, random_state=0)
    assert result.attacks == ["APGD-CE", "APGD-T-10", "FAB-T-10", "Square", "APGD-T",
                              "FGSM"]
    assert result.robust_accuracy <= result.accuracy["APGD-CE"] < result.clean_accuracy


def test_eps_and_bounds_are_set_on_every_attack(mlp_net, data):
    X, y = data
    # the attacks' own eps (0.3) is replaced by the evaluation's
    result = evaluate_robustness(mlp_net, X, y, eps=0.02,
                                 attacks=[FGSMTransformer(eps=0.3, clip_min=-5.0)],
                                 sanity_checks=False)
    assert np.abs(result.X_adv - X).max() <= 0.02 + 1e-7
    assert result.X_adv.min() >= 0.0


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps=-0.1), ValueError, "eps=-0.1"),
    (dict(eps=float("nan")), ValueError, "finite"),
    (dict(eps=0.1, attacks=[]), ValueError, "attacks is empty"),
    (dict(eps=0.1, attacks=[PGDTransformer(norm=2)]), ValueError, "norm=2"),
    (dict(eps=0.1, norm=2, attacks=[FGSMTransformer()]), ValueError, "norm='inf'"),
    (dict(eps=0.1, attacks=["fgsm"]), TypeError, "attack transformers"),
    (dict(eps=0.1, norm="l1"), ValueError, "norm='l1'"),
])
def test_bad_input_gets_clear_errors(mlp_net, data, kwargs, error, match):
    X, y = data
    with pytest.raises(error, match=match):
        evaluate_robustness(mlp_net, X, y, **kwargs)


def test_curve_rejects_bad_budgets(mlp_net, data):
    X, y = data
    with pytest.raises(ValueError, match="empty"):
        security_curve(mlp_net, X, y, [])
    with pytest.raises(ValueError, match=">= 0"):
        security_curve(mlp_net, X, y, [0.1, -0.2])


class _RejectUnsure(ClassifierMixin, BaseEstimator):
    """Predicts -1 when the top softmax score is below 0.9; attacked through its net."""

    def __init__(self, net=None):
        self.net = net

    def __skrobust_torch_model__(self):
        return TorchModel(self.net.module_, torch.device("cpu"), self.net.classes_)

    def predict(self, X):
        proba = self.net.predict_proba(np.asarray(X, dtype=np.float32))
        return np.where(proba.max(1) >= 0.9, self.net.classes_[proba.argmax(1)], -1)


def test_rejected_adversarial_examples_count_as_robust(mlp_net, data):
    X, y = data
    clf = _RejectUnsure(mlp_net)
    clf.classes_ = mlp_net.classes_
    attacks = [FGSMTransformer()]
    plain = evaluate_robustness(clf, X, y, eps=0.05, attacks=attacks, sanity_checks=False)
    aware = evaluate_robustness(clf, X, y, eps=0.05, attacks=attacks, sanity_checks=False,
                                reject_label=-1)
    assert aware.clean_accuracy == plain.clean_accuracy  # clean rejections are errors
    assert aware.robust_accuracy > plain.robust_accuracy
    rejected = aware.robust & (aware.y_pred_adv == -1)
    assert rejected.sum() == round((aware.robust_accuracy - plain.robust_accuracy) * len(y))


def test_curve_is_clean_accuracy_at_zero_and_falls(mlp_net, data):
    X, y = data
    curve = security_curve(FrozenEstimator(mlp_net), X, y, [0.1, 0.0, 0.05],
                           attack=FGSMTransformer())
    np.testing.assert_array_equal(curve.eps, [0.0, 0.05, 0.1])
    assert curve.accuracy[0] == curve.clean_accuracy
    assert curve.accuracy[0] > curve.accuracy[1] >= curve.accuracy[2]
    assert len(curve.results) == 2 and curve.attacks == ["FGSM"]


def test_black_box_evaluation_of_a_model_without_gradients():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import minmax_scale

    from skrobust.attacks import SquareAttackTransformer

    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    X = minmax_scale(X)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X[:80], y[:80])
    result = evaluate_robustness(forest, X[80:], y[80:], eps=0.1, random_state=0,
                                 attacks=[SquareAttackTransformer(n_queries=50)])
    assert result.robust_accuracy < result.clean_accuracy
    verdicts = {c.name: c.passed for c in result.sanity_checks}
    assert verdicts["gradients"] is None and verdicts["eps=0 reproduces clean accuracy"]


def _small_attacks():
    return [("APGD-CE", APGDTransformer(n_iter=20)), ("FGSM", FGSMTransformer())]


def _plain_loop(estimator, X, y, attacks):
    """The unoptimised protocol, written out: every attack against the caller's
    estimator (resolved by each attack itself) on the samples still standing."""
    standing = np.asarray(estimator.predict(X) if hasattr(estimator, "predict") else
                          estimator(torch.as_tensor(X)).argmax(1).numpy()) == y
    X_adv = X.copy()
    for _, attack in attacks:
        index = np.flatnonzero(standing)
        X_a = attack_estimator(attack, estimator, X[index], y[index])
        X_adv[index] = X_a
        with torch.no_grad():
            pred = (estimator.predict(X_a) if hasattr(estimator, "predict")
                    else estimator(torch.as_tensor(X_a)).argmax(1).numpy())
        standing[index[pred != y[index]]] = False
    return standing, X_adv


@pytest.mark.parametrize("masked", [False, True])
def test_one_resolution_gives_the_unoptimised_result(mlp_net, data, masked):
    X, y = data[0][:40], data[1][:40]
    victim = quantised_model(mlp_net.module_) if masked else mlp_net
    attacks = _robustness.configure_attacks(
        _small_attacks(), eps=0.1, norm="inf", clip_min=0.0, clip_max=1.0, random_state=0,
        n_classes=None)
    standing, X_adv = _plain_loop(victim, X, y, attacks)
    result = evaluate_robustness(victim, X, y, eps=0.1, attacks=_small_attacks(),
                                 sanity_checks=False, escalate=False, random_state=0)
    assert result.escalations == [] and result.attacks == ["APGD-CE", "FGSM"]
    np.testing.assert_array_equal(result.robust, standing)
    np.testing.assert_array_equal(result.X_adv, X_adv)
    assert result.plain_robust_accuracy == result.robust_accuracy == standing.mean()


class _CountingVictim(ClassifierMixin, BaseEstimator):
    """A victim that counts how often it is resolved into a torch model."""

    def __init__(self, net=None):
        self.net = net

    def __skrobust_torch_model__(self):
        self.n_resolved_ = getattr(self, "n_resolved_", 0) + 1
        return TorchModel(self.net.module_, torch.device("cpu"))

    def predict(self, X):
        return self.net.predict(np.asarray(X, dtype=np.float32))


def test_the_victim_is_resolved_once_per_evaluation(mlp_net, data):
    X, y = data
    victim = _CountingVictim(mlp_net)
    result = evaluate_robustness(victim, X[:30], y[:30], eps=0.05, random_state=0,
                                 attacks=default_attacks(10, n_iter=5, n_queries=0))
    assert result.attacks == ["APGD-CE", "FAB-T-5", "APGD-T", "FGSM"]
    assert victim.n_resolved_ == 1
    # and once per security curve, whatever the number of budgets
    curve_victim = _CountingVictim(mlp_net)
    curve = security_curve(curve_victim, X[:30], y[:30], [0, 0.02, 0.05], random_state=0,
                           attack=default_attacks(10, n_iter=5, n_queries=0))
    assert len(curve.results) == 2 and curve_victim.n_resolved_ == 1


def _transfer_bound(victim, plain_result, X, y):
    """Robust accuracy of ``victim`` under the plain model's adversarial examples."""
    with torch.no_grad():
        clean = victim(torch.as_tensor(X)).argmax(1).numpy() == y
        adv = victim(torch.as_tensor(plain_result.X_adv)).argmax(1).numpy() == y
    return float(np.mean(clean & adv))


@pytest.mark.parametrize("make", [quantised_model, log_clamp_model])
def test_escalation_reaches_the_transfer_bound(mlp_net, data, make):
    X, y = data[0][:60], data[1][:60]
    inner = mlp_net.module_.eval()
    masked = make(inner)
    kwargs = dict(eps=0.1, attacks=_small_attacks(), random_state=0)
    plain_inner = evaluate_robustness(inner, X, y, escalate=False, sanity_checks=False,
                                      **kwargs)
    bound = _transfer_bound(masked, plain_inner, X, y)
    with pytest.warns(RobustnessWarning, match="gradients"):
        plain = evaluate_robustness(masked, X, y, escalate=False, **kwargs)
    with pytest.warns(RobustnessWarning, match="gradients"):
        escalated = evaluate_robustness(masked, X, y, **kwargs)
    # the plain protocol is fooled by the masking; the escalation is not
    assert plain.escalations == [] and plain.robust_accuracy > bound + 0.5
    assert escalated.robust_accuracy <= bound + 1.0 / len(X)
    # the gradient checks saw the masking before any attack: the white-box
    # escalation ran first, the ensemble on its survivors, then the Square Attack
    assert escalated.plain_robust_accuracy is None
    escalated_names = [e["attack"] for e in escalated.escalations]
    white = [n for n in escalated_names if not n.startswith("Square")]
    assert escalated.attacks[:len(white) + 2] == white + ["APGD-CE", "FGSM"]
    assert escalated.attacks[len(white) + 2:] == escalated_names[len(white):]
    assert any("BPDA" in n for n in escalated_names)
    assert any("transfer without" in n for n in escalated_names)
    assert all("gradients check failed" in e["reason"] for e in escalated.escalations)
    # the worst case is judged on the masked model itself, inside the budget
    fooled = escalated.correct & ~escalated.robust
    with torch.no_grad():
        pred = masked(torch.as_tensor(escalated.X_adv)).argmax(1).numpy()
    assert np.all(pred[fooled] != y[fooled])
    assert np.all(pred[escalated.robust] == y[escalated.robust])
    assert np.abs(escalated.X_adv - X).max() <= 0.1 + 1e-6
    table = format_robustness_table(escalated)
    assert "\nescalated:\n  APGD-CE (BPDA), FGSM (BPDA): gradients" in table


def test_a_surrogate_is_transferred_from(mlp_net, data):
    X, y = data[0][:60], data[1][:60]
    inner = mlp_net.module_.eval()
    masked = log_clamp_model(inner)
    kwargs = dict(eps=0.1, attacks=_small_attacks(), random_state=0, sanity_checks=False)
    plain_inner = evaluate_robustness(inner, X, y, escalate=False, **kwargs)
    bound = _transfer_bound(masked, plain_inner, X, y)
    # nothing declared: the surrogate and the Square Attack are what is left
    result = evaluate_robustness(masked, X, y, non_differentiable=[], surrogate=mlp_net,
                                 **kwargs)
    names = [e["attack"] for e in result.escalations]
    assert names[:2] == ["APGD-CE (transfer from surrogate)", "FGSM (transfer from surrogate)"]
    assert not any("BPDA" in n for n in names)
    assert result.robust_accuracy <= bound + 1.0 / len(X)
    with pytest.raises(ValueError, match="escalate=True"):
        evaluate_robustness(masked, X, y, eps=0.1, surrogate=mlp_net, escalate=False)
    with pytest.raises(ValueError, match="not submodules"):
        evaluate_robustness(masked, X, y, eps=0.1, non_differentiable=["nope"])


def test_the_security_curve_escalates_at_every_budget(mlp_net, data):
    import matplotlib

    matplotlib.use("Agg")
    from skrobust.evaluation import SecurityCurveDisplay, security_curve

    X, y = data[0][:40], data[1][:40]
    inner = mlp_net.module_.eval()
    masked = quantised_model(inner)
    kwargs = dict(attack=_small_attacks(), random_state=0, sanity_checks=False)
    eps_values = [0, 0.05, 0.1]
    plain = security_curve(masked, X, y, eps_values, escalate=False, **kwargs)
    escalated = security_curve(masked, X, y, eps_values, **kwargs)
    assert all(r.escalations == [] for r in plain.results)
    assert all(r.escalations for r in escalated.results)
    # each point is a worst case over more attacks: never above the plain curve, and
    # at the largest budget down to what the plain model's own examples leave
    assert np.all(escalated.accuracy <= plain.accuracy)
    plain_inner = evaluate_robustness(inner, X, y, eps=0.1, attacks=_small_attacks(),
                                      escalate=False, random_state=0, sanity_checks=False)
    bound = _transfer_bound(masked, plain_inner, X, y)
    assert plain.accuracy[-1] > bound + 0.3
    assert escalated.accuracy[-1] <= bound + 1.0 / len(X)
    display = SecurityCurveDisplay.from_estimator(masked, X, y, [0, 0.1], escalate=False,
                                                  **kwargs)
    assert display.curve_.results[0].escalations == []
    with pytest.raises(ValueError, match="escalate=True"):
        security_curve(masked, X, y, [0], surrogate=inner, escalate=False)


def test_a_sound_model_is_not_escalated(mlp_net, data):
    X, y = data
    result = evaluate_robustness(mlp_net, X[:40], y[:40], eps=0.05, attacks=_small_attacks(),
                                 random_state=0)
    assert result.escalations == []
    assert result.plain_robust_accuracy == result.robust_accuracy


def test_a_pipeline_with_a_rounding_step_is_attacked_straight_through(mlp_net, data):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = data[0][:60], data[1][:60]
    # float32 out: the skorch net does not convert dtypes
    rounding = FunctionTransformer(lambda Z: (np.round(Z * 15) / 15).astype(np.float32)).fit(X)
    pipe = Pipeline([("round", rounding), ("net", FrozenEstimator(mlp_net))])
    attacks = _small_attacks()
    with pytest.raises(TypeError, match="round"):  # the plain protocol cannot run
        evaluate_robustness(pipe, X, y, eps=0.1, attacks=attacks, escalate=False)
    with warnings.catch_warnings():
        # the straight-through model is built in eval mode: no false training-mode alarm
        warnings.filterwarnings("error", message="training mode", category=RobustnessWarning)
        result = evaluate_robustness(pipe, X, y, eps=0.1, attacks=attacks, random_state=0)
    assert "['round'] cannot be differentiated" in result.escalations[0]["reason"]
    assert all(c.passed for c in result.sanity_checks if c.name == "training mode")
    assert result.robust_accuracy < 0.5 * result.clean_accuracy
    fooled = result.correct & ~result.robust
    assert np.all(pipe.predict(result.X_adv[fooled]) != y[fooled])


@pytest.mark.parametrize("kwargs, match", [
    (dict(clip_min=1.0, clip_max=0.0), "clip_min > clip_max"),
    (dict(clip_min=np.zeros(784), clip_max=np.r_[np.ones(783), -1.0]), "clip_min > clip_max"),
])
def test_inverted_bounds_are_refused(mlp_net, data, kwargs, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        evaluate_robustness(mlp_net, X, y, eps=0.1, **kwargs)
    with pytest.raises(ValueError, match=match):
        security_curve(mlp_net, X, y, [0, 0.1], **kwargs)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_inputs_are_refused(mlp_net, data, value):
    X, y = data
    X = X.copy()
    X[3, 5] = value
    with pytest.raises(ValueError, match="NaN or infinite values in 1 of 80 rows.*row 3"):
        evaluate_robustness(mlp_net, X, y, eps=0.1)
    with pytest.raises(ValueError, match="NaN or infinite values"):
        security_curve(mlp_net, X, y, [0, 0.1])


def test_the_report_says_what_was_escalated(mlp_net, data, tmp_path):
    from skrobust.evaluation import write_report

    X, y = data[0][:40], data[1][:40]
    masked = quantised_model(mlp_net.module_.eval())
    with pytest.warns(RobustnessWarning):
        report = write_report(masked, X, y, tmp_path, eps=0.1, eps_values=[0, 0.1],
                              attacks=_small_attacks(), image_shape=None)
    assert report.data["robust_accuracy"] < report.data["clean_accuracy"] / 2
    names = [e["attack"] for e in report.data["escalations"]]
    assert "APGD-CE (BPDA)" in names
    assert set(names) <= {a["name"] for a in report.data["attacks"]}
    assert "Escalated: APGD-CE (BPDA)" in report.html.read_text()


def test_flat_scores_put_the_dlr_attacks_first(mlp_net, data):
    class Times1000(torch.nn.Module):
        def forward(self, z):
            return 1000 * z

    X, y = data[0][:40], data[1][:40]
    scaled = torch.nn.Sequential(mlp_net.module_, Times1000()).eval()
    attacks = [("APGD-CE", APGDTransformer(n_iter=10)),
               ("APGD-T", APGDTransformer(loss="dlr", n_iter=10, n_target_classes=3)),
               ("FGSM", FGSMTransformer())]
    kwargs = dict(eps=0.1, attacks=attacks, random_state=0, sanity_checks=False)
    plain = evaluate_robustness(scaled, X, y, escalate=False, **kwargs)
    result = evaluate_robustness(scaled, X, y, **kwargs)
    assert plain.attacks == ["APGD-CE", "APGD-T", "FGSM"]
    assert plain.n_fooled["APGD-CE"] == 0  # stuck on the saturated softmax
    assert result.attacks[:3] == ["APGD-T", "APGD-CE", "FGSM"]
    assert result.n_attacked["APGD-CE"] == result.n_attacked["APGD-T"] - result.n_fooled["APGD-T"]
    assert result.robust_accuracy <= plain.robust_accuracy


@pytest.mark.parametrize("norm, square", [("inf", True), (2, False)])
def test_escalated_square_only_where_it_can_run(norm, square):
    """Masking on tabular rows: the L2 Square Attack needs images, so an L2 evaluation
    escalates without it (instead of failing); a Linf one escalates with it."""
    rng = np.random.RandomState(0)
    X = rng.rand(30, 6).astype(np.float32)
    torch.manual_seed(0)
    inner = torch.nn.Linear(6, 3)
    with torch.no_grad():
        y = inner(torch.as_tensor(X)).argmax(1).numpy()
    masked = quantised_model(inner)
    with pytest.warns(RobustnessWarning, match="gradients"):
        result = evaluate_robustness(masked, X, y, eps=0.01, norm=norm,
                                     attacks=[("FGSM", FGSMTransformer(norm=norm))],
                                     random_state=0)
    names = [e["attack"] for e in result.escalations]
    assert any("BPDA" in n for n in names)
    assert any(n.startswith("Square") for n in names) is square
