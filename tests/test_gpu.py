"""Every estimator end to end on ``device="cuda"``, compared with its CPU result.

Skipped without CUDA. ``SKROBUST_TEST_DEVICE=cpu`` runs the same tests with the CPU
standing in for the GPU (a dry run of the test code on a machine without one).
"""

import copy
import os

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import minmax_scale

from skrobust.attacks import (
    APGDTransformer,
    FABTransformer,
    FGSMTransformer,
    PGDExpTransformer,
    PGDTransformer,
    SquareAttackTransformer,
)
from skrobust.defenses import AdversarialTrainer
from skrobust.detection import MMDDriftDetector
from skrobust.evaluation import evaluate_robustness
from skrobust.privacy import ImageInversionAttack

from ._instances import small_instances

DEVICE = os.environ.get("SKROBUST_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=240, n_features=12, n_informative=6,
                               n_classes=3, random_state=0)
    return minmax_scale(X).astype(np.float32), y


@pytest.fixture(scope="module")
def victims(data):
    """A trained MLP on the CPU and an identical copy on the device."""
    X, y = data
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(),
                                 torch.nn.Linear(32, 3))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    x, t = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), t).backward()
        optimizer.step()
    module.eval()
    return module, copy.deepcopy(module).to(DEVICE)


ATTACKS = {
    "fgsm-inf": lambda m, d: FGSMTransformer(m, eps=0.1, device=d),
    "fgsm-2": lambda m, d: FGSMTransformer(m, eps=0.5, norm=2, device=d),
    "pgd-inf": lambda m, d: PGDTransformer(m, eps=0.1, step_size=0.02, n_iter=10, device=d),
    "pgd-2": lambda m, d: PGDTransformer(m, eps=0.5, step_size=0.1, n_iter=10, norm=2,
                                         device=d),
    "pgd-immutable": lambda m, d: PGDTransformer(m, eps=0.1, step_size=0.02, n_iter=10,
                                                 immutable=[0, 3], device=d),
    "apgd-inf": lambda m, d: APGDTransformer(m, eps=0.1, n_iter=10, random_start=False,
                                             device=d),
    "pgd-exp-2": lambda m, d: PGDExpTransformer(m, eps=0.5, step_size=0.1, n_iter=10,
                                                device=d),
    "square-inf": lambda m, d: SquareAttackTransformer(m, eps=0.1, n_queries=50,
                                                       random_state=0, device=d),
    "fab-inf": lambda m, d: FABTransformer(m, eps=0.1, n_iter=10, device=d),
    "fab-2": lambda m, d: FABTransformer(m, eps=0.5, n_iter=10, norm=2, device=d),
}


