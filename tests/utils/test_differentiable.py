import numpy as np
import pytest
import torch
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
        def _skrobust_torch_model(self):
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
