from functools import partial

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import APGDTransformer, PGDTransformer
from skrobust.attacks._functional_apgd import (
    _per_sample_loss,
    apgd,
    apgd_checkpoints,
    apgd_run,
    apgd_start,
    dlr_loss,
    dlr_targeted_loss,
)

from .._models import Scale, image_case


def _accuracy(net, X, y):
    return float(np.mean(net.predict(X.astype(np.float32)) == y))


@pytest.fixture(scope="module")
def victim(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    return FrozenEstimator(mlp_net), X[:100], y[:100]


def test_checkpoints_follow_autoattack():
    # autopgd_base.py: first window max(int(0.22 n), 1), then max(int(0.03 n), 1)
    # fewer per checkpoint, down to max(int(0.06 n), 1)
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(20) == [0, 4, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert apgd_checkpoints(50) == [0, 11, 21, 30, 38, 45]
    assert apgd_checkpoints(1) == [0, 1]


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_same_trajectory_as_torchattacks(norm, loss):
    # best-loss mode runs every sample for all steps and returns its highest-loss
    # point: equal points mean equal start, steps, momentum, checkpoints and halving
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = image_case(40)
    eps = 0.05 if norm == "inf" else 0.3
    ref = torchattacks.APGD(model, norm="Linf" if norm == "inf" else "L2", eps=eps,
                            steps=30, loss=loss)
    torch.manual_seed(5)
    theirs = ref.attack_single_run(x, y)[0]  # the highest-loss points
    start = apgd_start(x, eps, norm, torch.Generator().manual_seed(5), 0.0, 1.0)
    ours, _, _ = apgd_run(
        model, x, start, partial(_per_sample_loss, y=y, target=None, loss=loss),
        lambda scores: torch.zeros(len(scores), dtype=torch.bool), eps=eps, norm=norm,
        n_iter=30, clip_min=0.0, clip_max=1.0)
    assert not torch.equal(theirs, x)
    # float32 rounding differs by an ulp here and there (L2 norms); nothing more
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("kind", ["APGD-CE", "APGD-T"])
def test_same_points_as_torchattacks_from_the_same_start(norm, kind):
    # torchattacks ports AutoAttack's APGD; seeded alike, both draw the same random
    # start, so checkpoints, halving conditions, momentum and projections must give
    # the same adversarial points
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = image_case(40)
    eps = 0.05 if norm == "inf" else 0.3
    ta_norm = "Linf" if norm == "inf" else "L2"
    if kind == "APGD-CE":
        ref = torchattacks.APGD(model, norm=ta_norm, eps=eps, steps=20, seed=3, loss="ce")
        ours = apgd(model, x, y, eps=eps, norm=norm, loss="ce", n_iter=20, clip_min=0.0,
                    clip_max=1.0, generator=torch.Generator().manual_seed(3))
    else:
        ref = torchattacks.APGDT(model, norm=ta_norm, eps=eps, steps=20, seed=3, n_classes=10)
        ours = apgd(model, x, y, eps=eps, norm=norm, loss="dlr", n_target_classes=9,
                    n_iter=20, clip_min=0.0, clip_max=1.0,
                    generator=torch.Generator().manual_seed(3))
    theirs = ref(x, y)
    with torch.no_grad():
        fooled_ours, fooled_theirs = model(ours).argmax(1) != y, model(theirs).argmax(1) != y
    assert 0 < int(fooled_theirs.sum()) < len(x)
    assert torch.equal(fooled_ours, fooled_theirs)
    # torchattacks returns the last adversarial point and the clean input for robust
    # samples; skrobust the first adversarial point, else the point of highest loss
    size = (ours - x).flatten(1).norm(p=float("inf") if norm == "inf" else 2, dim=1)
    assert float(size.max()) <= eps + 1e-6


def test_dlr_is_invariant_to_shifting_and_scaling_logits():
    logits = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    target = (y + 1) % 10
    for loss in (lambda z: dlr_loss(z, y), lambda z: dlr_targeted_loss(z, target, y),
                 lambda z: dlr_targeted_loss(z, target)):
        assert torch.allclose(loss(logits), loss(3.0 * logits + 7.0), atol=1e-5)
    # positive exactly when the sample is misclassified
    assert torch.equal(dlr_loss(logits, y) > 0, logits.argmax(1) != y)


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_output_respects_budget_bounds_and_dtype(victim, norm, loss):
    net, X, y = victim
    eps = 0.1 if norm == "inf" else 1.0
    X = X[:40].astype(np.float64)
    attack = APGDTransformer(net, eps=eps, norm=norm, loss=loss, n_iter=10, random_state=0)
    X_adv = attack.fit(X, y[:40]).generate(X, y[:40])
    assert X_adv.dtype == np.float64 and X_adv.shape == X.shape
    assert X_adv.min() >= 0.0 and X_adv.max() <= 1.0
    delta = X_adv - X
    size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps + 1e-12  # float64 rounding of x + delta
    assert _accuracy(net, X_adv, y[:40]) < _accuracy(net, X, y[:40])


def test_zero_budget_is_the_identity(victim):
    net, X, y = victim
    X_adv = APGDTransformer(net, eps=0.0, n_iter=5, random_state=0).fit(X, y).generate(X, y)
    np.testing.assert_array_equal(X_adv, X)


def test_at_least_as_strong_as_pgd100_with_the_same_budget(victim):
    net, X, y = victim
    eps = 0.05
    # PGD-100 with Madry's step 2.5 * eps / n_iter and with a larger one
    pgd_accuracy = min(
        _accuracy(net, PGDTransformer(net, eps=eps, n_iter=100, step_size=s).fit(X, y)
                  .generate(X, y), y)
        for s in (2.5 * eps / 100, eps / 10))
    apgd_accuracy = _accuracy(
        net, APGDTransformer(net, eps=eps, n_iter=100, random_state=0).fit(X, y)
        .generate(X, y), y)
    assert apgd_accuracy <= pgd_accuracy
    assert apgd_accuracy < _accuracy(net, X, y)


def test_step_halving_converges_to_an_interior_maximum():
    # CE of class 0 peaks at x = 0.3, inside the ball [0.1, 0.9], where the sample is
    # still classified 0: fixed steps oscillate around it, APGD's halving converges.
    class Peak(nn.Module):
        def forward(self, x):
            z = -50 * (x - 0.3) ** 2 - 5
            return torch.cat([torch.zeros_like(z), z], dim=1)

    x, y = torch.full((1, 1), 0.5), torch.zeros(1, dtype=torch.long)
    x_adv = apgd(Peak(), x, y, eps=0.4, n_iter=100, random_start=False,
                 clip_min=0.0, clip_max=1.0)
    assert abs(float(x_adv) - 0.3) < 0.01


def test_targeted_reaches_given_targets(victim):
    net, X, y = victim
    target = (y + 1) % 10
    for loss in ("ce", "dlr"):
        attack = APGDTransformer(net, eps=0.3, loss=loss, n_iter=30, targeted=True,
                                 random_state=0)
        X_adv = attack.fit(X, y).generate(X, target)
        assert np.mean(net.predict(X_adv) == target) > 0.8


def test_top_k_targeted_runs_fool_at_least_as_many_as_one_target(victim):
    net, X, y = victim
    one = APGDTransformer(net, eps=0.05, loss="dlr", n_iter=20, n_target_classes=1,
                          random_start=False).fit(X, y)
    three = clone(one).set_params(n_target_classes=3).fit(X, y)
    accuracy_one = _accuracy(net, one.generate(X, y), y)
    accuracy_three = _accuracy(net, three.generate(X, y), y)
    # the first targeted run is the same; later ones only attack survivors
    assert accuracy_three <= accuracy_one < _accuracy(net, X, y)


def test_restarts_never_hurt_and_seed_reproduces(victim):
    net, X, y = victim
    attack = APGDTransformer(net, eps=0.04, n_iter=10, random_state=3).fit(X, y)
    first, second = attack.generate(X, y), attack.generate(X, y)
    np.testing.assert_array_equal(first, second)
    more = clone(attack).set_params(n_restarts=3).fit(X, y)
    assert _accuracy(net, more.generate(X, y), y) <= _accuracy(net, first, y)


def test_transform_attacks_own_predictions(victim):
    net, X, y = victim
    attack = APGDTransformer(net, eps=0.1, n_iter=10, random_start=False).fit(X, y)
    X_adv = attack.transform(X)
    assert np.mean(net.predict(X_adv) == net.predict(X)) < 0.5


@pytest.mark.parametrize("params, match", [
    (dict(loss="hinge"), "loss='hinge'"),
    (dict(n_iter=0), "n_iter"),
    (dict(n_target_classes=3, targeted=True), "n_target_classes"),
    (dict(rho=1.5), "rho"),
])
def test_bad_parameters_get_clear_errors(params, match):
    X, y = np.random.RandomState(0).rand(20, 4), np.arange(20) % 2
    with pytest.raises(ValueError, match=match):
        APGDTransformer(**params).fit(X, y)


def test_dlr_on_two_classes_is_a_clear_error(linear_victim):
    X = np.random.RandomState(0).rand(10, 6).astype(np.float32)
    binary = nn.Linear(6, 2)
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGDTransformer(binary, loss="dlr", n_iter=2).fit(X, np.arange(10) % 2).transform(X)
    with pytest.raises(ValueError, match="at least 4 classes"):
        APGDTransformer(linear_victim, loss="dlr", n_iter=2, n_target_classes=2).fit(
            X, np.arange(10) % 3).transform(X)


def test_dlr_loss_breaks_saturated_logits_where_cross_entropy_fails(victim):
    # logits scaled by 1e4: the softmax saturates in float32, the CE gradient is zero
    # for confident samples (gradient masking); the DLR loss is scale invariant
    net, X, y = victim
    module = net.estimator.module_
    scaled = nn.Sequential(module, Scale(1e4)).eval()
    X, y = X[:60], y[:60]
    clean = np.mean(scaled(torch.from_numpy(X)).argmax(1).numpy() == y)

    def accuracy(attack):
        X_adv = attack.fit(X, y).generate(X, y)
        return np.mean(scaled(torch.from_numpy(X_adv)).argmax(1).numpy() == y)

    pgd = accuracy(PGDTransformer(scaled, eps=0.1, n_iter=100, step_size=0.0025))
    dlr = accuracy(APGDTransformer(scaled, eps=0.1, loss="dlr", n_iter=50, random_state=0))
    assert pgd > clean - 0.1  # CE-based PGD is blind here
    assert dlr < pgd - 0.3



class _RowCounter(nn.Module):
    """Wraps a model and records how many rows each forward pass sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, []

    def forward(self, x):
        self.rows.append(len(x))
        return self.model(x)


def _run(model, x, y, start, *, compact, check_every=None, loss="dlr", eps=0.05):
    common = dict(eps=eps, norm="inf", n_iter=30, clip_min=0.0, clip_max=1.0,
                  check_every=check_every)
    if compact:
        return apgd_run(model, x, start, partial(_per_sample_loss, target=None, loss=loss),
                        lambda scores, y: scores.argmax(1) != y, per_sample=dict(y=y),
                        **common)
    return apgd_run(model, x, start, partial(_per_sample_loss, y=y, target=None, loss=loss),
                    lambda scores: scores.argmax(1) != y, **common)


@pytest.mark.parametrize("check_every", [1, 4])
def test_finished_samples_leave_the_batch_without_changing_any_output(check_every):
    # per-sample trajectories are independent: dropping the samples that reached
    # their goal changes no other sample's points, flags or best loss (float64, so
    # that batch-size dependent kernel rounding cannot hide a real difference)
    model, x, y = image_case(40)
    model, x = model.double(), x.double()
    start = apgd_start(x, 0.05, "inf", torch.Generator().manual_seed(2), 0.0, 1.0)
    counted = _RowCounter(model)
    full_x, full_hit, full_loss = _run(model, x, y, start, compact=False)
    x_adv, hit, loss = _run(counted, x, y, start, compact=True, check_every=check_every)
    assert 0 < int(hit.sum()) < len(x)
    assert torch.equal(hit, full_hit)
    torch.testing.assert_close(x_adv, full_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(loss[~hit], full_loss[~hit], atol=1e-12, rtol=0)
    # later steps cost only the samples still standing
    rows = counted.rows
    assert rows[0] == len(x) and rows[-1] == len(x) - int(hit.sum())
    assert all(later <= earlier for earlier, later in zip(rows, rows[1:]))
    assert sum(rows) < len(x) * len(rows)


def test_compaction_keeps_float32_outputs_to_rounding():
    # in float32 a smaller batch may round a matrix product differently by an ulp;
    # the points then agree to that rounding and the success flags exactly
    model, x, y = image_case(40)
    start = apgd_start(x, 0.05, "inf", torch.Generator().manual_seed(2), 0.0, 1.0)
    full_x, full_hit, _ = _run(model, x, y, start, compact=False)
    x_adv, hit, _ = _run(model, x, y, start, compact=True)
    assert torch.equal(hit, full_hit)
    torch.testing.assert_close(x_adv, full_x, atol=1e-5, rtol=0)


def test_a_batch_that_is_all_fooled_at_the_start_costs_one_pass():
    model, x, y = image_case(40)
    counted = _RowCounter(model)
    x_adv, hit, _ = _run(counted, x, (y + 1) % 10, x.clone(), compact=True)
    assert bool(hit.all()) and torch.equal(x_adv, x)
    assert counted.rows == [len(x)]
