import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from skrobust.attacks import FABTransformer, functional
from skrobust.attacks._functional_fab import boundary_projection, fab

from .._models import Linear, Scale, image_case

DOUBLE = torch.float64


def _lp_linf(t, w, c, lo, hi):
    """min ||d||_inf s.t. c + w.d = 0, lo <= t + d <= hi, as a linear program."""
    n_dims = len(t)
    cost = np.r_[np.zeros(n_dims), 1.0]
    eye = np.eye(n_dims)
    a_ub = np.r_[np.c_[eye, -np.ones(n_dims)], np.c_[-eye, -np.ones(n_dims)]]
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * n_dims), A_eq=np.r_[w, 0.0][None],
                  b_eq=[-c], bounds=[(lo[i] - t[i], hi[i] - t[i]) for i in range(n_dims)]
                  + [(0, None)])
    return res.fun if res.status == 0 else None


def _l2_box(t, w, c, lo, hi):
    """min ||d||_2 s.t. c + w.d = 0 in the box: bisection on the KKT multiplier."""
    sign = 1.0 if c >= 0 else -1.0
    w, c = w * sign, abs(c)

    def d_of(mu):
        return np.clip(-mu * w, lo - t, hi - t)

    if c + w @ d_of(1e12) > 0:
        return None
    low, high = 0.0, 1e12
    for _ in range(400):
        mid = (low + high) / 2
        low, high = (mid, high) if c + w @ d_of(mid) > 0 else (low, mid)
    return float(np.linalg.norm(d_of(high)))


@pytest.mark.parametrize("norm", ["inf", 2])
def test_boundary_projection_is_the_exact_box_constrained_minimum(norm):
    gen = torch.Generator().manual_seed(0)
    n, n_dims = 40, 7
    t = torch.rand(n, n_dims, generator=gen, dtype=DOUBLE)
    w = torch.randn(n, n_dims, generator=gen, dtype=DOUBLE)
    w[:, 0] = 0  # a coordinate the hyperplane ignores never moves
    c = 1.5 * torch.randn(n, generator=gen, dtype=DOUBLE)
    lo, hi = torch.zeros_like(t), torch.ones_like(t)
    d = boundary_projection(t, w, c, norm, lo, hi)
    assert torch.all(d[:, 0] == 0)
    assert torch.all(t + d >= -1e-12) and torch.all(t + d <= 1 + 1e-12)
    n_reachable = 0
    for i in range(n):
        args = (t[i].numpy(), w[i].numpy(), float(c[i]), lo[i].numpy(), hi[i].numpy())
        best = _lp_linf(*args) if norm == "inf" else _l2_box(*args)
        if best is None:  # the box keeps the hyperplane out of reach: go to the bounds
            corner = np.where(np.sign(c[i].item()) * w[i].numpy() > 0, -t[i].numpy(),
                              1 - t[i].numpy())
            np.testing.assert_allclose(d[i].numpy(), np.where(w[i].numpy() == 0, 0, corner))
            continue
        n_reachable += 1
        assert abs(float(c[i] + w[i] @ d[i])) < 1e-9  # on the hyperplane
        size = float(d[i].abs().max() if norm == "inf" else d[i].norm())
        assert size == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert 10 < n_reachable < n  # both cases were exercised


def test_boundary_projection_without_bounds_is_the_closed_form():
    gen = torch.Generator().manual_seed(1)
    t = torch.rand(20, 5, generator=gen, dtype=DOUBLE)
    w = torch.randn(20, 5, generator=gen, dtype=DOUBLE)
    c = torch.randn(20, generator=gen, dtype=DOUBLE)
    torch.testing.assert_close(boundary_projection(t, w, c, 2),
                               -w * (c / (w * w).sum(1))[:, None])
    torch.testing.assert_close(boundary_projection(t, w, c, "inf"),
                               -w.sign() * (c / w.abs().sum(1))[:, None])
    # a zero normal cannot be followed: no move, no NaN
    zero = boundary_projection(t[:2], torch.zeros(2, 5, dtype=DOUBLE), c[:2], 2)
    assert torch.equal(zero, torch.zeros(2, 5, dtype=DOUBLE))


