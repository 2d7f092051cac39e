from torch import nn

from ..utils._docstrings import fill_doc
from ._layers import image_layers


@fill_doc
class SmallCNN(nn.Sequential):
    """The small CNN of MATLAB's adversarial-training example, for flat 2-D input.

    conv 32@3x3 pad 1, ReLU, conv 64@3x3 pad 1, ReLU, max-pool 2, fc ``n_classes``.

    Parameters
    ----------
    {image_input}

    Notes
    -----
    Layer names: ``reshape, conv1, relu1, conv2, relu2, pool1, flatten, fc1``.

    References
    ----------
    MathWorks, "Train Image Classification Network Robust to Adversarial Examples",
    Deep Learning Toolbox documentation.

    Examples
    --------
    >>> import torch
    >>> from skrobust.models import SmallCNN
    >>> SmallCNN()(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    >>> SmallCNN(in_channels=3, image_size=32)(torch.zeros(2, 3 * 32 * 32)).shape  # colour
    torch.Size([2, 10])
    """

    def __init__(self, n_classes=10, in_channels=1, image_size=28):
        size = image_size // 2
        super().__init__(image_layers(in_channels, image_size, [
            ("conv1", nn.Conv2d(in_channels, 32, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 64, 3, padding=1)),
            ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * size * size, n_classes)),
        ]))
