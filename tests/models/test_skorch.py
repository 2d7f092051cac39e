import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset, ValidSplit
from torch.utils.data import DataLoader, Subset

from skrobust.models import MLP, array_batches
from skrobust.models._skorch import _ArrayBatches, default_net, fit_net, use_array_batches

RNG = np.random.default_rng(0)
ARRAYS = {
    "float32 rows, int64 labels": (RNG.random((50, 6), dtype=np.float32),
                                   RNG.integers(0, 3, 50)),
    "float64 images, int32 labels": (RNG.random((50, 1, 4, 4)),
                                     RNG.integers(0, 3, 50).astype(np.int32)),
    "1-D X, float y": (RNG.random(50, dtype=np.float32), RNG.random(50, dtype=np.float32)),
    "tensors": (torch.rand(50, 3), torch.arange(50)),
}


def _batches_and_rng(make_iterator, seed=3):
    torch.manual_seed(seed)
    batches = list(make_iterator())
    return batches, torch.get_rng_state()


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_array_batches_are_the_data_loaders(name, subset, shuffle, batch_size):
    """Same batches (values and dtypes), same number, same draws from torch's global
    generator as skorch's default DataLoader, on a dataset and on a validation Subset."""
    dataset = Dataset(*ARRAYS[name])
    if subset:
        dataset = Subset(dataset, np.random.default_rng(1).permutation(50)[:23])
    iterator = array_batches(dataset, batch_size=batch_size, shuffle=shuffle)
    assert isinstance(iterator, _ArrayBatches)
    ours, state = _batches_and_rng(lambda: iterator)
    theirs, loader_state = _batches_and_rng(
        lambda: DataLoader(dataset, batch_size=batch_size, shuffle=shuffle))
    assert len(iterator) == len(ours) == len(theirs)
    assert torch.equal(state, loader_state)
    for (xa, ya), (xb, yb) in zip(ours, theirs):
        assert xa.dtype == xb.dtype and ya.dtype == yb.dtype
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_array_batches_never_share_the_callers_memory():
    X, y = RNG.random((10, 3), dtype=np.float32), np.arange(10)
    X_before = X.copy()
    for xb, _ in array_batches(Dataset(X, y), batch_size=10):
        xb.add_(1.0)
    np.testing.assert_array_equal(X, X_before)


class _Scaled(Dataset):
    def __getitem__(self, i):
        Xi, yi = super().__getitem__(i)
        return 2 * Xi, yi


@pytest.mark.parametrize("dataset, kwargs", [
    (Dataset(RNG.random((8, 2)), None), {}),  # no labels
    (_Scaled(RNG.random((8, 2)), np.arange(8)), {}),  # a subclass transforms samples
    (Dataset(RNG.random((8, 2)), np.arange(8)), {"drop_last": True}),
    (Dataset({"a": RNG.random((8, 2))}, np.arange(8)), {}),
])
def test_array_batches_leave_other_cases_to_the_data_loader(dataset, kwargs):
    iterator = array_batches(dataset, batch_size=3, **kwargs)
    assert isinstance(iterator, DataLoader)
    if kwargs:
        assert iterator.drop_last


def _net(**params):
    return NeuralNetClassifier(MLP, module__n_features=6, module__n_classes=3,
                               module__hidden_units=(16,), max_epochs=3, lr=0.1,
                               batch_size=8, criterion=torch.nn.CrossEntropyLoss,
                               iterator_train__shuffle=True, verbose=0, **params)


@pytest.mark.parametrize("train_split", [None, ValidSplit(0.25, random_state=0)])
def test_fit_net_trains_the_same_weights_as_skorchs_data_loader(train_split):
    X, y = ARRAYS["float32 rows, int64 labels"]
    fitted = fit_net(_net(train_split=train_split), X, y, seed=5)
    assert fitted.iterator_train is array_batches and fitted.iterator_valid is array_batches
    with torch.random.fork_rng():
        torch.manual_seed(5)
        reference = _net(train_split=train_split).fit(X, y)  # DataLoader throughout
    assert reference.iterator_train is DataLoader
    for a, b in zip(fitted.module_.parameters(), reference.module_.parameters()):
        assert torch.equal(a, b)
    for key in ("train_loss", "valid_loss", "valid_acc"):
        if train_split is not None or key == "train_loss":
            assert fitted.history[:, key] == reference.history[:, key]


def test_fit_net_keeps_an_iterator_the_user_chose():
    class Loader(DataLoader):
        pass

    X, y = ARRAYS["float32 rows, int64 labels"]
    net = fit_net(_net(train_split=None, iterator_train=Loader), X, y, seed=0)
    assert net.iterator_train is Loader and net.iterator_valid is array_batches
    assert default_net().iterator_train is DataLoader  # only fitted clones are changed


def test_an_initialized_net_gets_array_batches_too():
    """skorch refuses set_params of an iterator on an initialized net (a net being
    fine-tuned); the swap must not go through it."""
    X, y = ARRAYS["float32 rows, int64 labels"]
    net = _net(train_split=None).initialize()
    assert use_array_batches(net) is net and net.iterator_train is array_batches
    net.partial_fit(X, y)
