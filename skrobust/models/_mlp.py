from collections import OrderedDict

from torch import nn


class MLP(nn.Sequential):
    """A multi-layer perceptron for tabular data, returning logits.

    Parameters
    ----------
    n_features : int, default=784
        Number of input features.
    n_classes : int, default=10
        Number of output logits.
    hidden_units : tuple of int, default=(100,)
        Width of each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden ReLU.

    Notes
    -----
    Layer names: ``fc1, relu1, [drop1,] fc2, relu2, ..., out``.

    Examples
    --------
    >>> import torch
    >>> from skrobust.models import MLP
    >>> MLP(n_features=4, n_classes=3)(torch.zeros(5, 4)).shape
    torch.Size([5, 3])
    """

    def __init__(self, n_features=784, n_classes=10, hidden_units=(100,), dropout=0.0):
        layers, width = [], n_features
        for i, units in enumerate(hidden_units, start=1):
            layers += [(f"fc{i}", nn.Linear(width, units)), (f"relu{i}", nn.ReLU())]
            if dropout:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            width = units
        layers.append(("out", nn.Linear(width, n_classes)))
        super().__init__(OrderedDict(layers))
