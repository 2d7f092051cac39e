"""Guarantees shared by every attack transformer (attacks/_base.py)."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.models._skorch import default_net

from .._models import Linear

RNG = np.random.RandomState(0)
X_UNIT = RNG.rand(40, 6)
Y3 = RNG.randint(0, 3, 40)


def make(kind, victim, **params):
    cls = {"fgsm": FGSMTransformer, "pgd": PGDTransformer}[kind]
    if kind == "pgd":
        params.setdefault("n_iter", 5)
        params.setdefault("step_size", 0.05)
    return cls(victim, **params)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["fgsm", "pgd"]),
    eps=st.floats(0.0, 0.6),
    norm=st.sampled_from(["inf", 2]),
    dtype=st.sampled_from([np.float32, np.float64]),
    low=st.floats(0.0, 0.3),
    width=st.floats(0.3, 0.7),
    random_start=st.booleans(),
)
def test_output_in_ball_and_box(kind, eps, norm, dtype, low, width, random_start):
    X = (low + width * X_UNIT).astype(dtype)
    X_before = X.copy()
    params = dict(eps=eps, norm=norm, clip_min=low, clip_max=low + width, random_state=0)
    if kind == "pgd":
        params["random_start"] = random_start
    attack = make(kind, Linear(), **params).fit(X, Y3)
    X_adv = attack.generate(X, Y3)
    assert X_adv.shape == X.shape and X_adv.dtype == X.dtype
    np.testing.assert_array_equal(X, X_before)
    assert X_adv.min() >= low and X_adv.max() <= low + width
    delta = (X_adv - X).astype(np.float64)
    size = np.linalg.norm(delta, axis=1) if norm == 2 else np.abs(delta).max(axis=1)
    assert np.all(size <= eps * (1 + 1e-6) + 1e-7)


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", ["inf", 2])
def test_eps_zero_is_identity(kind, norm):
    X = X_UNIT.astype(np.float32)
    X_adv = make(kind, Linear(), eps=0.0, norm=norm).fit(X, Y3).generate(X, Y3)
    np.testing.assert_array_equal(X_adv, X)


def test_per_feature_bounds():
    X = X_UNIT * 0.5 + 0.25
    lo, hi = np.full(6, 0.2), np.linspace(0.8, 0.9, 6)
    X_adv = FGSMTransformer(Linear(), eps=0.5, clip_min=lo, clip_max=hi).fit(X, Y3).generate(X, Y3)
    assert np.all(X_adv >= lo) and np.all(X_adv <= hi)


def test_readonly_input_is_accepted_and_untouched():
    X = X_UNIT.astype(np.float32)
    X.setflags(write=False)
    X_adv = FGSMTransformer(Linear(), eps=0.1).fit(X, Y3).transform(X)
    assert not np.shares_memory(X_adv, X)


class Recorder(nn.Module):
    """Linear victim with dropout that records the largest batch it sees."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.drop = nn.Dropout(0.5)
        self.largest = 0

    def forward(self, x):
        self.largest = max(self.largest, len(x))
        return self.fc(self.drop(x))


def test_memory_bounded_by_batch_size_mode_and_grads_restored():
    module = Recorder().train()
    for p in module.parameters():
        p.grad = torch.full_like(p, 7.0)
    attack = PGDTransformer(module, eps=0.1, n_iter=3, batch_size=7).fit(X_UNIT, Y3)
    X_adv = attack.generate(X_UNIT, Y3)
    assert module.largest == 7
    assert module.training and module.drop.training
    for p in module.parameters():
        assert torch.all(p.grad == 7.0)
    # eval mode inside the attack: dropout off, so the output is deterministic
    np.testing.assert_array_equal(X_adv, attack.generate(X_UNIT, Y3))


