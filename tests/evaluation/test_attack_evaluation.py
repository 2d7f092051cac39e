import numpy as np
import pytest

from skrobust.attacks import FGSMTransformer
from skrobust.evaluation import evaluate_attack, format_attack_table


def test_evaluate_attack_reports_consistent_figures(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    result = evaluate_attack(mlp_net, X, y, FGSMTransformer(eps=0.2))
    assert result.clean_accuracy > 0.85
    assert result.adversarial_accuracy < result.clean_accuracy
    assert result.misclassification_rate == pytest.approx(1 - result.adversarial_accuracy)
    assert result.acac > result.actc
    assert result.linf == pytest.approx(0.2, abs=1e-6)
    assert 0 < result.ssim < 1 and result.seconds_per_sample > 0
    assert result.X_adv.shape == X.shape
    np.testing.assert_array_equal(result.y_pred_adv, mlp_net.predict(result.X_adv))
    table = format_attack_table(result, title="FGSM")
    assert "accuracy on adversarial examples" in table and "ACAC" in table


def test_eps_zero_changes_nothing(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    result = evaluate_attack(mlp_net, X[:50], y[:50], FGSMTransformer(eps=0.0))
    assert result.adversarial_accuracy == result.clean_accuracy
    assert result.l2 == 0.0


def test_nothing_fooled_gives_nan_distances_not_an_error(mlp_net, mnist_small):
    # the distances average over the fooled samples: none, NaN (as ssim); this used
    # to raise from check_array on 0 rows (an accuracy curve's small eps)
    _, _, X, y = mnist_small
    correct = mlp_net.predict(X[:50]) == y[:50]
    result = evaluate_attack(mlp_net, X[:50][correct], y[:50][correct],
                             FGSMTransformer(eps=0.0))
    assert result.adversarial_accuracy == 1.0
    assert np.isnan(result.l0) and np.isnan(result.l2) and np.isnan(result.linf)
    assert "nan" in format_attack_table(result)


def test_float64_input_against_a_frozen_skorch_net(mlp_net, mnist_small):
    # skorch does not convert dtypes: the victim boundary casts to float32
    from sklearn.frozen import FrozenEstimator

    _, _, X, y = mnist_small
    X, y = X[:60], y[:60]
    as64 = evaluate_attack(FrozenEstimator(mlp_net), X.astype(np.float64), y,
                           FGSMTransformer(eps=0.1))
    as32 = evaluate_attack(FrozenEstimator(mlp_net), X, y, FGSMTransformer(eps=0.1))
    assert as64.X_adv.dtype == np.float64
    assert as64.clean_accuracy == as32.clean_accuracy
    np.testing.assert_allclose(as64.X_adv, as32.X_adv, atol=1e-6)
