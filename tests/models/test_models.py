import pytest
import torch

from skrobust.models import MLP, LeNet5, SmallCNN
from skrobust.utils import layer_names


@pytest.mark.parametrize("model, n_features", [(LeNet5(), 784), (SmallCNN(), 784),
                                               (MLP(n_features=20, n_classes=3), 20)])
def test_flat_input_gives_logits(model, n_features):
    out = model(torch.rand(4, n_features))
    assert out.shape == (4, model[-1].out_features)


def test_image_input_gives_the_same_logits_as_flat_input():
    net = LeNet5(n_classes=3)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x), net(x.reshape(2, 784)))


def test_lenet5_architecture_matches_mindarmour():
    net = LeNet5()
    assert [n for n in layer_names(net)] == [
        "reshape", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
        "fc1", "relu3", "fc2", "relu4", "fc3"]
    assert net.fc1.in_features == 16 * 5 * 5  # a 32x32 input after two conv+pool stages
    assert (net.fc1.out_features, net.fc2.out_features, net.fc3.out_features) == (120, 84, 10)


def test_small_cnn_architecture_matches_matlab():
    net = SmallCNN()
    assert (net.conv1.out_channels, net.conv2.out_channels) == (32, 64)
    assert net.fc1.in_features == 64 * 14 * 14


def test_mlp_hidden_layers_and_dropout():
    net = MLP(n_features=5, n_classes=2, hidden_units=(8, 4), dropout=0.5)
    assert layer_names(net) == ["fc1", "relu1", "drop1", "fc2", "relu2", "drop2", "out"]
