"""The Square Attack: the paper's algorithm (Linf and L2), budget, queries, rows,
reproducibility, tabular search and tree ensembles."""

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import minmax_scale
from torch import nn

from skrobust.attacks import PGDTransformer, SquareAttackTransformer
from skrobust.attacks._square import resolve_image_shape
from skrobust.attacks.functional import counter_uniform, square, square_p

from .._models import Scale


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=150, n_features=8, n_informative=5,
                               random_state=0)
    return minmax_scale(X), y


class CountingModule(nn.Module):
    """Counts the rows the victim is asked about."""

    def __init__(self, module):
        super().__init__()
        self.module, self.rows = module, 0

    def forward(self, x):
        self.rows += len(x)
        return self.module(x)


@pytest.fixture(scope="module")
def digits_cnn():
    """A tiny CNN trained on the 8x8 digits (64 features: image_shape (1, 8, 8))."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 10))
    opt = torch.optim.Adam(cnn.parameters(), lr=1e-2)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(150):
        idx = torch.randint(0, len(X), (128,))
        opt.zero_grad()
        nn.functional.cross_entropy(cnn(X_t[idx]), y_t[idx]).backward()
        opt.step()
    cnn.eval()
    return cnn, X[:120], y[:120]


def accuracy(module, X, y):
    with torch.no_grad():
        return float(np.mean(module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
                             == y))


def test_linf_on_images_beats_random_noise_and_stays_in_the_ball(digits_cnn):
    cnn, X, y = digits_cnn
    eps = 0.2
    attack = SquareAttackTransformer(cnn, eps=eps, n_queries=200, random_state=0).fit(X, y)
    assert attack.image_shape_ == (1, 8, 8)
    X_adv = attack.generate(X, y)
    assert X_adv.dtype == X.dtype and X_adv.shape == X.shape
    delta = X_adv - X
    assert np.abs(delta).max() <= eps and X_adv.min() >= 0 and X_adv.max() <= 1
    # the Linf search stays on the vertices of the ball (clipped by the box)
    vertex = np.isclose(np.abs(delta), eps, atol=1e-6) | (X_adv == 0) | (X_adv == 1)
    unchanged = (delta == 0).all(axis=1)  # clean errors are returned as they are
    assert vertex[~unchanged].all() and unchanged.sum() < 0.1 * len(X)
    rng = np.random.default_rng(0)
    noise = np.clip(X + eps * rng.choice([-1, 1], size=X.shape), 0, 1).astype(np.float32)
    clean, noisy, robust = accuracy(cnn, X, y), accuracy(cnn, noise, y), accuracy(cnn, X_adv, y)
    assert clean > 0.9
    assert robust < noisy - 0.3


def test_linf_start_is_vertical_stripes(digits_cnn):
    cnn, X, y = digits_cnn
    attack = SquareAttackTransformer(cnn, eps=0.1, n_queries=1, clip_min=None, clip_max=None,
                                     random_state=0).fit(X, y)
    delta = (attack.generate(X, y) - X).reshape(-1, 8, 8)
    # the lowest margin seen is returned: the start, or the clean input when lower
    standing = np.abs(delta).max(axis=(1, 2)) > 0
    assert standing.sum() > 30
    np.testing.assert_allclose(np.abs(delta[standing]), 0.1, atol=1e-6)
    # one sign per column: every column is constant
    np.testing.assert_array_equal(np.sign(delta[standing]),
                                  np.sign(delta[standing][:, :1, :]).repeat(8, axis=1))


def test_l2_stays_in_the_ball_and_beats_random_noise(digits_cnn):
    cnn, X, y = digits_cnn
    eps = 1.5
    attack = SquareAttackTransformer(cnn, eps=eps, norm=2, n_queries=200,
                                     random_state=0).fit(X, y)
    X_adv = attack.generate(X, y)
    norms = np.linalg.norm((X_adv - X).astype(np.float64), axis=1)
    assert norms.max() <= eps and X_adv.min() >= 0 and X_adv.max() <= 1
    assert np.median(norms) > 0.5 * eps  # the search uses the budget
    rng = np.random.default_rng(0)
    noise = rng.normal(size=X.shape)
    noise = np.clip(X + eps * noise / np.linalg.norm(noise, axis=1, keepdims=True), 0, 1)
    assert accuracy(cnn, X_adv, y) < accuracy(cnn, noise.astype(np.float32), y) - 0.2


@pytest.mark.parametrize("norm", ["inf", 2])
def test_query_budget_and_only_standing_samples_are_queried(norm):
    torch.manual_seed(0)
    x = torch.rand(30, 36, dtype=torch.float64)
    calls = []
    fooled_at_start = torch.arange(30) < 10
    w = torch.randn(36, dtype=torch.float64)

    def margin_fn(x_rows, rows):
        calls.append(rows.clone())
        base = torch.where(fooled_at_start[rows], -1.0, 1.0).double()
        return base + 1e-3 * (x_rows @ w)  # never fooled: the margin stays > 0

    n_queries, n_restarts = 25, 2
    eps = 0.1 if norm == "inf" else 1.0
    _, queries = square(margin_fn, x, eps=eps, n_queries=n_queries, norm=norm,
                        keys=torch.arange(30), image_shape=(1, 6, 6),
                        n_restarts=n_restarts, clip_min=0.0, clip_max=1.0)
    counted = torch.bincount(torch.cat(calls), minlength=30)
    np.testing.assert_array_equal(counted.numpy(), queries.numpy())
    assert (counted[:10] == 1).all()  # clean errors: only the clean query
    assert (counted[10:] == 1 + n_restarts * n_queries).all()


def _linear_margin(n=24, d=36, n_classes=5, seed=0):
    """A linear classifier's margin on random rows: most are fooled mid-search."""
    g = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.6 * torch.rand(n, d, generator=g, dtype=torch.float64)
    w = 0.3 * torch.randn(d, n_classes, generator=g, dtype=torch.float64)
    y = (x @ w).argmax(1)

    def margin_fn(x_rows, rows):
        scores = x_rows @ w
        own = scores.gather(1, y[rows][:, None])[:, 0]
        return own - scores.scatter(1, y[rows][:, None], -torch.inf).amax(1)
    return x, margin_fn


