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
