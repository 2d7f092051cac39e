"""Memory of the attack transformers is the output + O(batch_size x n_features).

numpy reports its allocations to :mod:`tracemalloc`, so the traced peak during
``generate`` catches any numpy temporary of the input's size (a final
re-projection over the whole array, a full-size boolean mask in validation).
torch's own allocations are not traced; ``benchmarks/memory.py`` measures the
resident set size of the whole process.
"""

import tracemalloc

import numpy as np
import pytest
import torch

from skrobust.attacks import (
    APGDTransformer,
    FGSMTransformer,
    PGDExpTransformer,
    PGDTransformer,
    SquareAttackTransformer,
)

N_ROWS, N_FEATURES, BATCH = 4_000, 50, 64

CASES = {
    "fgsm-inf": lambda m: FGSMTransformer(m, eps=0.1),
    "fgsm-inf-immutable": lambda m: FGSMTransformer(m, eps=0.1, immutable=[0]),
    "pgd-inf": lambda m: PGDTransformer(m, eps=0.1, step_size=0.05, n_iter=2),
    "pgd-2": lambda m: PGDTransformer(m, eps=0.5, step_size=0.2, n_iter=2, norm=2),
    "pgd-inf-immutable": lambda m: PGDTransformer(m, eps=0.1, step_size=0.05, n_iter=2,
                                                  immutable=[0]),
    "pgd-2-immutable-integer": lambda m: PGDTransformer(
        m, eps=0.5, step_size=0.2, n_iter=2, norm=2, immutable=[0], integer_features=[1],
        clip_min=None, clip_max=None),
    "apgd-inf": lambda m: APGDTransformer(m, eps=0.1, n_iter=2),
    "pgd-exp-2": lambda m: PGDExpTransformer(m, eps=0.5, step_size=0.2, n_iter=2),
    "square-inf": lambda m: SquareAttackTransformer(m, eps=0.1, n_queries=3,
                                                    batch_size=16),
}


def victim():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3))


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(N_ROWS, N_FEATURES)
    X[:, 1] = 0.0  # an integral feature for the integer-feature case
    return X, rng.randint(0, 3, N_ROWS)


def extra_memory(attack, X, y):
    """Traced numpy peak during ``generate`` beyond its output, in bytes."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        X_adv = attack.generate(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert X_adv.dtype == X.dtype and np.isfinite(X_adv).all()
    return peak - before - X_adv.nbytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_full_size_temporary(data, case, dtype):
    X, y = data
    X = X.astype(dtype)
    attack = CASES[case](victim())
    if attack.batch_size == 256:
        attack.set_params(batch_size=BATCH)
    attack.fit(X[:200], y[:200])
    half = len(X) // 2
    small = extra_memory(attack, X[:half], y[:half])
    large = extra_memory(attack, X, y)
    # batch-sized temporaries cancel out; what grows with the rows is the labels
    # (8 bytes a row), while one full-size temporary would add X[:half].nbytes
    growth = (large - small) / X[:half].nbytes
    assert growth < 0.25, f"{case} {np.dtype(dtype).name}: +{growth:.2f}x per extra row"


@pytest.mark.parametrize("case", ["fgsm-inf", "pgd-2", "fgsm-inf-immutable"])
def test_fit_makes_no_copy_of_X(data, case):
    # fit validates X and learns bounds and scales only where asked for: no float64
    # copy of a float32 X (a 60k-row MNIST fit allocated 359 MiB for nothing before)
    X = data[0].astype(np.float32)
    attack = CASES[case](victim())
    tracemalloc.start()
    try:
        attack.fit(X, data[1])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * X.nbytes, f"{case}: fit allocated {peak / X.nbytes:.2f}x X"
