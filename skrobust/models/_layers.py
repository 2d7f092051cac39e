"""Building blocks shared by the reference models."""

from collections import OrderedDict

from torch import nn


class ToImage(nn.Module):
    """Reshape flat rows ``(n, c*h*w)`` (scikit-learn's 2-D X) to images ``(n, c, h, w)``.

    Inputs that already have image shape pass through unchanged.
    """

    def __init__(self, in_channels, image_size):
        super().__init__()
        self.shape = (in_channels, image_size, image_size)

    def forward(self, x):
        return x.reshape(len(x), *self.shape)

    def extra_repr(self):
        return f"shape={self.shape}"


def image_layers(in_channels, image_size, layers):
    """The layers of a CNN over flat rows, for ``nn.Sequential``.

    A ``reshape`` layer (:class:`ToImage`) turns each row into an image of
    ``in_channels`` channels of ``image_size`` x ``image_size`` pixels, then come
    ``layers``, ``(name, module)`` pairs in order.
    """
    return OrderedDict([("reshape", ToImage(in_channels, image_size)), *layers])
