import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score

from skrobust.attacks import FGSMTransformer
from skrobust.metrics import attack_success_rate

from .._models import Linear


def test_fgsm_matches_closed_form_on_a_linear_model():
    module = Linear(n_features=6, n_classes=3)
    X = np.random.RandomState(1).rand(50, 6).astype(np.float32) * 0.6 + 0.2
    y = np.random.RandomState(2).randint(0, 3, 50)
    X_adv = FGSMTransformer(module, eps=0.1).fit(X, y).generate(X, y)
    W = module.fc.weight.detach().numpy().astype(np.float64)
    logits = X @ W.T + module.fc.bias.detach().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ W  # d CE / d x
    np.testing.assert_allclose(X_adv, X + 0.1 * np.sign(grad), atol=1e-6)


def test_fgsm_l2_step_has_length_eps():
    X = np.full((20, 6), 0.5, dtype=np.float32)
    y = np.arange(20) % 3
    X_adv = FGSMTransformer(Linear(), eps=0.2, norm=2).fit(X, y).generate(X, y)
    np.testing.assert_allclose(np.linalg.norm(X_adv - X, axis=1), 0.2, rtol=1e-5)


def test_fgsm_lowers_accuracy_of_a_trained_net(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    clean = accuracy_score(y, mlp_net.predict(X))
    X_adv = FGSMTransformer(FrozenEstimator(mlp_net), eps=0.15).fit(X, y).generate(X, y)
    adversarial = accuracy_score(y, mlp_net.predict(X_adv))
    assert clean > 0.85
    assert adversarial < clean - 0.4


def test_transform_attacks_the_victims_own_predictions(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    attack = FGSMTransformer(FrozenEstimator(mlp_net), eps=0.1).fit(X, y)
    np.testing.assert_array_equal(attack.transform(X), attack.generate(X, mlp_net.predict(X)))


def test_targeted_fgsm_moves_towards_the_target(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    target = (y + 1) % 10
    attack = FGSMTransformer(FrozenEstimator(mlp_net), eps=0.1, targeted=True).fit(X, y)
    before = attack_success_rate(target, mlp_net.predict(X))
    after = attack_success_rate(target, mlp_net.predict(attack.generate(X, target)))
    assert after > before + 0.05


def test_single_logit_binary_victim():
    module = torch.nn.Linear(4, 1)
    X = np.random.RandomState(0).rand(30, 4).astype(np.float32) * 0.6 + 0.2
    y = np.arange(30) % 2
    X_adv = FGSMTransformer(module, eps=0.1).fit(X, y).generate(X, y)
    # class 1 is "logit > 0": fooling pushes the logit down for y=1, up for y=0
    w_sign = np.sign(module.weight.detach().numpy().ravel())
    expected = X + 0.1 * np.where(y[:, None] == 1, -w_sign, w_sign)
    np.testing.assert_allclose(X_adv, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtype_follows_input(dtype):
    X = np.random.RandomState(0).rand(10, 6).astype(dtype)
    y = np.arange(10) % 3
    assert FGSMTransformer(Linear()).fit(X, y).transform(X).dtype == dtype
