"""Small torch modules used as defaults, in the docs and in the tests, and skorch glue.

Every model takes scikit-learn's flat 2-D X and names its layers, so that
:func:`skrobust.utils.extract_features` can pull a layer's output by name.
:func:`array_batches` is the skorch batch iterator of the nets skrobust trains.
"""

from ._lenet import LeNet5
from ._mlp import MLP
from ._skorch import array_batches
from ._small_cnn import SmallCNN

__all__ = ["LeNet5", "MLP", "SmallCNN", "array_batches"]
