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
from skrobust.utils._differentiable import TorchModel


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
    assert [name for name, _ in default_attacks(10)] == ["APGD-CE", "APGD-T", "FGSM",
                                                         "Square"]
    assert default_attacks(10)[1][1].n_target_classes == 9
    assert [name for name, _ in default_attacks(3, n_queries=0)] == [
        "APGD-CE", "APGD-DLR", "FGSM"]
    # Square is Linf only
    l2 = default_attacks(2, norm=2)
    assert [name for name, _ in l2] == ["APGD-CE", "FGSM"]
    assert all(attack.norm == 2 for _, attack in l2)


def test_default_ensemble_on_a_torch_module(mlp_net, data):
    X, y = data
    result = evaluate_robustness(mlp_net.module_, X[:30], y[:30], eps=0.1, random_state=0)
    assert result.attacks == ["APGD-CE", "APGD-T", "FGSM", "Square"]
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

    def _skrobust_torch_model(self):
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