def test_batch_size_does_not_change_the_result():
    X = X_UNIT.astype(np.float32)
    a = PGDTransformer(Linear(), eps=0.2, n_iter=5, batch_size=7).fit(X, Y3).generate(X, Y3)
    b = PGDTransformer(Linear(), eps=0.2, n_iter=5, batch_size=100).fit(X, Y3).generate(X, Y3)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_random_state_makes_random_starts_reproducible():
    X = X_UNIT.astype(np.float32)
    params = dict(eps=0.3, n_iter=1, step_size=0.0, random_start=True)
    first = PGDTransformer(Linear(), random_state=1, **params).fit(X, Y3).generate(X, Y3)
    again = PGDTransformer(Linear(), random_state=1, **params).fit(X, Y3).generate(X, Y3)
    other = PGDTransformer(Linear(), random_state=2, **params).fit(X, Y3).generate(X, Y3)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    victim = Linear()
    state = torch.random.get_rng_state()
    PGDTransformer(victim, random_state=1, **params).fit(X, Y3).generate(X, Y3)
    assert torch.equal(state, torch.random.get_rng_state()), "global torch RNG touched"


def test_default_victim_is_reproducible():
    X = X_UNIT.astype(np.float32)
    a = FGSMTransformer(random_state=0).fit_transform(X, Y3)
    b = FGSMTransformer(random_state=0).fit(X, Y3).transform(X)
    np.testing.assert_array_equal(a, b)


def test_progress_bar_only_when_verbose(capsys):
    X = X_UNIT.astype(np.float32)
    FGSMTransformer(Linear(), verbose=0).fit(X, Y3).transform(X)
    assert "FGSMTransformer" not in capsys.readouterr().err
    FGSMTransformer(Linear(), verbose=1, batch_size=10).fit(X, Y3).transform(X)
    assert "FGSMTransformer" in capsys.readouterr().err


def test_fitted_transformer_clones_and_pickles():
    X = X_UNIT.astype(np.float32)
    attack = PGDTransformer(eps=0.1, n_iter=3, random_state=0).fit(X, Y3)
    restored = pickle.loads(pickle.dumps(attack))
    np.testing.assert_array_equal(restored.transform(X), attack.transform(X))
    assert clone(attack).get_params()["eps"] == 0.1


def test_unfitted_skorch_victim_is_cloned_and_fitted():
    X = X_UNIT.astype(np.float32)
    net = default_net(max_epochs=2)
    attack = FGSMTransformer(net, random_state=0).fit(X, Y3 + 10)
    assert not hasattr(net, "module_"), "the user's net must not be fitted"
    np.testing.assert_array_equal(attack.classes_, [10, 11, 12])
    assert attack.generate(X, Y3 + 10).shape == X.shape


def test_labels_are_mapped_through_the_victim_classes():
    X = X_UNIT.astype(np.float32)
    attack = FGSMTransformer(random_state=0).fit(X, Y3 + 10)
    with pytest.raises(ValueError, match="labels .* victim does not know"):
        attack.generate(X, Y3)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(eps=-0.1), r"'eps' parameter of FGSMTransformer must be a float in the "
                         r"range \[0.0, inf\) or an array-like. Got -0.1"),
        (dict(eps=float("nan")), "'eps' parameter .* Got nan"),
        (dict(eps=float("inf")), "'eps' parameter .* Got inf"),
        (dict(eps=np.array([0.1, np.nan, 0, 0, 0, 0])), "eps must hold finite values"),
        (dict(clip_min=0.8, clip_max=0.2), "clip_min > clip_max"),
        (dict(clip_min=np.zeros(5)), r"clip_min has shape \(5,\).*\(6,\)"),
        (dict(norm=1), 'norm=1 is not supported; use norm="inf" or norm=2'),
        (dict(batch_size=0), r"'batch_size' parameter .* range \[1, inf\). Got 0"),
        (dict(targeted="yes"), "'targeted' parameter .* must be an instance of 'bool'"),
        (dict(device="gpu"), "device='gpu' is not a valid torch device"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        FGSMTransformer(Linear(), **params).fit(X_UNIT, Y3)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(step_size=-1.0), "step_size"),
        (dict(n_iter=-1), "n_iter"),
        (dict(n_restarts=0), "n_restarts"),
    ],
)
def test_bad_pgd_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        PGDTransformer(Linear(), **params).fit(X_UNIT, Y3)