SEARCHES = {"linf": dict(norm="inf", eps=0.08, image_shape=(1, 6, 6)),
            "linf-tabular": dict(norm="inf", eps=0.08, image_shape=None),
            "l2": dict(norm=2, eps=0.5, image_shape=(1, 6, 6))}


@pytest.mark.parametrize("case", sorted(SEARCHES))
def test_queries_without_host_checks_give_the_same_search(case):
    """On an accelerator the standing rows are gathered every 5th query only (no host
    synchronisation in between); rows fooled in between ride along without changing:
    the points, margins and query counts are those of a check at every query."""
    x, margin_fn = _linear_margin()
    kwargs = dict(n_queries=60, keys=torch.arange(24) * 7919, n_restarts=2, clip_min=0.0,
                  clip_max=1.0, **SEARCHES[case])
    every, q_every = square(margin_fn, x, check_every=1, **kwargs)
    margins = margin_fn(every, torch.arange(24))
    assert 0 < int((margins < 0).sum()) < 24  # fooled at various queries, some never
    assert len(set(q_every.tolist())) > 5
    for check_every in (3, 5):
        x_adv, queries = square(margin_fn, x, check_every=check_every, **kwargs)
        assert torch.equal(x_adv, every) and torch.equal(queries, q_every)


def test_host_synchronisations_only_at_checks():
    x, margin_fn = _linear_margin()
    x = x.clamp(0.45, 0.55)  # far from the boundary: every row stands to the end

    def syncs(check_every, n_queries):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
            square(margin_fn, x, eps=0.01, n_queries=n_queries, keys=torch.arange(24),
                   image_shape=(1, 6, 6), clip_min=0.0, clip_max=1.0,
                   check_every=check_every)
        return sum(e.count for e in p.key_averages()
                   if e.key in ("aten::nonzero", "aten::_local_scalar_dense", "aten::item"))

    # the synchronisations that 60 more queries add: at every query (the standing
    # rows; the rows whose window would not change), or at every 5th
    assert syncs(1, 120) - syncs(1, 60) >= 60
    assert syncs(5, 120) - syncs(5, 60) == 60 // 5


