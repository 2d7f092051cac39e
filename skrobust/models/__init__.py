"""Small torch modules used as defaults, in the docs and in the tests.

Every model takes scikit-learn's flat 2-D X and names its layers, so that
:func:`skrobust.utils.extract_features` can pull a layer's output by name.
"""

from ._lenet import LeNet5
from ._mlp import MLP
from ._small_cnn import SmallCNN

__all__ = ["LeNet5", "MLP", "SmallCNN"]
