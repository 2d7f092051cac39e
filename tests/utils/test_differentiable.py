import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.frozen import FrozenEstimator

from skrobust.utils import TorchModel, as_torch_model


def test_modules_frozen_estimators_and_skorch_nets(mlp_net):
    module = torch.nn.Linear(2, 2)
    assert as_torch_model(module).module is module
    assert as_torch_model(FrozenEstimator(module)).module is module
    model = as_torch_model(FrozenEstimator(mlp_net))
    assert model.module is mlp_net.module_ and model.device == torch.device("cpu")
    assert model.classes is None


def test_protocol_method_is_used():
    class Custom:
        def __skrobust_torch_model__(self):
            return TorchModel(torch.nn.Identity(), torch.device("cpu"), np.array(["a", "b"]))

    model = as_torch_model(Custom())
    np.testing.assert_array_equal(model.encode(["b", "a", "b"]), [1, 0, 1])
    with pytest.raises(ValueError, match=r"labels \['c'\] that the victim does not know"):
        model.encode(["c"])


def test_encode_without_classes_needs_integers():
    model = TorchModel(torch.nn.Identity(), torch.device("cpu"))
    np.testing.assert_array_equal(model.encode([2.0, 0.0]), [2, 0])
    with pytest.raises(ValueError, match="integer class indices"):
        model.encode(["x"])


def test_encode_checks_the_range_of_class_indices():
    model = TorchModel(torch.nn.Linear(4, 3), torch.device("cpu"))
    np.testing.assert_array_equal(model.encode([0, 2], n_features=4), [0, 2])
    # without a width, the first Linear layer's in_features is used for the dry forward
    with pytest.raises(ValueError, match=r"labels \[-1, 3\] outside the victim's classes: "
                                         r"labels must be class indices in \[0, 2\]"):
        model.encode([3, -1, 0])
    # nothing to read the width from: only negative indices can be refused
    with pytest.raises(ValueError, match=r"class indices >= 0\.$"):
        TorchModel(torch.nn.Identity(), torch.device("cpu")).encode([-2])
    # a single binary logit has two classes
    binary = TorchModel(torch.nn.Linear(4, 1), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        binary.encode([2], n_features=4)


def test_n_features_check_names_expected_and_given_width():
    model = as_torch_model(torch.nn.Sequential(torch.nn.Linear(5, 2)))
    assert model.check_n_features(5) == 2
    with pytest.raises(ValueError, match="X has 7 features, but the victim Sequential "
                                         "expects 5 features"):
        model.check_n_features(7)


def test_float32_range_and_victim_input(mlp_net):
    from skrobust.utils._differentiable import check_float32_range, victim_input

    check_float32_range(np.full((2, 2), 3e38))
    check_float32_range(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"Z has values beyond the float32 range "
                                         r"\(max \|Z\| = 1e\+39"):
        check_float32_range(np.array([[0.0, -1e39]]), name="Z")
    X = np.zeros((2, 784))
    assert victim_input(FrozenEstimator(mlp_net), X).dtype == np.float32
    assert victim_input(torch.nn.Linear(2, 2), X) is X


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=20),
       st.integers(1, 6))
def test_encode_accepts_exactly_the_victims_column_indices(labels, n_outputs):
    model = TorchModel(torch.nn.Linear(3, n_outputs), torch.device("cpu"))
    n_classes = max(n_outputs, 2)
    labels = np.array(labels)
    if np.all((labels >= 0) & (labels < n_classes)):
        np.testing.assert_array_equal(model.encode(labels, n_features=3), labels)
    else:
        with pytest.raises(ValueError, match=rf"class indices in \[0, {n_classes - 1}\]"):
            model.encode(labels, n_features=3)


def test_registered_types_dispatch_along_the_mro():
    class ThirdParty:  # a model type skrobust does not know
        def __init__(self, net):
            self.net = net

    class Subclass(ThirdParty):
        pass

    with pytest.raises(TypeError, match="Cannot attack a ThirdParty with gradients"):
        as_torch_model(ThirdParty(torch.nn.Linear(3, 2)))

    @as_torch_model.register(ThirdParty)
    def _(estimator):
        return TorchModel(estimator.net, torch.device("cpu"), np.array([5, 9]))

    net = torch.nn.Linear(3, 2)
    for victim in (ThirdParty(net), Subclass(net), FrozenEstimator(ThirdParty(net))):
        model = as_torch_model(victim)
        assert model.module is net
        np.testing.assert_array_equal(model.encode([9, 5]), [1, 0])
    assert as_torch_model.dispatch(Subclass) is as_torch_model.registry[ThirdParty]


def test_builtin_victim_kinds_are_registrations():
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline
    from skorch import NeuralNetClassifier

    registry = as_torch_model.registry
    assert {FrozenEstimator, torch.nn.Module, BaseEstimator} <= set(registry)
    assert as_torch_model.dispatch(Pipeline) is registry[BaseEstimator]
    assert as_torch_model.dispatch(torch.nn.Sequential) is registry[torch.nn.Module]
    assert as_torch_model.dispatch(NeuralNetClassifier) is not registry[object]


def test_hook_comes_before_the_registry_and_must_return_a_torch_model():
    inner = torch.nn.Linear(2, 2)

    class HookedModule(torch.nn.Module):  # registered kind (Module) with the hook
        def __skrobust_torch_model__(self):
            return TorchModel(inner, torch.device("cpu"), np.array(["a", "b"]))

    model = as_torch_model(HookedModule())
    assert model.module is inner and model.classes.tolist() == ["a", "b"]

    class Broken:
        def __skrobust_torch_model__(self):
            return inner

    with pytest.raises(TypeError, match=r"Broken.__skrobust_torch_model__\(\) returned a "
                                        r"Linear, not a skrobust.utils.TorchModel"):
        as_torch_model(Broken())


def test_predict_scores_is_batched_in_eval_mode_and_leaves_x_alone():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                 torch.nn.Linear(8, 3)).train()
    model = TorchModel(module, torch.device("cpu"), np.array([2, 4, 6]))
    X = np.random.RandomState(0).rand(11, 4)
    X_before = X.copy()
    scores = model.predict_scores(X, batch_size=3)
    # eval mode (dropout off): batches of 3 give the one-pass result, twice the same
    with torch.no_grad():
        expected = module.eval()(torch.as_tensor(X, dtype=torch.float32)).numpy()
    module.train()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_scores(X, batch_size=5), scores, rtol=1e-6)
    assert module.training and all(m.training for m in module.modules())  # mode restored
    np.testing.assert_array_equal(X, X_before)
    assert scores.dtype == np.float32
    labels = model.predict_scores(X, transform=lambda s: s.argmax(1))
    np.testing.assert_array_equal(labels, expected.argmax(1))
    proba = model.predict_scores(X, transform=lambda s: torch.softmax(s, 1), dtype=np.float64)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)


def test_predict_scores_of_no_rows_keeps_the_output_layout():
    model = TorchModel(torch.nn.Linear(4, 3), torch.device("cpu"))
    assert model.predict_scores(np.zeros((0, 4))).shape == (0, 3)
    labels = model.predict_scores(np.zeros((0, 4)), transform=lambda s: s.argmax(1))
    assert labels.shape == (0,) and labels.dtype == np.int64
