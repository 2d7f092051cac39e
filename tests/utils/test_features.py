import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skrobust.models import LeNet5
from skrobust.utils import extract_features

X = np.random.RandomState(0).rand(10, 784).astype(np.float32)


def test_layer_output_is_flattened():
    net = LeNet5()
    assert extract_features(net, X, "relu1").shape == (10, 6 * 28 * 28)
    assert extract_features(net, X, "fc3").shape == (10, 10)


def test_last_layer_equals_the_forward_pass():
    net = LeNet5().eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(extract_features(net, X, "fc3", batch_size=3), logits, atol=1e-6)


def test_several_layers_at_once_and_fitted_skorch(mlp_net, mnist_small):
    _, _, X_test, _ = mnist_small
    features = extract_features(FrozenEstimator(mlp_net), X_test[:20], ["relu1", "out"])
    assert set(features) == {"relu1", "out"}
    assert features["relu1"].shape == (20, 64) and features["relu1"].min() >= 0
    np.testing.assert_allclose(features["out"], mlp_net.forward(X_test[:20]).numpy(), atol=1e-5)


def test_mode_restored_and_hooks_removed():
    net = LeNet5().train()
    extract_features(net, X, "relu3")
    assert net.training
    assert not any(m._forward_hooks for m in net.modules())


def test_unknown_layer_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown layer 'relu9'.*'relu1'.*'fc3'"):
        extract_features(LeNet5(), X, "relu9")
    with pytest.raises(ValueError, match="layer is empty"):
        extract_features(LeNet5(), X, [])


def test_unsupported_estimator():
    with pytest.raises(TypeError, match="skorch NeuralNet"):
        extract_features(object(), X, "fc1")
