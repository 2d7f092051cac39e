import warnings

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import APGDTransformer, FGSMTransformer, PGDTransformer
from skrobust.evaluation import (
    RobustnessWarning,
    check_black_box_weaker,
    check_deterministic,
    check_eps_zero,
    check_flat_scores,
    check_gradients,
    check_input_bounds,
    check_not_constant,
    check_iterative_stronger,
    check_monotonic_accuracy,
    check_training_mode,
    evaluate_robustness,
    run_sanity_checks,
    security_curve,
)

from ._robust_models import (
    AlwaysDropout,
    Rounding,
    bump_data,
    masking_model,
    non_monotonic_model,
)


@pytest.fixture(autouse=True)
def _short_escalation(monkeypatch):
    """The escalated Square Attack with a test-sized budget (masked models escalate)."""
    from skrobust.evaluation import _robustness

    monkeypatch.setattr(_robustness, "ESCALATED_SQUARE_QUERIES", 100)


@pytest.fixture(scope="module")
def data(mnist_small):
    _, _, X, y = mnist_small
    return X[:60], y[:60]


def _failed(checks):
    return {c.name.split(" (")[0] for c in checks if c.passed is False}


def test_sound_model_passes_every_check_quietly(mlp_net, data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        checks = run_sanity_checks(FrozenEstimator(mlp_net), X, y,
                                   attack=APGDTransformer(n_iter=5))
        module_checks = run_sanity_checks(mlp_net.module_.eval(), X, y)
        curve = security_curve(mlp_net, X, y, [0, 0.05, 0.1],
                               attack=[PGDTransformer(n_iter=10, step_size=0.02),
                                       FGSMTransformer()])
    assert [c.passed for c in checks] == [True] * 7
    assert all(c.passed for c in module_checks)
    assert _failed(curve.sanity_checks) == set()
    names = {c.name.split(" (")[0] for c in curve.sanity_checks}
    assert {"accuracy falls with eps", "iterative attacks beat FGSM"} <= names


def test_input_rounding_zeroes_gradients(mlp_net, data):
    X, y = data
    broken = Rounding(mlp_net.module_).eval()
    with pytest.warns(RobustnessWarning, match="gradients: 60 zero"):
        check = check_gradients(broken, X)
    assert check.passed is False
    with pytest.warns(RobustnessWarning, match="gradient masking"):
        result = evaluate_robustness(broken, X, y, eps=0.1,
                                     attacks=[PGDTransformer(n_iter=5, step_size=0.05)])
    assert "gradients" in _failed(result.sanity_checks)


def test_nan_gradients_are_caught():
    class Sqrt(nn.Module):
        def forward(self, x):
            return (x - 0.5).sqrt().nan_to_num(0.0)[:, :3]  # NaN gradient below 0.5

    X = np.full((10, 4), 0.2, dtype=np.float32)
    with pytest.warns(RobustnessWarning, match="10 NaN/inf"):
        assert check_gradients(Sqrt(), X).passed is False


def test_measured_verdicts_say_detail_and_advice_and_warn_at_the_caller():
    model = nn.Linear(4, 3).eval()
    _ = model.weight.data.mul_(1e5)  # a saturated softmax: flat cross-entropy
    X = np.random.RandomState(0).rand(20, 4).astype(np.float32)
    y = np.zeros(20, dtype=np.int64)
    with pytest.warns(RobustnessWarning) as record:
        failed = check_flat_scores(model, X, y)
    assert failed.passed is False
    detail, advice = failed.message.split(": ", 1)
    assert detail.endswith("cross-entropy input gradient") and advice.startswith("the scores")
    assert record[0].filename == __file__  # the caller's line, not the helper's
    assert check_gradients(model, X, warn=False).message.endswith("(0.0 %).")


def test_dropout_left_on_gives_stochastic_outputs(mlp_net, data):
    X, y = data
    broken = AlwaysDropout(mlp_net.module_).eval()
    with pytest.warns(RobustnessWarning, match="stochastic"):
        assert check_deterministic(broken, X).passed is False
    with pytest.warns(RobustnessWarning, match="eps=0"):
        assert check_eps_zero(broken, X, y, FGSMTransformer()).passed is False
    assert check_deterministic(mlp_net.module_.eval(), X).passed


def test_constant_model_is_caught(mlp_net, data):
    X, y = data

    class Constant(nn.Module):
        def forward(self, x):
            return x[:, :10] * 0 + torch.arange(10.0)  # always class 9

    with pytest.warns(RobustnessWarning, match="predicts 9 for 100 %"):
        assert check_not_constant(Constant().eval(), X, y).passed is False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_robustness(Constant().eval(), X, y, eps=0.1,
                                     attacks=[FGSMTransformer()])
    # a constant model also has zero input gradients: both checks speak up
    assert _failed(result.sanity_checks) >= {"not a constant prediction", "gradients"}
    assert {str(w.message).split(":")[0] for w in caught} >= {"not a constant prediction",
                                                               "gradients"}
    assert check_not_constant(mlp_net, X, y, warn=False).passed
    # a sound model of imbalanced data predicts its majority class often: not flagged
    y_imbalanced = np.full(100, 9)
    y_imbalanced[:2] = 0
    X_zero = np.zeros((100, 784), dtype=np.float32)
    assert check_not_constant(Constant(), X_zero, y_imbalanced, warn=False).passed


def test_training_mode_is_caught(data):
    X, _ = data
    model = nn.Sequential(nn.Linear(784, 10), nn.Dropout(0.5))
    with pytest.warns(RobustnessWarning, match="training mode"):
        assert check_training_mode(model).passed is False
    assert check_training_mode(model.eval(), warn=False).passed
    assert not model[1].training


def test_inputs_outside_bounds_warn_and_still_evaluate(mlp_net, data):
    X, y = data
    with pytest.warns(RobustnessWarning, match="outside the declared bounds"):
        assert check_input_bounds(X * 255).passed is False
    assert check_input_bounds(X * 255, clip_max=255.0, warn=False).passed
    assert check_input_bounds(X - 1, clip_min=None, clip_max=None, warn=False).passed
    with pytest.warns(RobustnessWarning, match="input bounds"):
        result = evaluate_robustness(mlp_net, X - 0.5, y, eps=0.05,
                                     attacks=[FGSMTransformer()])
    assert result.sanity_checks[0].passed is False
    assert np.abs(result.X_adv - (X - 0.5)).max() <= 0.05 + 1e-6


def test_accuracy_rising_with_eps_is_caught():
    X, y = bump_data()
    with pytest.warns(RobustnessWarning, match="rises as the budget grows"):
        curve = security_curve(non_monotonic_model(), X, y, [0, 0.15, 0.3],
                               attack=FGSMTransformer())
    np.testing.assert_array_equal(curve.accuracy, [1.0, 0.0, 1.0])
    assert "accuracy falls with eps" in _failed(curve.sanity_checks)
    assert check_monotonic_accuracy([0, 0.1, 0.2], [1.0, 0.5, 0.5], warn=False).passed
    # sorted by eps before checking
    assert check_monotonic_accuracy([0.2, 0, 0.1], [0.2, 1.0, 0.5], warn=False).passed


def test_iterative_attack_weaker_than_fgsm_is_caught():
    X, y = bump_data()
    attacks = [PGDTransformer(n_iter=20, step_size=0.01), FGSMTransformer()]
    with pytest.warns(RobustnessWarning, match="weaker than FGSM"):
        result = evaluate_robustness(masking_model(), X, y, eps=0.3, attacks=attacks)
    assert result.accuracy["PGD-20"] == 1.0 and result.robust_accuracy == 0.0
    assert "iterative attacks beat FGSM" in _failed(result.sanity_checks)
    # FGSM first: the iterative attacks never see its survivors, no verdict
    flipped = evaluate_robustness(masking_model(), X, y, eps=0.3, attacks=attacks[::-1])
    assert not any(c.name.startswith("iterative") for c in flipped.sanity_checks)


def test_black_box_check_fails_only_when_random_search_beats_the_gradients():
    # Square fooling most of what the gradient attacks left: masked or noisy gradients
    with pytest.warns(RobustnessWarning, match="Square fooled 57 of the 61"):
        failed = check_black_box_weaker(61, 57)
    assert failed.passed is False and failed.name.startswith("black-box")
    # a few, or a small share, is what random search adds on a sound model
    assert check_black_box_weaker(61, 1, warn=False).passed
    assert check_black_box_weaker(400, 30, warn=False).passed
    # a long gradient attack after it that succeeds as often shows working gradients
    assert check_black_box_weaker(10, 4, gradient_after=(6, 3), warn=False).passed
    # a larger share on a handful of samples is chance (Fisher p = 0.35 and 0.12)
    assert check_black_box_weaker(10, 4, gradient_after=(6, 1), warn=False).passed
    assert check_black_box_weaker(10, 4, gradient_after=(6, 0), warn=False).passed
    failed = check_black_box_weaker(20, 12, gradient_after=(8, 0), warn=False)
    assert not failed.passed and "p = 0.00414" in failed.message
    assert not check_black_box_weaker(61, 57, gradient_after=(4, 0), warn=False).passed
    with pytest.raises(ValueError, match="significance=1.5 must be in"):
        check_black_box_weaker(10, 4, gradient_after=(6, 0), significance=1.5)
    assert not check_black_box_weaker(61, 57, gradient_after=(0, 0), warn=False).passed


def test_a_black_box_win_escalates(monkeypatch, mlp_net, data):
    # the check's verdict feeds the escalation like the other masking checks
    from skrobust.attacks import SquareAttackTransformer
    from skrobust.evaluation import _robustness

    def always_failing(*args, **kwargs):
        return check_black_box_weaker(10, 9, warn=kwargs.get("warn", True))

    monkeypatch.setattr(_robustness, "check_black_box_weaker", always_failing)
    X, y = data[0][:40], data[1][:40]
    attacks = [("PGD", PGDTransformer(n_iter=3, step_size=0.01)),
               ("Square", SquareAttackTransformer(n_queries=20))]
    with pytest.warns(RobustnessWarning, match="black-box"):
        result = evaluate_robustness(mlp_net, X, y, eps=0.02, attacks=attacks,
                                     random_state=0)
    assert any("black-box attack weaker" in e["reason"] for e in result.escalations)
    assert result.plain_robust_accuracy >= result.robust_accuracy


def test_iterative_check_tolerance():
    single = np.zeros(200, dtype=bool)
    single[:2] = True
    assert check_iterative_stronger(single, np.zeros(200, dtype=bool), warn=False).passed
    single[:3] = True
    assert not check_iterative_stronger(single, np.zeros(200, dtype=bool), warn=False).passed
    assert check_iterative_stronger(single, single, warn=False).passed