def _binary_linear(n_features=6, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(n_features, 1)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("norm", ["inf", 2])
def test_finds_the_minimal_perturbation_of_a_linear_model(norm):
    # a linear binary model's boundary is a hyperplane: the smallest perturbation
    # is |f(x)| / ||a||_1 (Linf) or |f(x)| / ||a||_2 (L2), along -sign(a) or -a
    model = _binary_linear()
    a = model.weight.detach()[0]
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = model(x)[:, 0]
    y = (f > 0).long()
    dual = a.abs().sum() if norm == "inf" else a.norm()
    minimal = f.abs() / dual
    direction = -torch.sign(f)[:, None] * (a.sign() if norm == "inf" else a / a.norm())
    eps = float(minimal.median())
    x_adv = fab(model, x, y, eps=eps, norm=norm, n_iter=50, n_target_classes=None)
    delta = x_adv - x
    sizes = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    with torch.no_grad():
        fooled = (model(x_adv)[:, 0] > 0).long() != y
    # fooled where (and only where) the minimum is within eps; FAB approaches the
    # boundary from both sides and gets within 2 % of it
    assert torch.all(fooled[minimal <= eps / 1.02])
    assert torch.all(minimal[fooled] <= eps)
    assert torch.equal(x_adv[~fooled], x[~fooled])
    assert torch.all(sizes[fooled] >= minimal[fooled] * (1 - 1e-5))
    assert torch.all(sizes[fooled] <= eps)
    # along the minimal direction: the iterates never leave the line through x and
    # its projection onto the boundary
    torch.testing.assert_close(delta[fooled] / sizes[fooled, None], direction[fooled],
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_minimal_perturbation_inside_the_box(norm):
    # clean points near the box's faces: the minimal perturbation saturates some
    # coordinates; FAB's output is within 2 % of the box-constrained minimum
    model = _binary_linear(seed=3)
    a = model.weight.detach()[0].double()
    x = torch.rand(30, 6, generator=torch.Generator().manual_seed(4)).clamp(0.05, 0.95)
    with torch.no_grad():
        f = model(x)[:, 0]
    y = (f > 0).long()
    t = x.double()
    minimal = torch.tensor([
        (_lp_linf if norm == "inf" else _l2_box)(t[i].numpy(), a.numpy(), float(f[i]),
                                                 np.zeros(6), np.ones(6)) or np.inf
        for i in range(30)])
    reachable = torch.isfinite(minimal)
    eps = float(minimal[reachable].median())
    x_adv = fab(model, x, y, eps=eps, norm=norm, n_iter=100, n_target_classes=None,
                clip_min=0.0, clip_max=1.0)
    assert torch.all(x_adv >= 0) and torch.all(x_adv <= 1)
    with torch.no_grad():
        fooled = (model(x_adv)[:, 0] > 0).long() != y
    # fooled exactly where the minimum is within eps (up to FAB's 2 % approach)
    assert torch.all(minimal[fooled] <= eps + 1e-6)
    assert torch.all(fooled[minimal <= eps / 1.02])


def test_is_invariant_to_rescaling_the_logits():
    # FAB's projections see c / ||w||: logits x 1000 (a saturated softmax) change nothing
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).eval()
    big = nn.Sequential(model, Scale(1000.0)).eval()
    x = torch.rand(60, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(1)
    kwargs = dict(eps=0.3, norm="inf", n_iter=20, clip_min=0.0, clip_max=1.0)
    plain, scaled = fab(model, x, y, **kwargs), fab(big, x, y, **kwargs)
    with torch.no_grad():
        fooled_plain = model(plain).argmax(1) != y
        fooled_scaled = model(scaled).argmax(1) != y
    assert fooled_plain.sum() > 5
    assert torch.equal(fooled_plain, fooled_scaled)



def _fooled_within(model, x, x_adv, y, eps, norm):
    size = (x_adv - x).flatten(1).norm(p=float("inf") if norm == "inf" else 2, dim=1)
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y) & (size <= eps * (1 + 1e-6))


@pytest.mark.parametrize("norm", ["inf", 2])
@pytest.mark.parametrize("targets", [9, None])
def test_fools_the_same_images_as_torchattacks(norm, targets):
    # torchattacks ports AutoAttack's FAB; without restarts both are deterministic,
    # so the images fooled within eps must be the same, image by image
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = image_case(100)
    eps = 0.15 if norm == "inf" else 1.0
    ref = torchattacks.FAB(model, norm="Linf" if norm == "inf" else "L2", eps=eps, steps=20,
                           multi_targeted=targets is not None, n_classes=10)
    theirs = _fooled_within(model, x, ref(x, y), y, eps, norm)
    x_adv = fab(model, x, y, eps=eps, norm=norm, n_iter=20, n_target_classes=targets,
                clip_min=0.0, clip_max=1.0)
    ours = _fooled_within(model, x, x_adv, y, eps, norm)
    assert 10 < int(theirs.sum()) < len(x)
    assert torch.equal(ours, theirs)
    # everything not fooled comes back unchanged, with the input's shape
    assert x_adv.shape == x.shape and torch.equal(x_adv[~ours], x[~ours])


def test_targeted_reaches_the_targets():
    model = Linear(n_features=6, n_classes=4, seed=0).eval()
    x = torch.rand(40, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model(x).argmax(1)
    target = (pred + 1) % 4
    for norm in ("inf", 2):
        x_adv = fab(model, x, target, eps=10.0, norm=norm, targeted=True,
                    n_target_classes=None, n_iter=30)
        with torch.no_grad():
            reached = model(x_adv).argmax(1) == target
        # a target squeezed between two competing classes can stay out of reach
        # (FAB projects onto one boundary at a time); those come back unchanged
        assert reached.float().mean() >= 0.9
        assert torch.equal(x_adv[~reached], x[~reached])
    with pytest.raises(ValueError, match="n_target_classes"):
        fab(model, x, target, eps=1.0, targeted=True, n_target_classes=3)


def test_functional_exports():
    assert functional.fab is fab
    assert functional.boundary_projection is boundary_projection


@pytest.fixture(scope="module")
def victim(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    return FrozenEstimator(mlp_net), X[:60], y[:60]


@pytest.mark.parametrize("norm,eps", [("inf", 0.1), (2, 1.0)])
def test_transformer_respects_eps_and_the_box(victim, norm, eps):
    estimator, X, y = victim
    attack = FABTransformer(estimator, eps=eps, norm=norm, n_iter=20).fit(X, y)
    X_adv = attack.generate(X, y)
    assert X_adv.shape == X.shape and X_adv.dtype == X.dtype
    assert X_adv.min() >= 0.0 and X_adv.max() <= 1.0
    delta = (X_adv - X).astype(np.float64)
    sizes = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert sizes.max() <= eps
    clean = estimator.predict(X) == y
    robust = estimator.predict(X_adv.astype(np.float32)) == y
    assert robust.mean() < clean.mean() - 0.2  # it does attack
    assert not np.any(robust & ~clean)


def test_transformer_eps_zero_is_identity_and_input_untouched(victim):
    estimator, X, y = victim
    X_copy, y_copy = X.copy(), y.copy()
    attack = FABTransformer(estimator, eps=0.0, n_iter=5).fit(X, y)
    X_adv = attack.generate(X, y)
    np.testing.assert_allclose(X_adv, X, atol=1e-7)
    attack.set_params(eps=0.1).fit(X, y).generate(X, y)
    assert np.array_equal(X, X_copy) and np.array_equal(y, y_copy)


def test_transformer_reproducible_with_restarts(victim):
    estimator, X, y = victim
    X = X[:20]
    y = y[:20]
    kwargs = dict(eps=0.06, n_iter=10, n_restarts=3, n_target_classes=2)
    first = FABTransformer(estimator, random_state=0, **kwargs).fit(X, y).generate(X, y)
    again = FABTransformer(estimator, random_state=0, **kwargs).fit(X, y).generate(X, y)
    assert np.array_equal(first, again)
    # restarts only add: at least the images the single run fooled
    single = FABTransformer(estimator, random_state=0, **{**kwargs, "n_restarts": 1})
    one = single.fit(X, y).generate(X, y)
    fooled = estimator.predict(first) != y
    assert np.all(fooled[estimator.predict(one) != y])


@pytest.mark.parametrize("norm,eps", [("inf", 0.08), (2, 1.0)])
def test_host_checks_every_few_iterations_give_the_same_result(victim, norm, eps,
                                                              monkeypatch):
    """On an accelerator FAB asks which rows leave every 5th iteration only; a row
    that succeeded in between rides along with its first point kept, and a later
    run of its sample may too (the fold keeps the first by rank): the same outputs
    as a check at every iteration (the CPU's schedule), here forced on the CPU."""
    from skrobust.attacks import _functional_fab

    estimator, X, y = victim
    attack = FABTransformer(estimator, eps=eps, norm=norm, n_iter=12, n_restarts=2,
                            n_target_classes=3, random_state=0).fit(X, y)
    expected = attack.generate(X, y)
    fooled = estimator.predict(expected) != y
    assert 0 < fooled.sum() < len(y)
    for period in (3, 5):
        monkeypatch.setattr(_functional_fab, "sync_period", lambda device, p=period: p)
        np.testing.assert_array_equal(attack.generate(X, y), expected)


def test_transformer_in_pipeline_and_clone(victim):
    estimator, X, y = victim
    attack = FABTransformer(estimator, eps=0.1, n_iter=5)
    pipe = make_pipeline(FunctionTransformer(), attack).fit(X, y)
    assert pipe.transform(X).shape == X.shape
    fitted = clone(attack).fit(X, y)
    np.testing.assert_array_equal(fitted.transform(X), clone(attack).fit(X, y).transform(X))


@pytest.mark.parametrize("params,match", [
    (dict(n_target_classes=3, targeted=True), "n_target_classes"),
    (dict(eta=0.0), "eta"),
    (dict(beta=0.0), "beta"),
    (dict(alpha_max=1.5), "alpha_max"),
    (dict(n_iter=0), "n_iter"),
    (dict(norm=1), "norm"),
])
def test_invalid_parameters(victim, params, match):
    estimator, X, y = victim
    with pytest.raises(ValueError, match=match):
        FABTransformer(estimator, **params).fit(X, y)