def test_forward_calls_of_the_transformer_respect_the_budget(digits_cnn):
    cnn, X, y = digits_cnn
    counting = CountingModule(cnn)
    attack = SquareAttackTransformer(counting, eps=0.3, n_queries=40, n_restarts=2,
                                     random_state=0).fit(X, y)
    counting.rows = 0
    X_adv = attack.generate(X, y)
    assert counting.rows <= len(X) * (1 + 2 * 40)
    # samples stop being queried once fooled: far fewer rows than the full budget
    assert counting.rows < 0.5 * len(X) * (1 + 2 * 40)
    assert accuracy(cnn, X_adv, y) < accuracy(cnn, X, y)


def test_reproducible_and_rows_independent(digits_cnn):
    cnn, X, y = digits_cnn
    attack = SquareAttackTransformer(cnn, eps=0.15, n_queries=30, random_state=1).fit(X, y)
    full = attack.generate(X, y)
    np.testing.assert_array_equal(full, attack.generate(X, y))
    rows = [5, 17, 3, 90]
    np.testing.assert_allclose(attack.generate(X[rows], y[rows]), full[rows], atol=1e-6)
    other = attack.set_params(random_state=2).fit(X, y).generate(X, y)
    assert not np.array_equal(other, full)
    state = torch.get_rng_state()
    attack.generate(X[:5], y[:5])
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched


def test_counter_uniform_is_uniform_and_keyed():
    u = counter_uniform(torch.arange(4000), (0, 1), 8)
    assert u.min() >= 0 and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert torch.equal(counter_uniform(torch.tensor([7, 3]), (1, 2), 5)[1],
                       counter_uniform(torch.tensor([3]), (1, 2), 5)[0])
    assert not torch.equal(counter_uniform(torch.tensor([3]), (1, 2), 5),
                           counter_uniform(torch.tensor([3]), (1, 3), 5))


def test_image_shape_resolution():
    assert resolve_image_shape("auto", 784) == (1, 28, 28)
    assert resolve_image_shape("auto", 30) is None
    assert resolve_image_shape("auto", 784, constrained=True) is None
    assert resolve_image_shape((28, 28), 784) == (1, 28, 28)
    assert resolve_image_shape((3, 4, 5), 60) == (3, 4, 5)
    assert resolve_image_shape(None, 784) is None
    with pytest.raises(ValueError, match="holds 780 values but X has 784"):
        resolve_image_shape((30, 26), 784)
    with pytest.raises(ValueError, match="tuple of positive ints"):
        resolve_image_shape((0, 28), 784)


def test_bad_parameters(problem):
    X, y = problem
    with pytest.raises(ValueError, match="n_queries"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), n_queries=0).fit(X, y)
    with pytest.raises(ValueError, match="p_init"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), p_init=0.0).fit(X, y)
    with pytest.raises(ValueError, match="n_restarts"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), n_restarts=0).fit(X, y)
    with pytest.raises(ValueError, match="norm=2 needs images"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), norm=2).fit(X, y)
    with pytest.raises(ValueError, match="norm=2 does not take the feature constraints"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), norm=2, image_shape=(2, 4),
                                immutable=[0]).fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        SquareAttackTransformer(torch.nn.Linear(8, 2), image_shape=(3, 3)).fit(X, y)


