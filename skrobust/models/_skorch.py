"""skorch glue shared by every estimator that trains a net."""

import inspect

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..utils._torch import is_skorch_net, torch_seed
from ._mlp import MLP

__all__ = ["array_batches", "default_net", "fit_net", "is_skorch_net", "size_net"]


def default_net(**params):
    """The small MLP classifier used when an estimator is given ``estimator=None``.

    Sized in fit by :func:`size_net`; logits with cross-entropy, Adam, no internal
    validation split, silent.
    """
    from skorch import NeuralNetClassifier

    defaults = dict(
        module=MLP,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-2,
        max_epochs=20,
        batch_size=128,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
    )
    defaults.update(params)
    return NeuralNetClassifier(**defaults)


def size_net(net, n_features, n_classes):
    """Fill ``module__n_features`` / ``module__n_classes`` when the module class takes
    them and the user did not set them. Modifies ``net`` (a clone) in place."""
    module = net.module
    if not isinstance(module, type):
        return net
    accepted = inspect.signature(module).parameters
    given = net.get_params(deep=False)
    updates = {
        f"module__{name}": value
        for name, value in (("n_features", n_features), ("n_classes", n_classes))
        if name in accepted and f"module__{name}" not in given
    }
    if updates:
        net.set_params(**updates)
    return net


def fit_net(net, X, y_index, seed):
    """Fit a skorch net on float32 X and int64 class indices, reproducibly.

    Module initialisation and batch shuffling draw from torch's global generator,
    which is seeded with ``seed`` inside and restored afterwards. A net left with
    skorch's default ``DataLoader`` iterators gets :func:`array_batches` instead.
    """
    use_array_batches(net)
    with torch_seed(seed):
        return net.fit(np.asarray(X, dtype=np.float32), np.asarray(y_index, dtype=np.int64))


def use_array_batches(net):
    """Swap skorch's default ``DataLoader`` iterators of ``net`` (a clone) for
    :func:`array_batches`; an iterator the user chose is kept."""
    for name in ("iterator_train", "iterator_valid"):
        if getattr(net, name, None) is DataLoader:
            # not set_params: skorch refuses it on an initialized net (a fine-tuned one)
            setattr(net, name, array_batches)
    return net


class _ArrayBatches:
    """The batches of ``DataLoader(dataset, batch_size, shuffle)`` over in-memory arrays,
    each taken in one indexing of X and of y (no per-sample fetch, no collation).

    The batches and the draws from torch's global generator are those of the
    ``DataLoader`` (a base seed, then the ``RandomSampler``'s seed when shuffling), so
    a seeded fit trains the same weights either way.
    """

    def __init__(self, X, y, indices, batch_size, shuffle):
        self.X, self.y, self.indices = X, y, indices
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader's base seed
        order = self.indices
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_()))
            order = order[torch.randperm(len(order), generator=generator).numpy()]
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            yield _take(self.X, rows), _take(self.y, rows)


def _take(array, rows):
    if torch.is_tensor(array):
        return array[torch.as_tensor(rows, device=array.device)]
    return torch.from_numpy(array[rows])  # a fresh array: never the caller's memory


def _plain_arrays(dataset):
    """``(X, y, row indices)`` of a skorch ``Dataset`` of numeric arrays, or of a
    ``Subset`` of one (skorch's validation split); None for any other dataset."""
    from skorch.dataset import Dataset

    if isinstance(dataset, Subset):
        inner = _plain_arrays(dataset.dataset)
        if inner is None:
            return None
        X, y, indices = inner
        return X, y, indices[np.asarray(dataset.indices, dtype=np.int64)]
    if type(dataset) is not Dataset:  # a subclass may transform its samples
        return None
    X, y = dataset.X, dataset.y
    for array in (X, y):
        if not (torch.is_tensor(array) or (isinstance(array, np.ndarray)
                                          and array.dtype.kind in "biuf" and array.ndim)):
            return None
    if len(X) != len(y):
        return None
    return X, y, np.arange(len(X))


def array_batches(dataset, batch_size=1, shuffle=False, **kwargs):
    """skorch batch iterator that cuts each batch from in-memory arrays in one indexing.

    A drop-in replacement for skorch's default ``iterator_train`` and
    ``iterator_valid`` (``torch.utils.data.DataLoader``): it gives the same batches,
    in the same order, with the same draws from torch's global generator, so a
    seeded fit trains the same weights. Where the ``DataLoader`` fetches every
    sample on its own and stacks them, each batch here is one indexing of X and one
    of y, which is most of skorch's overhead per batch on a small net. skrobust's
    estimators use it in the nets they fit unless you chose another iterator.

    It applies to a skorch ``Dataset`` of numeric numpy arrays or tensors with
    labels, or to a ``torch.utils.data.Subset`` of one (skorch's validation
    split), called without ``DataLoader`` options other than ``batch_size`` and
    ``shuffle``. Anything else is handed to ``DataLoader`` unchanged.

    Parameters
    ----------
    dataset : torch Dataset
        The dataset skorch builds from ``X`` and ``y``.
    batch_size : int, default=1
        Rows per batch; the last batch may be smaller.
    shuffle : bool, default=False
        Draw a new order of the rows at every pass, as ``DataLoader(shuffle=True)``.
    **kwargs : dict
        Other ``DataLoader`` options (``iterator_train__num_workers=2``, ...). Given
        any, the ``DataLoader`` is used.

    Returns
    -------
    iterator : iterable of (Tensor, Tensor)
        An iterable with ``len``; every pass yields ``(X_batch, y_batch)`` as
        fresh CPU tensors (never views of the caller's arrays), or the
        ``DataLoader``'s batches.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skorch import NeuralNetClassifier
    >>> from skrobust.models import MLP, array_batches
    >>> X = np.random.RandomState(0).rand(100, 4).astype(np.float32)
    >>> y = (X[:, 0] > 0.5).astype(np.int64)
    >>> net = NeuralNetClassifier(
    ...     MLP, module__n_features=4, module__n_classes=2, max_epochs=2,
    ...     criterion=torch.nn.CrossEntropyLoss, iterator_train=array_batches,
    ...     iterator_train__shuffle=True, iterator_valid=array_batches, verbose=0)
    >>> net.fit(X, y).predict(X).shape
    (100,)
    """
    arrays = None if kwargs else _plain_arrays(dataset)
    if arrays is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **kwargs)
    return _ArrayBatches(*arrays, batch_size=batch_size, shuffle=shuffle)
