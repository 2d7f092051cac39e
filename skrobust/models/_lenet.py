from torch import nn

from ..utils._docstrings import fill_doc
from ._layers import image_layers


@fill_doc
class LeNet5(nn.Sequential):
    """LeNet-5 as in MindArmour's tutorials, for flat 2-D input.

    conv 6@5x5 on the image zero-padded to 32x32, ReLU, max-pool 2, conv 16@5x5, ReLU,
    max-pool 2, fc 120, ReLU, fc 84, ReLU, fc ``n_classes`` (logits).

    Parameters
    ----------
    {image_input}

    Notes
    -----
    Layers are named children, so ``extract_features(net, X, "relu3")`` works. The
    names are ``reshape, conv1, relu1, pool1, conv2, relu2, pool2, flatten, fc1,
    relu3, fc2, relu4, fc3``.

    References
    ----------
    Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied
    to document recognition", Proc. IEEE 86(11), 1998.

    Examples
    --------
    >>> import torch
    >>> from skrobust.models import LeNet5
    >>> net = LeNet5()
    >>> net(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    >>> net.relu3  # a named layer, e.g. for extract_features
    ReLU()
    """

    def __init__(self, n_classes=10, in_channels=1, image_size=28):
        size = ((image_size + 4 - 4) // 2 - 4) // 2
        super().__init__(image_layers(in_channels, image_size, [
            ("conv1", nn.Conv2d(in_channels, 6, 5, padding=2)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * size * size, 120)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, n_classes)),
        ]))