def test_p_schedule():
    assert square_p(0.8, 0, 1000) == 0.8
    assert square_p(0.8, 999, 1000) == pytest.approx(0.8 / 512)
    values = [square_p(0.8, i, 5000) for i in range(5000)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert square_p(0.8, 10, 10000) == 0.8 and square_p(0.8, 11, 10000) == 0.4


# --- tabular data: random feature subsets, constraints, score-only victims --------------

def test_budget_bounds_and_success_on_a_forest(problem):
    X, y = problem
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    attack = SquareAttackTransformer(FrozenEstimator(forest), eps=0.15, n_queries=60,
                                     random_state=0).fit(X, y)
    assert attack.image_shape_ is None
    X_adv = attack.generate(X, y)
    assert X_adv.dtype == X.dtype and X_adv.shape == X.shape
    assert np.abs(X_adv - X).max() <= 0.15 + 1e-12
    assert X_adv.min() >= 0 and X_adv.max() <= 1
    clean, robust = np.mean(forest.predict(X) == y), np.mean(forest.predict(X_adv) == y)
    assert robust < clean - 0.2


def test_square_is_about_as_strong_as_pgd_on_a_linear_model(problem):
    X, y = problem
    logreg = FrozenEstimator(LogisticRegression().fit(X, y))
    eps = 0.08
    square_attack = SquareAttackTransformer(logreg, eps=eps, n_queries=200, random_state=0)
    pgd = PGDTransformer(logreg, eps=eps, step_size=eps / 4, n_iter=20)
    acc_square = np.mean(logreg.predict(square_attack.fit(X, y).generate(X, y)) == y)
    acc_pgd = np.mean(logreg.predict(pgd.fit(X, y).generate(X, y)) == y)
    acc_clean = np.mean(logreg.predict(X) == y)
    assert acc_pgd < acc_clean and acc_square < acc_clean
    assert acc_square <= acc_pgd + 0.05  # the linear worst case is a corner: found by both


def test_tabular_rows_are_independent_and_reproducible(problem):
    X, y = problem
    forest = FrozenEstimator(RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y))
    attack = SquareAttackTransformer(forest, eps=0.1, n_queries=30, random_state=3).fit(X, y)
    full = attack.transform(X)
    np.testing.assert_array_equal(full, attack.transform(X))
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(attack.transform(X[order]), full[order])
    np.testing.assert_array_equal(attack.set_params(batch_size=7).transform(X[:40]), full[:40])
    other = attack.set_params(random_state=4).fit(X, y).transform(X)
    assert not np.array_equal(other, full)


def test_constraints_and_targeted(problem):
    X, y = problem
    X = X.copy()
    X[:, 0] = np.round(X[:, 0] * 5)
    logreg = FrozenEstimator(LogisticRegression().fit(X, y))
    attack = SquareAttackTransformer(logreg, eps=0.5, eps_scale="std", immutable=[2],
                                     integer_features=[0], clip_min="data", clip_max="data",
                                     n_queries=40, random_state=0).fit(X, y)
    X_adv = attack.generate(X, y)
    np.testing.assert_array_equal(X_adv[:, 2], X[:, 2])
    np.testing.assert_array_equal(X_adv[:, 0], np.round(X_adv[:, 0]))
    assert np.all(np.abs(X_adv - X) <= 0.5 * X.std(0) + 1e-12)
    assert np.all(X_adv >= X.min(0)) and np.all(X_adv <= X.max(0))
    target = 1 - y
    targeted = attack.set_params(targeted=True, n_queries=100).generate(X, target)
    assert np.mean(logreg.predict(targeted) == target) > np.mean(logreg.predict(X) == target)