def in_ball_and_box(X_adv, X, eps, norm):
    """The guarantee, in X's dtype (Linf) or in float64 (L2)."""
    delta = X_adv - X
    if norm == 2:
        size = np.linalg.norm(delta.astype(np.float64), axis=1)
    else:
        size = np.abs(delta).max(axis=1)
    return X_adv.min() >= 0 and X_adv.max() <= 1 and np.all(size <= eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_attacks_on_the_device_match_the_cpu(data, victims, case, dtype):
    X, y = data
    X = X.astype(dtype)
    cpu_module, device_module = victims
    cpu = ATTACKS[case](cpu_module, "cpu").fit(X, y)
    on_device = ATTACKS[case](device_module, DEVICE).fit(X, y)
    expected, X_adv = cpu.generate(X, y), on_device.generate(X, y)
    assert X_adv.dtype == X.dtype and X_adv.shape == X.shape
    norm = 2 if on_device.norm == 2 else "inf"
    assert in_ball_and_box(X_adv, X, on_device.eps, norm)
    if case.startswith(("fgsm", "pgd-")) and not case.startswith("pgd-exp"):
        # float32 arithmetic differs between devices; a sign flip of a near-zero
        # gradient may move a few coordinates by a step
        close = np.isclose(X_adv, expected, atol=1e-4)
        assert close.mean() >= 0.98, f"{case}: {1 - close.mean():.3%} of entries differ"
    else:
        # step-size control, line searches and accept/reject decisions branch on
        # float32 comparisons: rows may take another path, the strength is the same
        assert abs(adv_accuracy(cpu_module, X_adv, y)
                   - adv_accuracy(cpu_module, expected, y)) <= 0.05
    np.testing.assert_array_equal(on_device.transform(X), on_device.transform(X))


def adv_accuracy(module, X, y):
    with torch.no_grad():
        return float((module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
                      == y).mean())


def _on_device(estimator):
    estimator = clone(estimator)
    estimator.set_params(device=DEVICE)
    return estimator


def _outputs(estimator, X, y):
    if isinstance(estimator, MMDDriftDetector):
        result = estimator.fit(X[:120]).test(X[120:])
        return np.array([result.statistic, result.p_value])
    if isinstance(estimator, ImageInversionAttack):
        from skrobust.utils import extract_features

        estimator.fit(X, y)
        model = estimator.estimator_
        features = extract_features(model, X[:20], estimator.layer)
        X_inv, history = estimator.invert(features, return_loss=True)
        assert np.isfinite(X_inv).all() and X_inv.shape == (20, X.shape[1])
        return history[:, [0, -1]].mean(axis=0)  # mean loss at the start and the end
    return np.array([np.mean(estimator.fit(X, y).predict(X) == y)])


NON_ATTACKS = [e for e in small_instances() if not hasattr(e, "generate")]


@pytest.mark.parametrize("estimator", NON_ATTACKS, ids=lambda e: type(e).__name__)
def test_estimators_train_and_predict_on_the_device_like_on_the_cpu(data, estimator):
    """AdversarialTrainer, DNR, MMD, suppress-privacy and inversion: fitted on the
    device, they do as well as the same estimator fitted on the CPU. Random draws
    made on the device (masks, random starts, the inversion's start image) come
    from the device's generator, so results agree in quality, not bit for bit."""
    X, y = data
    expected = _outputs(clone(estimator), X, y)
    result = _outputs(_on_device(estimator), X, y)
    if isinstance(estimator, MMDDriftDetector):  # permutations drawn on the CPU
        np.testing.assert_allclose(result[0], expected[0], rtol=1e-3, atol=1e-6)
        assert abs(result[1] - expected[1]) <= 2 / (estimator.n_permutations + 1)
    elif isinstance(estimator, ImageInversionAttack):
        start, end = result
        assert end < start and end <= 1.5 * expected[1] + 1e-6
    else:  # training accuracy on X
        assert abs(result[0] - expected[0]) <= 0.1, (result, expected)


def test_mixed_precision_training_on_the_device_does_as_well_as_float32(data):
    """AdversarialTrainer with bfloat16 autocast on the device against float32 on the
    CPU (where the device has no bfloat16, it must refuse by name)."""
    X, y = data
    trainer = next(e for e in NON_ATTACKS if isinstance(e, AdversarialTrainer))
    mixed = _on_device(trainer).set_params(mixed_precision=True)
    if DEVICE.startswith("cuda") and not torch.cuda.is_bf16_supported():
        with pytest.raises(ValueError, match="mixed_precision"):
            mixed.fit(X, y)
        return
    expected = _outputs(clone(trainer), X, y)
    result = _outputs(mixed, X, y)
    assert abs(result[0] - expected[0]) <= 0.1, (result, expected)


def test_evaluate_robustness_on_the_device_matches_the_cpu(data, victims):
    X, y = data
    cpu_module, device_module = victims
    expected = evaluate_robustness(cpu_module, X[:60], y[:60], eps=0.1, random_state=0)
    result = evaluate_robustness(device_module, X[:60], y[:60], eps=0.1, random_state=0)
    assert result.clean_accuracy == expected.clean_accuracy
    # float32 arithmetic differs between devices (APGD's starts are keyed by row,
    # the same on both): a near-tie may fall the other way on a few rows
    assert abs(result.robust_accuracy - expected.robust_accuracy) <= 6 / 60
    frozen = evaluate_robustness(FrozenEstimator(device_module), X[:60], y[:60], eps=0.1,
                                 random_state=0)
    assert frozen.robust_accuracy == result.robust_accuracy


def test_60k_rows_stream_through_a_few_batches_of_device_memory():
    """One call on 60,000 MNIST-sized rows holds O(batch_size) on the device."""
    if not DEVICE.startswith("cuda"):
        pytest.skip("device memory statistics need CUDA")
    rng = np.random.default_rng(0)
    X = rng.random((60_000, 784), dtype=np.float32)
    y = rng.integers(0, 10, len(X))
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(),
                                 torch.nn.Linear(100, 10)).to(DEVICE)
    attack = PGDTransformer(module, eps=0.1, step_size=0.02, n_iter=2, batch_size=256,
                            device=DEVICE).fit(X[:100], y[:100])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    X_adv = attack.generate(X, y)
    peak = torch.cuda.max_memory_allocated() - before
    batch_bytes = 256 * 784 * 8  # one float64-sized batch
    assert peak < 16 * batch_bytes + len(X) * 8, f"{peak / 2**20:.1f} MiB on the device"
    assert X_adv.shape == X.shape and np.abs(X_adv - X).max() <= 0.1


@pytest.mark.parametrize("attack", ["apgd", "fab"])
def test_target_runs_side_by_side_on_the_device(attack):
    """APGD-T and FAB-T put their target runs side by side on the device (up to
    ``batch_size`` rows there): the same images fooled as one run at a time."""
    from skrobust.attacks._functional_apgd import apgd
    from skrobust.attacks._functional_fab import fab

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                                 torch.nn.Linear(32, 10)).double().to(DEVICE).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    x = torch.rand(48, 20, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64).to(DEVICE)
    y = module(x).argmax(1)
    run, kwargs = (apgd, dict(loss="dlr")) if attack == "apgd" else (fab, {})
    fooled = []
    for max_rows in (1, 512):
        out = run(module, x, y, eps=0.08, n_iter=15, n_target_classes=9, clip_min=0.0,
                  clip_max=1.0, generator=torch.Generator(device=DEVICE).manual_seed(0),
                  max_rows=max_rows, **kwargs)
        assert float((out - x).abs().max()) <= 0.08 + 1e-6
        fooled.append(module(out).argmax(1) != y)
    assert 0 < int(fooled[0].sum()) < len(x)
    # a matrix product over another number of rows may round its last bit
    # differently (float64 here), which can flip a near-tie: one image at most
    assert int((fooled[0] != fooled[1]).sum()) <= 1
