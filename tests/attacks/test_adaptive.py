import functools

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import minmax_scale
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skrobust.attacks import AdaptiveRejectionTransformer, PGDExpTransformer
from skrobust.attacks._adaptive import adaptive_reject_attack
from skrobust.defenses import DNRClassifier
from skrobust.evaluation import _robustness, evaluate_robustness, security_curve
from skrobust.metrics import robust_accuracy_with_rejection_score
from skrobust.models._skorch import default_net, fit_net


@pytest.fixture(scope="module")
def rejection_model():
    """A small DNR (MLP, 3 classes, 10 % clean rejection) and evaluation data."""
    X, y = make_classification(n_samples=1400, n_features=8, n_informative=5,
                               n_redundant=1, n_classes=3, class_sep=1.5, random_state=0)
    X = minmax_scale(X).astype(np.float32)
    net = fit_net(default_net(module__n_features=8, module__n_classes=3,
                              module__hidden_units=(32, 16), max_epochs=30),
                  X[1000:1200], y[1000:1200], seed=0)
    dnr = DNRClassifier(FrozenEstimator(net), cv=3, reject_rate=0.1, random_state=0)
    return dnr.fit(X[:1000], y[:1000]), X[1200:1300], y[1200:1300]


def _robust(dnr, X_adv, y):
    return robust_accuracy_with_rejection_score(y, dnr.predict(X_adv), reject_label=-1)


def test_beats_the_reject_aware_margin_from_the_clean_input(rejection_model):
    dnr, X, y = rejection_model
    eps = 0.2
    pgd_exp = PGDExpTransformer(FrozenEstimator(dnr), eps=eps, early_stop=True)
    adaptive = AdaptiveRejectionTransformer(FrozenEstimator(dnr), eps=eps, norm=2, n_iter=50,
                                            random_state=0)
    X_exp = pgd_exp.fit(X, y).generate(X, y)
    X_ada = adaptive.fit(X, y).generate(X, y)
    assert np.linalg.norm(X_ada - X, axis=1).max() <= eps + 1e-6
    assert X_ada.min() >= 0 and X_ada.max() <= 1
    # PGDExp alone falls into the rejection region and stays; the two stages do not
    assert _robust(dnr, X_ada, y) < _robust(dnr, X_exp, y) - 0.15


def test_linf_and_zero_budget(rejection_model):
    dnr, X, y = rejection_model
    attack = AdaptiveRejectionTransformer(FrozenEstimator(dnr), eps=0.1, n_iter=10,
                                          n_target_classes=1, random_state=0)
    X_adv = attack.fit(X, y).generate(X, y)
    assert np.abs(X_adv - X).max() <= 0.1 + 1e-6
    assert _robust(dnr, X_adv, y) < _robust(dnr, X, y)
    X_same = clone(attack).set_params(eps=0.0).fit(X, y).generate(X, y)
    np.testing.assert_array_equal(X_same, X)


def test_plain_network_without_reject_option():
    # no net / layer_outputs / threshold: stage 1 and 2 attack the logits themselves
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.rand(30, 6)
    with torch.no_grad():
        y = module(x).argmax(1)
    x_adv = adaptive_reject_attack(module, x, y, eps=0.5, n_iter=20, clip_min=0.0,
                                   clip_max=1.0, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.5 + 1e-6
    with torch.no_grad():
        assert (module(x_adv).argmax(1) != y).float().mean() > 0.5


def test_same_seed_same_output_and_bad_parameters(rejection_model):
    dnr, X, y = rejection_model
    attack = AdaptiveRejectionTransformer(FrozenEstimator(dnr), eps=0.1, n_iter=5,
                                          n_target_classes=1, random_state=3)
    first = attack.fit(X[:20], y[:20]).generate(X[:20], y[:20])
    np.testing.assert_array_equal(first, clone(attack).fit(X[:20], y[:20]).generate(
        X[:20], y[:20]))
    for params, match in [({"n_iter": 0}, "n_iter"), ({"n_target_classes": 0},
                                                      "n_target_classes"),
                          ({"feature_mimicry": "yes"}, "feature_mimicry"),
                          ({"random_start": 1}, "random_start")]:
        with pytest.raises(ValueError, match=match):
            clone(attack).set_params(**params).fit(X, y)


@pytest.mark.parametrize("params", [
    {"n_iter": 2.5}, {"n_iter": 0}, {"n_target_classes": np.nan}, {"n_target_classes": 1.0},
    {"feature_mimicry": 1}, {"random_start": "yes"}, {"eps": -0.1}, {"batch_size": 0},
    {"random_state": "seed"}])
def test_parameters_are_checked_by_their_constraints(params):
    # one rule per parameter, read by scikit-learn's parameter validation at fit:
    # InvalidParameterError names the parameter and what it accepts (a float
    # n_iter was a TypeError of check_scalar before)
    attack = AdaptiveRejectionTransformer(**params)
    assert set(attack._parameter_constraints) == set(attack.get_params(deep=False))
    X = np.random.default_rng(0).uniform(size=(12, 4))
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of "
                                                    "AdaptiveRejectionTransformer must be"):
        attack.fit(X, np.arange(12) % 3)


def test_in_the_default_evaluation_with_reject_label(rejection_model, monkeypatch):
    # which attacks run is under test, not their budget: a test-sized ensemble
    monkeypatch.setattr(_robustness, "default_attacks",
                        functools.partial(_robustness.default_attacks, n_iter=5,
                                          n_queries=50))
    monkeypatch.setattr(_robustness, "AdaptiveRejectionTransformer",
                        functools.partial(AdaptiveRejectionTransformer, n_iter=5))
    monkeypatch.setattr(_robustness, "ESCALATED_SQUARE_QUERIES", 50)
    dnr, X, y = rejection_model
    X, y = X[:12], y[:12]
    result = evaluate_robustness(dnr, X, y, eps=0.1, reject_label=-1, sanity_checks=False,
                                 random_state=0)
    # last of the ensemble; an escalation, when a check asks for one, comes after it
    assert [a for a in result.attacks if "escalated" not in a][-1] == "AdaptiveRejection"
    plain = evaluate_robustness(dnr, X, y, eps=0.1, sanity_checks=False, random_state=0)
    assert "AdaptiveRejection" not in plain.attacks
    curve = security_curve(dnr, X, y, [0.0, 0.1], reject_label=-1, sanity_checks=False,
                           random_state=0)
    assert [a for a in curve.attacks if "escalated" not in a][-1] == "AdaptiveRejection"
    # an attack given explicitly is used alone
    only = security_curve(dnr, X, y, [0.0, 0.2], norm=2, reject_label=-1,
                          attack=PGDExpTransformer(early_stop=True), sanity_checks=False)
    assert only.attacks == ["PGDExp"]
