"""The black-box Square attack: budget, success, reproducibility, tree ensembles."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import minmax_scale

from skrobust.attacks import PGDTransformer, SquareAttackTransformer
from skrobust.attacks._square import p_schedule


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=150, n_features=8, n_informative=5,
                               random_state=0)
    return minmax_scale(X), y


def test_budget_bounds_and_success_on_a_forest(problem):
    X, y = problem
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    attack = SquareAttackTransformer(FrozenEstimator(forest), eps=0.15, n_queries=60,
                                     random_state=0).fit(X, y)
    X_adv = attack.generate(X, y)
    assert X_adv.dtype == X.dtype and X_adv.shape == X.shape
    assert np.abs(X_adv - X).max() <= 0.15 + 1e-12
    assert X_adv.min() >= 0 and X_adv.max() <= 1
    clean, robust = np.mean(forest.predict(X) == y), np.mean(forest.predict(X_adv) == y)
    assert robust < clean - 0.2


def test_square_is_about_as_strong_as_pgd_on_a_linear_model(problem):
    X, y = problem
    logreg = FrozenEstimator(LogisticRegression().fit(X, y))
    eps = 0.08
    square = SquareAttackTransformer(logreg, eps=eps, n_queries=200, random_state=0)
    pgd = PGDTransformer(logreg, eps=eps, step_size=eps / 4, n_iter=20)
    acc_square = np.mean(logreg.predict(square.fit(X, y).generate(X, y)) == y)
    acc_pgd = np.mean(logreg.predict(pgd.fit(X, y).generate(X, y)) == y)
    acc_clean = np.mean(logreg.predict(X) == y)
    assert acc_pgd < acc_clean and acc_square < acc_clean
    assert acc_square <= acc_pgd + 0.05  # the linear worst case is a corner: found by both


def test_rows_are_independent_and_reproducible(problem):
    X, y = problem
    forest = FrozenEstimator(RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y))
    attack = SquareAttackTransformer(forest, eps=0.1, n_queries=30, random_state=3).fit(X, y)
    full = attack.transform(X)
    np.testing.assert_array_equal(full, attack.transform(X))
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(attack.transform(X[order]), full[order])
    np.testing.assert_array_equal(attack.set_params(batch_size=7).transform(X[:40]), full[:40])
    other = attack.set_params(random_state=4).fit(X, y).transform(X)
    assert not np.array_equal(other, full)


def test_constraints_and_targeted(problem):
    X, y = problem
    X = X.copy()
    X[:, 0] = np.round(X[:, 0] * 5)
    logreg = FrozenEstimator(LogisticRegression().fit(X, y))
    attack = SquareAttackTransformer(logreg, eps=0.5, eps_scale="std", immutable=[2],
                                     integer_features=[0], clip_min="data", clip_max="data",
                                     n_queries=40, random_state=0).fit(X, y)
    X_adv = attack.generate(X, y)
    np.testing.assert_array_equal(X_adv[:, 2], X[:, 2])
    np.testing.assert_array_equal(X_adv[:, 0], np.round(X_adv[:, 0]))
    assert np.all(np.abs(X_adv - X) <= 0.5 * X.std(0) + 1e-12)
    assert np.all(X_adv >= X.min(0)) and np.all(X_adv <= X.max(0))
    target = 1 - y
    targeted = attack.set_params(targeted=True, n_queries=100).generate(X, target)
    assert np.mean(logreg.predict(targeted) == target) > np.mean(logreg.predict(X) == target)


def test_torch_module_victim_and_label_encoding(problem):
    X, y = problem
    torch.manual_seed(0)
    module = torch.nn.Linear(8, 2)
    attack = SquareAttackTransformer(module, eps=0.3, n_queries=20, random_state=0)
    X_adv = attack.fit(X, y).transform(X)
    with torch.no_grad():
        before = module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
        after = module(torch.as_tensor(X_adv, dtype=torch.float32)).argmax(1).numpy()
    assert np.mean(before != after) > 0.2
    labels = np.array(["no", "yes"])[y]
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    fitted = SquareAttackTransformer(forest, n_queries=5).fit(X, labels)
    assert fitted.estimator_ is not forest and fitted.generate(X, labels).shape == X.shape
    with pytest.raises(ValueError, match="does not know"):
        fitted.generate(X, np.array(["maybe"] * len(X)))


def test_p_schedule_and_bad_parameters(problem):
    assert p_schedule(0.4, 0, 1000) == 0.4
    assert p_schedule(0.4, 999, 1000) == pytest.approx(0.4 / 512)
    values = [p_schedule(0.4, i, 1000) for i in range(1000)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    X, y = problem
    with pytest.raises(ValueError, match="n_queries"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), n_queries=0).fit(X, y)
    with pytest.raises(ValueError, match="p_init"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), p_init=0.0).fit(X, y)
