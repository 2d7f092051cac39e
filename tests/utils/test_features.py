import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from skrobust.models import LeNet5
from skrobust.utils import LayerCapture, extract_features

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
    with pytest.raises(ValueError, match=r"Unknown layer 'relu9'.*'relu1'.*'fc3'"):
        LayerCapture(LeNet5(), ["relu1", "relu9"])
    with pytest.raises(ValueError, match="layers is empty"):
        LayerCapture(LeNet5(), [])


class Counting(torch.nn.Module):
    """fc1 -> act -> fc2 -> act (the same ReLU twice); counts the calls of fc2."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 3)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(3, 2)
        self.unused = torch.nn.Linear(2, 2)
        self.fc2_calls = 0

    def forward(self, x):
        h = self.act(self.fc1(x))
        self.fc2_calls += 1
        return self.act(self.fc2(h))


def test_capture_keeps_gradients_unless_detached():
    net = LeNet5().eval()
    x = torch.from_numpy(X[:2]).requires_grad_(True)
    with LayerCapture(net, ["relu3", "fc3"]) as capture:
        outputs = capture(x)
    (grad,) = torch.autograd.grad(outputs["relu3"].sum(), x)
    assert grad.abs().sum() > 0
    with torch.no_grad():
        np.testing.assert_allclose(outputs["fc3"].detach().numpy(), net(x).numpy(), atol=1e-6)
    with LayerCapture(net, "fc3", detach=True) as capture:
        assert not capture(x)["fc3"].requires_grad
    assert not any(m._forward_hooks for m in net.modules())


def test_capture_stop_skips_the_later_layers():
    net = Counting()
    x = torch.ones(2, 4)
    with LayerCapture(net, "fc1", stop=True) as capture:
        fc1 = capture(x)["fc1"]
    assert net.fc2_calls == 0  # the pass stopped after fc1
    with torch.no_grad():
        np.testing.assert_allclose(fc1.detach().numpy(), net.fc1(x).numpy())
    # a module called twice: first call with stop, last call without
    with LayerCapture(net, "act", stop=True) as capture:
        first = capture(x)["act"]
    with LayerCapture(net, "act") as capture:
        last = capture(x)["act"]
    assert first.shape == (2, 3) and last.shape == (2, 2)


def test_capture_refuses_a_layer_that_does_not_run_and_cleans_up():
    net = Counting()
    with LayerCapture(net, ["fc1", "unused"]) as capture:
        with pytest.raises(ValueError, match="Layer 'unused' did not run"):
            capture(torch.ones(2, 4))
    assert not any(m._forward_hooks for m in net.modules())
    with pytest.raises(ZeroDivisionError):
        with LayerCapture(net, "fc1"):
            1 / 0
    assert not any(m._forward_hooks for m in net.modules())  # removed on an error too
    with pytest.raises(RuntimeError, match="inside its with block"):
        LayerCapture(net, "fc1")(torch.ones(2, 4))


def test_unsupported_estimator():
    with pytest.raises(TypeError, match="skorch NeuralNet"):
        extract_features(object(), X, "fc1")
