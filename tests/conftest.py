import os

import numpy as np
import pytest
import torch

from skrobust.datasets import load_mnist
from skrobust.models import MLP
from skrobust.models._skorch import default_net, fit_net

from ._models import Linear

# One torch thread per test process: tests run tiny ops, for which a second thread only
# adds contention (and xdist already runs one process per core).
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (or set SKROBUST_RUN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` are skipped unless asked for: --run-slow,
    SKROBUST_RUN_SLOW=1 or a ``-m`` expression that selects them."""
    markexpr = config.getoption("markexpr", "") or ""
    if (config.getoption("--run-slow") or os.environ.get("SKROBUST_RUN_SLOW") == "1"
            or ("slow" in markexpr and "not slow" not in markexpr)):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or SKROBUST_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_small():
    """3000 training and 500 test images from the embedded MNIST test set."""
    X, y = load_mnist(split="test", return_X_y=True)
    return X[:3000], y[:3000], X[3000:3500], y[3000:3500]


@pytest.fixture(scope="session")
def mlp_net(mnist_small):
    """A skorch MLP trained on 3000 MNIST images (about 90 % test accuracy)."""
    X, y, _, _ = mnist_small
    net = default_net(module=MLP, module__n_features=784, module__n_classes=10,
                      module__hidden_units=(64,), max_epochs=8, lr=3e-3)
    return fit_net(net, X, y, seed=0)


@pytest.fixture
def linear_victim():
    return Linear()
