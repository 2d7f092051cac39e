import torch

from skrobust.attacks import functional as F


def test_project_linf_and_l2():
    x0 = torch.full((4, 10), 0.5)
    x = x0 + torch.linspace(-1, 1, 40).view(4, 10)
    linf = F.project(x, x0, 0.1, "inf", 0.0, 1.0)
    assert (linf - x0).abs().max() <= 0.1 + 1e-7
    l2 = F.project(x, x0, 0.3, 2)
    assert torch.all((l2 - x0).norm(dim=1) <= 0.3 + 1e-6)
    inside = x0 + 0.01
    assert torch.equal(F.project(inside, x0, 0.3, 2), inside)


def test_random_init_stays_in_the_ball():
    x0 = torch.full((200, 16), 0.5)
    g = torch.Generator().manual_seed(0)
    for norm, eps in (("inf", 0.2), (2, 0.4)):
        x = F.random_init(x0, eps, norm, g)
        size = (x - x0).abs().amax(1) if norm == "inf" else (x - x0).norm(dim=1)
        assert torch.all(size <= eps + 1e-6)
        assert size.mean() > eps / 2  # spread over the ball, not collapsed at the centre


def test_ascent_direction_has_unit_norm():
    grad = torch.randn(5, 7)
    assert torch.allclose(F.ascent_direction(grad, 2).norm(dim=1), torch.ones(5))
    assert torch.equal(F.ascent_direction(grad, "inf"), grad.sign())
    zero = torch.zeros(2, 7)
    assert torch.equal(F.ascent_direction(zero, 2), zero)


def test_input_gradient_leaves_parameter_gradients_alone():
    module = torch.nn.Linear(3, 2)
    x = torch.rand(4, 3)
    grad, logits = F.input_gradient(module, x, torch.tensor([0, 1, 0, 1]))
    assert grad.shape == x.shape and logits.shape == (4, 2)
    assert module.weight.grad is None
    assert not x.requires_grad


def test_targeted_loss_is_negated():
    logits = torch.randn(3, 4)
    y = torch.tensor([0, 1, 2])
    assert torch.allclose(F.attack_loss(logits, y, targeted=True), -F.attack_loss(logits, y))
