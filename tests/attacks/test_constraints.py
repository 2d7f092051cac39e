"""Feature constraints of the attack transformers: budgets, bounds, immutable, integers."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skrobust.attacks import FGSMTransformer, PGDTransformer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=200, n_features=6, n_informative=4,
                               random_state=0)
    X = X * np.array([1.0, 10.0, 0.1, 3.0, 1.0, 2.0])
    X[:, 0] = np.round(X[:, 0] * 2)  # an integer feature
    model = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=300,
                                                           random_state=0)).fit(X, y)
    return X, y, FrozenEstimator(model)


def attacks(victim, **params):
    common = dict(clip_min=None, clip_max=None)
    common.update(params)
    yield FGSMTransformer(victim, **common)
    yield PGDTransformer(victim, step_size=0.1, n_iter=15, **common)
    yield PGDTransformer(victim, step_size=0.1, n_iter=15, random_start=True, random_state=0,
                         **common)


def weighted_norm(delta, weight, norm):
    live = weight > 0
    assert np.all(delta[:, ~live] == 0)
    scaled = delta[:, live] / weight[live]
    return np.abs(scaled).max(1) if norm == "inf" else np.linalg.norm(scaled, axis=1)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_per_feature_budgets_and_std_units(problem, norm):
    X, y, victim = problem
    eps = np.array([0.0, 0.5, 0.2, 1.0, 0.4, 0.3])
    for attack in attacks(victim, eps=eps, eps_scale="std", norm=norm):
        X_adv = attack.fit(X, y).generate(X, y)
        np.testing.assert_allclose(attack.feature_scale_, X.std(0))
        budget = eps * X.std(0)
        delta = X_adv - X
        assert np.all(np.abs(delta) <= budget + 1e-9)
        assert np.all(weighted_norm(delta, budget / eps.max(), norm) <= eps.max() * (1 + 1e-9))
        assert np.abs(delta[:, 3]).max() > 0.5 * budget[3]  # the budget is used
        assert np.mean(victim.predict(X_adv) != y) > np.mean(victim.predict(X) != y)


def test_scalar_eps_without_constraints_takes_the_unchanged_fast_path(problem):
    X, y, victim = problem
    for attack in attacks(victim, eps=0.3):
        plain = attack.fit(X, y).generate(X, y)
        # eps as an array of equal entries is the same constraint through the scaled path
        constrained = attack.set_params(eps=np.full(6, 0.3)).fit(X, y).generate(X, y)
        assert attack._constraints() is not None
        np.testing.assert_allclose(constrained, plain, atol=1e-5)


def test_range_units(problem):
    X, y, victim = problem
    attack = FGSMTransformer(victim, eps=0.1, eps_scale="range", clip_min=None,
                             clip_max=None).fit(X, y)
    np.testing.assert_allclose(attack.feature_scale_, X.max(0) - X.min(0))
    delta = attack.generate(X, y) - X
    np.testing.assert_allclose(np.abs(delta).max(0), 0.1 * attack.feature_scale_, rtol=1e-6)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_immutable_features_never_change(problem, norm):
    X, y, victim = problem
    for immutable in ([1, 3], np.array([False, True, False, True, False, False])):
        for attack in attacks(victim, eps=1.0, eps_scale="std", immutable=immutable,
                              norm=norm):
            X_adv = attack.fit(X, y).generate(X, y)
            np.testing.assert_array_equal(X_adv[:, [1, 3]], X[:, [1, 3]])
            assert np.abs(X_adv[:, [2, 4]] - X[:, [2, 4]]).max() > 0


def test_immutable_features_make_the_attack_weaker(problem):
    X, y, victim = problem
    free = PGDTransformer(victim, eps=0.5, eps_scale="std", step_size=0.1, n_iter=15,
                          clip_min=None, clip_max=None).fit(X, y)
    fixed = free.set_params(immutable=[1, 3, 5]).fit(X, y)
    acc_free = np.mean(victim.predict(free.set_params(immutable=None).generate(X, y)) == y)
    acc_fixed = np.mean(victim.predict(fixed.set_params(immutable=[1, 3, 5]).generate(X, y)) == y)
    assert acc_free < acc_fixed


@pytest.mark.parametrize("norm", ["inf", 2])
def test_integer_features_stay_integral_and_move(problem, norm):
    X, y, victim = problem
    for attack in attacks(victim, eps=1.5, eps_scale="std", integer_features=[0], norm=norm):
        X_adv = attack.fit(X, y).generate(X, y)
        np.testing.assert_array_equal(X_adv[:, 0], np.round(X_adv[:, 0]))
        assert np.abs(X_adv[:, 0] - X[:, 0]).max() >= 1  # small PGD steps still add up
        budget = 1.5 * X.std(0)
        assert np.all(weighted_norm(X_adv - X, budget / 1.5, norm) <= 1.5 * (1 + 1e-9))
    with pytest.raises(ValueError, match="non-integral values in integer_features"):
        attack.generate(X + 0.5, y)


def test_bounds_learned_from_data(problem):
    X, y, victim = problem
    for attack in attacks(victim, eps=2.0, eps_scale="std", clip_min="data",
                          clip_max="data"):
        attack.fit(X, y)
        np.testing.assert_array_equal(attack.clip_min_, X.min(0))
        np.testing.assert_array_equal(attack.clip_max_, X.max(0))
        X_adv = attack.generate(X, y)
        assert np.all(X_adv >= X.min(0)) and np.all(X_adv <= X.max(0))
        # an input outside the learned box is accepted and never pushed further out
        X_out = X[:5] + 100 * X.std(0)
        X_out_adv = attack.transform(X_out)
        assert np.all(X_out_adv <= np.maximum(X.max(0), X_out) + 1e-9)


def test_constraints_on_a_linear_model_give_the_closed_form_with_budgets():
    X, y = make_classification(n_samples=100, n_features=4, random_state=1)
    logreg = LogisticRegression().fit(X, y)
    eps = np.array([0.1, 0.0, 0.3, 0.2])
    X_adv = FGSMTransformer(FrozenEstimator(logreg), eps=eps, clip_min=None,
                            clip_max=None).fit(X, y).generate(X, y)
    expected = X - eps * np.sign(logreg.coef_[0]) * np.where(y == 1, 1.0, -1.0)[:, None]
    np.testing.assert_allclose(X_adv, expected, atol=1e-6)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(eps=np.ones(5)), ValueError, r"eps has shape \(5,\).*\(6,\)"),
        (dict(eps=np.array([0.1, -1, 0, 0, 0, 0])), ValueError, "finite values >= 0"),
        (dict(eps_scale="mad"), ValueError, "eps_scale='mad' is not supported"),
        (dict(immutable=np.ones(5, bool)), ValueError, r"immutable is a boolean mask of "
                                                       r"shape \(5,\).*\(6,\)"),
        (dict(immutable=[7]), ValueError, "immutable has feature indices out of range"),
        (dict(integer_features=[0.5]), ValueError, "integer_features must be a boolean mask"),
        (dict(clip_min="min"), ValueError, "clip_min='min' is not supported"),
    ],
)
def test_bad_constraint_parameters(problem, params, error, match):
    X, y, victim = problem
    with pytest.raises(error, match=match):
        FGSMTransformer(victim, clip_min=None, clip_max=None).set_params(**params).fit(X, y)
