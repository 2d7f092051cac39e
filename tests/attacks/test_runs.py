"""Runs side by side (APGD-T, FAB-T, restarts) give the result of running them in turn."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skrobust.attacks import APGDTransformer, FABTransformer, PGDTransformer
from skrobust.attacks._functional_apgd import apgd
from skrobust.attacks._functional_fab import fab
from skrobust.attacks._runs import max_rows_for, run_chunks, superseded
from skrobust.attacks.functional import start_noise


class Counting(torch.nn.Module):
    """A float64 MLP that counts its forward passes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10)).double()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


@pytest.fixture
def case():
    model = Counting()
    x = torch.rand(40, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, x, model(x).argmax(1)


SETTINGS = [dict(n_target_classes=9), dict(n_target_classes=None, n_restarts=3),
            dict(n_target_classes=3, n_restarts=2),
            dict(targeted=True, n_target_classes=None, n_restarts=3)]


@pytest.mark.parametrize("attack", ["apgd", "fab"])
@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("settings", SETTINGS)
def test_side_by_side_equals_in_turn(case, attack, norm, settings):
    model, x, y = case
    # targeted: towards the runner-up class
    labels = model(x).argsort(1, descending=True)[:, 1] if settings.get("targeted") else y
    if attack == "apgd":
        settings = dict(settings, loss="dlr" if settings.get("n_target_classes") else "ce")
        run = apgd
    else:
        run = fab
    eps = 0.08 if norm == "inf" else 0.4
    outputs, calls = [], []
    for max_rows in (1, 10**6):  # 1: one run at a time
        model.calls = 0
        outputs.append(run(model, x, labels, eps=eps, norm=norm, n_iter=15, clip_min=0.0,
                           clip_max=1.0, generator=torch.Generator().manual_seed(0),
                           max_rows=max_rows, **settings))
        calls.append(model.calls)
    # the same samples fooled; the same points but for the last bits, as a matrix
    # product over another number of rows may round differently
    reached = [(model(out).argmax(1) == labels) if settings.get("targeted")
               else (model(out).argmax(1) != y) for out in outputs]
    assert torch.equal(reached[0], reached[1]) and 0 < reached[0].sum() < len(x)
    same = (outputs[0] - outputs[1]).abs().amax(1) < 1e-9
    assert same.float().mean() >= 0.95
    assert calls[1] < calls[0]  # several runs per pass: fewer passes


def test_a_success_stops_the_later_runs_of_its_sample_only():
    sample = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    rank = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    hit = torch.zeros(9, dtype=torch.bool)
    hit[4] = True  # sample 1's second run
    # its third run goes; its first run, ranked before, keeps running
    assert superseded(hit, sample, rank, 3).tolist() == [False] * 7 + [True, False]
    assert not superseded(torch.zeros(9, dtype=torch.bool), sample, rank, 3).any()


def test_chunks_take_the_runs_in_order_within_max_rows():
    success = torch.zeros(10, dtype=torch.bool)
    chunks = []
    for first, count, active in run_chunks(9, success, max_rows=32):
        chunks.append((first, count, len(active)))
        success[:3] = True  # the first chunk fools three samples
    assert chunks == [(0, 3, 10), (3, 4, 7), (7, 2, 7)]
    # a run per chunk at least, however many samples stand
    assert [c for _, c, _ in run_chunks(2, torch.zeros(100, dtype=torch.bool), 32)] == [1, 1]
    assert max_rows_for("cpu", 256) == 32 and max_rows_for("cpu", 8) == 8


@pytest.mark.parametrize("norm", ["inf", 2])
def test_keyed_noise_depends_on_the_row_only(norm):
    keys = torch.tensor([5, 7, 11])
    x = torch.zeros(3, 2000, dtype=torch.float64)
    t = start_noise(x, norm, keys=keys, counter=(1, 0))
    assert torch.equal(start_noise(x[1:], norm, keys=keys[1:], counter=(1, 0)), t[1:])
    assert not torch.equal(start_noise(x, norm, keys=keys, counter=(1, 1)), t)
    if norm == 2:  # standard Gaussian
        assert abs(t.mean()) < 0.05 and abs(t.std() - 1) < 0.05
    else:
        assert t.min() >= -1 and t.max() <= 1 and abs(t.mean()) < 0.05


@pytest.mark.parametrize("attack", [
    APGDTransformer(loss="dlr", n_target_classes=9),
    APGDTransformer(n_restarts=3, norm=2, eps=0.5),
    FABTransformer(n_target_classes=3, n_restarts=3),
    PGDTransformer(step_size=0.02, random_start=True, n_restarts=2),
    PGDTransformer(eps=0.5, step_size=0.1, norm=2, random_start=True),
], ids=["APGD-T", "APGD-CE-restarts-L2", "FAB-T-restarts", "PGD-restarts", "PGD-L2"])
def test_a_rows_result_does_not_depend_on_the_batch(attack):
    # random starts keyed by the row (random_state and its values): the same result
    # for another batch size or row order, so a sample's fate in an evaluation does
    # not depend on which others are still standing
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10)).eval()
    X = np.random.default_rng(1).random((60, 20)).astype(np.float32)
    y = net(torch.as_tensor(X)).argmax(1).numpy()
    order = np.random.default_rng(2).permutation(len(X))
    params = dict(estimator=net, n_iter=15, random_state=0)
    if attack.norm == "inf":
        params["eps"] = 0.08
    small = clone(attack).set_params(batch_size=7, **params).fit(X, y).transform(X)
    large = clone(attack).set_params(batch_size=256, **params).fit(X, y)
    shuffled = large.transform(X[order])
    large = large.transform(X)
    fooled = [net(torch.as_tensor(a)).argmax(1).numpy() != t
              for a, t in ((small, y), (large, y), (shuffled, y[order]))]
    assert 0 < fooled[1].sum() < len(X)
    np.testing.assert_array_equal(fooled[0], fooled[1])
    np.testing.assert_array_equal(fooled[2], fooled[1][order])
    np.testing.assert_allclose(small, large, atol=1e-6)
