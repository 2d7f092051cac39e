"""The final projection holds the budget exactly in X's dtype, with feature constraints
too (attacks/_constraints.py), batch by batch."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.preprocessing import minmax_scale

from skrobust.attacks import FGSMTransformer, PGDTransformer


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=240, n_features=12, n_informative=6, n_classes=3,
                               random_state=0)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(),
                                 torch.nn.Linear(32, 3))
    return minmax_scale(X), y, module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("params", [
    dict(immutable=[0, 3]),
    dict(eps_scale="std", clip_min="data", clip_max="data"),
    dict(eps=np.linspace(0.05, 0.3, 12)),
])
@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_constrained_linf_budget_is_exact_in_X_dtype(problem, kind, params, dtype):
    X, y, module = problem
    X = X.astype(dtype)
    params = {"eps": 0.1, **params}
    if kind == "pgd":
        attack = PGDTransformer(module, step_size=0.03, n_iter=8, batch_size=50, **params)
    else:
        attack = FGSMTransformer(module, batch_size=50, **params)
    attack.fit(X, y)
    X_adv = attack.generate(X, y)
    budget = attack._constraints().budget.astype(dtype)
    assert X_adv.dtype == X.dtype
    # no tolerance: the comparison is made in X's dtype, as the docstrings promise
    assert np.all(np.abs(X_adv - X) <= budget)
    assert np.all(np.abs(X_adv - X)[:, budget == 0] == 0)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_float64_entries_the_attack_did_not_move_come_back_bit_for_bit(problem, norm):
    from skrobust.attacks import APGDTransformer
    from skrobust.attacks.functional import project_exact

    X, y, module = problem
    x0 = torch.as_tensor(X[:20])  # float64, not representable in float32
    out = project_exact(x0.to(torch.float32), x0, 0.1, norm, 0.0, 1.0)
    assert torch.equal(out, x0)
    # samples misclassified already are not attacked: their rows are X itself
    attack = APGDTransformer(module, eps=0.05, norm=norm, n_iter=5, random_state=0).fit(X, y)
    X_adv = attack.generate(X, y)
    with torch.no_grad():
        wrong = module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy() != y
    assert wrong.any() and np.array_equal(X_adv[wrong], X[wrong])
    assert np.array_equal(FGSMTransformer(module, eps=0.0).fit(X, y).generate(X, y), X)
