import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from skrobust.models import MLP
from skrobust.models._victim import fit_victim, model_name, needs_fit, victim_torch_model


def _data():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 4).astype(np.float32)
    y = np.where(X[:, 0] > 0.5, 7, 3)  # labels that are not column indices
    classes, y_index = np.unique(y, return_inverse=True)
    return X, y, classes, y_index


def test_frozen_and_torch_victims_are_used_as_is():
    X, y, classes, y_index = _data()
    module = MLP(n_features=4, n_classes=2)
    frozen = FrozenEstimator(LogisticRegression().fit(X, y))
    for victim in (module, frozen):
        assert not needs_fit(victim)
        assert fit_victim(victim, X, y, y_index, n_classes=2, device="cpu", seed=0) is victim
    assert needs_fit(None) and needs_fit(LogisticRegression())


def test_default_net_is_trained_on_indices_and_mapped_back_to_labels():
    X, y, classes, y_index = _data()
    net = fit_victim(None, X, y, y_index, n_classes=2, device="cpu", seed=0)
    model = victim_torch_model(None, net, classes)
    np.testing.assert_array_equal(model.classes, classes)
    again = fit_victim(None, X, y, y_index, n_classes=2, device="cpu", seed=0)
    for a, b in zip(net.module_.parameters(), again.module_.parameters()):
        assert torch.equal(a, b)  # the seed makes the training reproducible


def test_unsupported_victim_says_why():
    X, y, _, y_index = _data()
    with pytest.raises(TypeError, match="DecisionTreeClassifier cannot be attacked"):
        fit_victim(DecisionTreeClassifier(), X, y, y_index, n_classes=2, device="cpu", seed=0)


def test_model_name_unwraps_frozen_and_fitted_victims():
    X, y, classes, y_index = _data()
    net = fit_victim(None, X, y, y_index, n_classes=2, device="cpu", seed=0)
    assert model_name(net) == "MLP"
    assert model_name(FrozenEstimator(FrozenEstimator(net))) == "MLP"
    assert model_name(LogisticRegression()) == "LogisticRegression"