def test_torch_module_victim_and_label_encoding(problem):
    X, y = problem
    torch.manual_seed(0)
    module = torch.nn.Linear(8, 2)
    attack = SquareAttackTransformer(module, eps=0.3, n_queries=20, random_state=0)
    X_adv = attack.fit(X, y).transform(X)
    with torch.no_grad():
        before = module(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
        after = module(torch.as_tensor(X_adv, dtype=torch.float32)).argmax(1).numpy()
    assert np.mean(before != after) > 0.2
    labels = np.array(["no", "yes"])[y]
    forest = RandomForestClassifier(n_estimators=5, random_state=0)
    fitted = SquareAttackTransformer(forest, n_queries=5).fit(X, labels)
    assert fitted.estimator_ is not forest and fitted.generate(X, labels).shape == X.shape
    with pytest.raises(ValueError, match="does not know"):
        fitted.generate(X, np.array(["maybe"] * len(X)))


def test_a_pipeline_ending_in_a_skorch_net_gets_float32(problem):
    # skorch does not convert dtypes: the black-box search queries in float64 and
    # must hand such a pipeline float32, as its own predict would need
    from skorch import NeuralNetClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests._models import Linear

    X, y = problem
    net = NeuralNetClassifier(Linear, module__n_features=8, module__n_classes=2,
                              max_epochs=3, lr=0.1, train_split=None, verbose=0)
    pipe = make_pipeline(StandardScaler(), net).fit(X.astype(np.float32), y)
    X_adv = SquareAttackTransformer(FrozenEstimator(pipe), eps=0.3, n_queries=30,
                                    image_shape=None, random_state=0).fit(X, y).transform(X)
    assert X_adv.dtype == X.dtype and np.abs(X_adv - X).max() <= 0.3
    # transform attacks the pipeline's own predictions: many of them change
    clean = pipe.predict(X.astype(np.float32))
    assert np.mean(pipe.predict(X_adv.astype(np.float32)) != clean) > 0.2


class _ConfidentProba(ClassifierMixin, BaseEstimator):
    """A score-only victim: the float64 softmax of a torch module's logits."""

    def __init__(self, module=None):
        self.module = module

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        with torch.no_grad():
            logits = self.module(torch.as_tensor(X, dtype=torch.float32)).double()
        return torch.softmax(logits, dim=1).numpy()


def test_confident_score_only_victims_do_not_blind_the_search(digits_cnn):
    """Margins of log-probabilities floored at 1e-12 were all equal above 27.6 (a
    logit gap): the search accepted nothing and left confident samples standing.
    Queried through predict_proba, the victim is fooled as through its logits."""
    cnn, X, y = digits_cnn
    confident = nn.Sequential(cnn, Scale(8.0)).eval()  # logit gaps of 30 to 100+
    with torch.no_grad():
        top2 = confident(torch.as_tensor(X)).topk(2, dim=1).values
    assert (top2[:, 0] - top2[:, 1] > 27.6).float().mean() > 0.5
    kwargs = dict(eps=0.15, n_queries=300, image_shape=(1, 8, 8), random_state=0)
    through_logits = SquareAttackTransformer(confident, **kwargs).fit(X, y).transform(X)
    black_box = FrozenEstimator(_ConfidentProba(confident).fit(X, y))
    through_proba = SquareAttackTransformer(black_box, **kwargs).fit(X, y).transform(X)
    acc_logits = accuracy(confident, through_logits, y)
    acc_proba = accuracy(confident, through_proba, y)
    assert acc_logits < accuracy(confident, X, y) - 0.5
    assert acc_proba <= acc_logits + 0.02  # with the 1e-12 floor: 0.38 against 0.18



def test_a_net_trained_by_skrobust_is_queried_through_its_logits(problem):
    """AdversarialTrainer and SuppressPrivacyClassifier predict the softmax of their
    torch model: the search queries the logits, as for the bare module."""
    from skrobust.defenses import AdversarialTrainer

    X, y = problem
    X = X.astype(np.float32)
    trainer = AdversarialTrainer(replace_ratio=0.0, random_state=0).fit(X, y)
    kwargs = dict(eps=0.2, n_queries=40, image_shape=None, random_state=0)
    attack = SquareAttackTransformer(FrozenEstimator(trainer), **kwargs).fit(X, y)
    assert attack._uses_torch()
    module = trainer.estimator_.module_
    on_module = SquareAttackTransformer(module, **kwargs).fit(X, y).transform(X)
    np.testing.assert_array_equal(attack.transform(X), on_module)