def test_bad_input():
    attack = FGSMTransformer(Linear()).fit(X_UNIT, Y3)
    X_nan = X_UNIT.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attack.transform(X_nan)
    with pytest.raises(ValueError, match="X has 5 features, but FGSMTransformer is expecting 6"):
        attack.transform(X_UNIT[:, :5])
    with pytest.raises(ValueError, match="X has values above clip_max=1.0"):
        attack.transform(X_UNIT + 1)
    with pytest.raises(ValueError, match="X has values below clip_min=0.0"):
        attack.transform(X_UNIT - 1)
    with pytest.raises(ValueError, match="X has 40 samples but y has 39"):
        attack.generate(X_UNIT, Y3[:-1])


def test_unfitted_transformer_and_unfitted_frozen_victim():
    with pytest.raises(NotFittedError):
        FGSMTransformer(Linear()).transform(X_UNIT)
    with pytest.raises(NotFittedError, match="not fitted"):
        FGSMTransformer(FrozenEstimator(default_net())).fit(X_UNIT, Y3)


def test_non_differentiable_victim_is_rejected():
    forest = RandomForestClassifier(n_estimators=3).fit(X_UNIT, Y3)
    with pytest.raises(TypeError, match="RandomForestClassifier cannot be attacked.*skorch"):
        FGSMTransformer(forest).fit(X_UNIT, Y3)
    with pytest.raises(TypeError, match="Cannot attack a RandomForestClassifier"):
        FGSMTransformer(FrozenEstimator(forest)).fit(X_UNIT, Y3)


def test_one_class_cannot_train_a_victim():
    with pytest.raises(ValueError, match="1 class"):
        FGSMTransformer().fit(X_UNIT, np.zeros(40))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_victim_is_attacked_on_its_device():
    module = Linear().to("cuda")
    X = X_UNIT.astype(np.float32)
    X_adv = PGDTransformer(module, eps=0.1, n_iter=3).fit(X, Y3).generate(X, Y3)
    X_cpu = PGDTransformer(Linear(), eps=0.1, n_iter=3).fit(X, Y3).generate(X, Y3)
    np.testing.assert_allclose(X_adv, X_cpu, atol=1e-5)


def test_float64_linf_budget_is_exact():
    X = np.random.RandomState(3).rand(500, 6) * 0.6 + 0.2
    y = np.arange(500) % 3
    for eps in (0.07, 0.1, 0.3):
        X_adv = FGSMTransformer(Linear(), eps=eps).fit(X, y).generate(X, y)
        assert np.abs(X_adv - X).max() <= eps


def test_feature_names_and_pandas_output_through_a_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    columns = [f"f{i}" for i in range(6)]
    X = pd.DataFrame(X_UNIT, columns=columns, index=np.arange(100, 140))
    attack = FGSMTransformer(Linear(), eps=0.05)
    np.testing.assert_array_equal(attack.fit(X_UNIT, Y3).get_feature_names_out(),
                                  [f"x{i}" for i in range(6)])
    pipe = make_pipeline(attack, LogisticRegression()).set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        pipe.fit(X, Y3).predict(X)
    np.testing.assert_array_equal(pipe[:-1].get_feature_names_out(), columns)
    fitted = pipe[0]
    for X_adv in (fitted.transform(X), fitted.generate(X, Y3)):
        assert isinstance(X_adv, pd.DataFrame)
        assert list(X_adv.columns) == columns and list(X_adv.index) == list(X.index)
        assert np.abs(X_adv.to_numpy() - X_UNIT).max() <= 0.05 + 1e-9
    assert isinstance(fitted.set_output(transform="default").generate(X, Y3), np.ndarray)
