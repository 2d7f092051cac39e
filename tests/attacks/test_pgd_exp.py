import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from skrobust.attacks import PGDExpTransformer, PGDTransformer, reject_margin_loss
from skrobust.attacks._pgd_exp import pgd_exp


def test_reject_margin_loss_values():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.1, 0.3, 0.2], [0.5, 0.4, -1.0]])
    y = torch.tensor([0, 0, 0])
    np.testing.assert_allclose(reject_margin_loss(scores, y).numpy(), [-1.0, 0.2, -0.1],
                               atol=1e-6)
    # with a reject threshold the true score counts as at least the threshold
    np.testing.assert_allclose(reject_margin_loss(scores, y, threshold=0.6).numpy(),
                               [-1.0, -0.3, -0.2], atol=1e-6)
    targeted = reject_margin_loss(scores, torch.tensor([1, 1, 1]), threshold=0.6,
                                  targeted=True)
    np.testing.assert_allclose(targeted.numpy(), [-1.0, -0.3, -0.2], atol=1e-6)


def test_loss_positive_iff_accepted_and_wrong():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(200, 4, generator=gen)
    y = torch.randint(0, 4, (200,), generator=gen)
    t = 0.3
    loss = reject_margin_loss(scores, y, threshold=t)
    accepted_wrong = (scores.argmax(1) != y) & (scores.amax(1) >= t)
    np.testing.assert_array_equal((loss > 0).numpy(), accepted_wrong.numpy())


@pytest.fixture
def victim(mnist_small, mlp_net):
    X, y, X_test, y_test = mnist_small
    return FrozenEstimator(mlp_net), X_test[:64], y_test[:64]


def test_budget_box_and_monotone_loss(victim):
    est, X, y = victim
    attack = PGDExpTransformer(est, eps=1.5, n_iter=10).fit(X, y)
    X_adv, trace = attack.generate_with_history(X, y)
    np.testing.assert_array_equal(X_adv, attack.generate(X, y))
    assert X_adv.dtype == X.dtype
    assert np.all(np.linalg.norm(X_adv - X, axis=1) <= 1.5 + 1e-5)
    assert X_adv.min() >= 0 and X_adv.max() <= 1
    history = trace.loss
    assert history.shape == (11, len(X))
    assert np.all(np.diff(history, axis=0) >= 0)
    assert trace.scores.shape == (11, len(X), 10)
    # one gradient per iteration at most, forward passes for the line search
    assert trace.n_gradients <= 10 * len(X) and trace.n_forwards > trace.n_gradients
    acc_clean = np.mean(est.predict(X) == y)
    assert np.mean(est.predict(X_adv) == y) < acc_clean


def test_eps_zero_is_identity_and_no_history_by_default(victim):
    est, X, y = victim
    attack = PGDExpTransformer(est, eps=0.0, n_iter=3)
    np.testing.assert_array_equal(attack.fit(X, y).generate(X, y), X)
    assert not hasattr(attack, "loss_history_")


def test_the_history_is_returned_never_stored_on_the_estimator(victim):
    est, X, y = victim
    attack = PGDExpTransformer(est, eps=1.0, n_iter=3).fit(X, y)
    before = dict(vars(attack))
    X_adv, trace = attack.generate_with_history(X, None)  # transform's labels
    assert vars(attack).keys() == before.keys()
    assert all(vars(attack)[k] is v for k, v in before.items())
    np.testing.assert_array_equal(X_adv, attack.transform(X))
    assert trace.loss.shape == (4, len(X))
    with pytest.raises(NotFittedError):
        PGDExpTransformer(est).generate_with_history(X, y)


def test_at_least_as_strong_as_fixed_step_pgd_for_same_gradients(victim):
    est, X, y = victim
    exp = PGDExpTransformer(est, eps=1.0, n_iter=5, step_size=0.1)
    pgd = PGDTransformer(est, norm=2, eps=1.0, n_iter=5, step_size=0.1)
    acc_exp = np.mean(est.predict(exp.fit(X, y).generate(X, y)) == y)
    acc_pgd = np.mean(est.predict(pgd.fit(X, y).generate(X, y)) == y)
    assert acc_exp <= acc_pgd


def test_targeted(victim):
    est, X, y = victim
    target = (y + 1) % 10
    attack = PGDExpTransformer(est, eps=3.0, n_iter=15, targeted=True)
    X_adv = attack.fit(X, y).generate(X, target)
    assert np.mean(est.predict(X_adv) == target) > 0.5


def test_double_init_keeps_the_better_run(victim):
    est, X, y = victim
    kwargs = dict(eps=1.0, n_iter=5)
    single = PGDExpTransformer(est, **kwargs)
    double = PGDExpTransformer(est, double_init=True, **kwargs)
    _, one = single.fit(X, y).generate_with_history(X, y)
    X_adv, two = double.fit(X, y).generate_with_history(X, y)
    assert np.all(two.loss[-1] >= one.loss[-1] - 1e-5)
    assert two.n_gradients > one.n_gradients
    assert np.all(np.linalg.norm(X_adv - X, axis=1) <= 1.0 + 1e-5)
    assert double.X_init_.shape == X.shape and not hasattr(single, "X_init_")


def test_functional_shrinks_step_when_needed():
    module = torch.nn.Linear(3, 2).double()
    x = torch.zeros(4, 3, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    history = {}
    x_adv = pgd_exp(module, x, y, eps=0.5, step_size=10.0, min_step_size=1e-3, n_iter=3,
                    history=history)
    assert torch.all(x_adv.norm(dim=1) <= 0.5 + 1e-9)
    assert torch.all(history["loss"][-1] >= history["loss"][0])


def test_early_stop_stops_at_success_and_saves_work(victim):
    est, X, y = victim
    full = PGDExpTransformer(est, eps=2.0, n_iter=10)
    early = PGDExpTransformer(est, eps=2.0, n_iter=10, early_stop=True)
    X_full, full_trace = full.fit(X, y).generate_with_history(X, y)
    X_early, early_trace = early.fit(X, y).generate_with_history(X, y)
    assert early_trace.n_gradients < full_trace.n_gradients
    fooled_full = est.predict(X_full) != y
    fooled_early = est.predict(X_early) != y
    np.testing.assert_array_equal(fooled_early, fooled_full)
    # after its first success a sample's loss no longer changes
    history = early_trace.loss
    for i in range(len(X)):
        first = np.argmax(history[:, i] > 0) if np.any(history[:, i] > 0) else None
        if first is not None:
            assert np.all(history[first:, i] == history[first, i])


@pytest.mark.parametrize("params, match", [
    ({"early_stop": True, "loss": "ce"}, "early_stop=True needs"),
    ({"norm": "inf"}, "L2 attack"),
    ({"loss": "hinge"}, "'loss' parameter of PGDExpTransformer must be a str among"),
    ({"step_size": 0.0}, "step_size"),
])
def test_bad_parameters(victim, params, match):
    est, X, y = victim
    with pytest.raises(ValueError, match=match):
        PGDExpTransformer(est, **params).fit(X, y)
