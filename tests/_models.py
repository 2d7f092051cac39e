"""Small torch victims shared by the tests."""

import torch
from torch import nn


class Linear(nn.Module):
    """A tiny linear victim: logits = x W^T + b."""

    def __init__(self, n_features=6, n_classes=3, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(n_features, n_classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(n_classes, n_features, generator=generator))
            self.fc.bias.copy_(torch.randn(n_classes, generator=generator))

    def forward(self, x):
        return self.fc(x)


class Scale(nn.Module):
    """Multiplies its input by a constant: logits scaled up saturate the softmax."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def image_case(n_samples):
    """A small random image model (torchattacks wants 4-D images), ``n_samples``
    random 1x6x6 inputs and the model's own labels for them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = torch.rand(n_samples, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y
