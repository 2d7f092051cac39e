"""Building blocks shared by the reference models."""

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
