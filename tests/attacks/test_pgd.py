import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score

from skrobust.attacks import FGSMTransformer, PGDTransformer


def reference_pgd(module, X, y, eps, step_size, n_iter, norm):
    """A plain PyTorch PGD/BIM loop, written independently of skrobust."""
    module.eval()
    x0 = torch.from_numpy(X)
    target = torch.from_numpy(y)
    x = x0.clone()
    for _ in range(n_iter):
        x.requires_grad_(True)
        loss = F.cross_entropy(module(x), target)
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            if norm == "inf":
                x = x + step_size * grad.sign()
                x = torch.min(torch.max(x, x0 - eps), x0 + eps)
            else:
                g = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                x = x + step_size * g
                d = x - x0
                d = d * (eps / d.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1)
                x = x0 + d
            x = x.clamp(0, 1)
    return x.detach().numpy()


@pytest.mark.parametrize("norm, eps, step_size", [("inf", 0.05, 0.005), (2, 0.8, 0.08)])
def test_strength_matches_a_plain_pytorch_reference(mlp_net, mnist_small, norm, eps, step_size):
    _, _, X, y = mnist_small
    n_iter = 20
    attack = PGDTransformer(FrozenEstimator(mlp_net), eps=eps, step_size=step_size,
                            n_iter=n_iter, norm=norm).fit(X, y)
    ours = accuracy_score(y, mlp_net.predict(attack.generate(X, y)))
    theirs = accuracy_score(
        y, mlp_net.predict(reference_pgd(mlp_net.module_, X, y, eps, step_size, n_iter, norm)))
    clean = accuracy_score(y, mlp_net.predict(X))
    assert ours < clean - 0.2, "the attack must bite"
    assert abs(ours - theirs) <= 0.005


def test_pgd_is_at_least_as_strong_as_fgsm(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    victim = FrozenEstimator(mlp_net)
    fgsm = FGSMTransformer(victim, eps=0.1).fit(X, y).generate(X, y)
    pgd = PGDTransformer(victim, eps=0.1, step_size=0.01, n_iter=20).fit(X, y).generate(X, y)
    assert accuracy_score(y, mlp_net.predict(pgd)) <= accuracy_score(y, mlp_net.predict(fgsm))


def test_restarts_never_weaken_the_attack(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    victim = FrozenEstimator(mlp_net)
    params = dict(eps=0.05, step_size=0.01, n_iter=5, random_start=True, random_state=0)
    one = PGDTransformer(victim, n_restarts=1, **params).fit(X, y).generate(X, y)
    three = PGDTransformer(victim, n_restarts=3, **params).fit(X, y).generate(X, y)
    fooled_one = mlp_net.predict(one) != y
    fooled_three = mlp_net.predict(three) != y
    # the first restart is the same draw, so every sample fooled once stays fooled
    assert np.all(fooled_three[fooled_one])
    assert fooled_three.sum() >= fooled_one.sum()


def test_targeted_pgd_reaches_the_target(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    target = (y + 3) % 10
    attack = PGDTransformer(FrozenEstimator(mlp_net), eps=0.3, step_size=0.02, n_iter=30,
                            targeted=True).fit(X, y)
    assert np.mean(mlp_net.predict(attack.generate(X, target)) == target) > 0.9


def test_zero_iterations_without_random_start_is_identity():
    X = np.random.RandomState(0).rand(8, 6).astype(np.float32)
    y = np.arange(8) % 3
    module = torch.nn.Linear(6, 3)
    np.testing.assert_array_equal(PGDTransformer(module, n_iter=0).fit(X, y).generate(X, y), X)
