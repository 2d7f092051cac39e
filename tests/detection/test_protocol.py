import numpy as np
import pytest

from skrobust.detection import DriftResult
from skrobust.detection._kernels import permutation_p_values
from skrobust.detection._protocol import critical_value, detection_rates, drift_result


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.5])
def test_decision_at_the_critical_value_equals_the_p_value_rule(alpha):
    rng = np.random.RandomState(0)
    null = rng.randn(199)
    for observed in np.concatenate([null[:40], [null.max() + 1, null.min() - 1]]):
        result = drift_result(np.concatenate([[observed], null]), alpha)
        assert result.p_value == permutation_p_values(np.r_[observed, null])[0]
        assert result.is_drift == (result.p_value <= alpha)
        assert result.is_drift == (result.statistic > result.threshold)
        assert result.threshold == critical_value(null, alpha)


def test_critical_value_is_infinite_when_the_test_can_never_reject():
    assert critical_value(np.arange(10.0), 0.05) == float("inf")  # floor(0.55) = 0
    assert critical_value(np.arange(19.0), 0.05) == 18.0  # k = 1: the largest


def test_drift_result_keeps_the_null_and_the_layers():
    per_layer = {"input": drift_result([0.3, 0.1, 0.2], 0.5)}
    result = drift_result([0.3, 0.1, 0.2], 0.5, per_layer)
    assert isinstance(result, DriftResult) and result.per_layer is per_layer
    np.testing.assert_array_equal(result.null_statistics, [0.1, 0.2])
    assert result.p_value == 1 / 3 and result.is_drift


def test_detection_rates_count_rejections_on_random_subsets():
    seen = []

    def test_rows(rows):  # rejects when the subset holds row 0, and on layer "a" always
        seen.append(rows)
        hit = bool(0 in rows)
        return DriftResult(0.0, 0.0 if hit else 1.0, 0.0, hit, per_layer={
            "a": DriftResult(0.0, 0.0, 0.0, True), "b": DriftResult(0.0, 1.0, 0.0, hit)})

    rates = detection_rates(test_rows, 10, ["a", "b"], n_repeats=400, sample_size=3,
                            rng=np.random.RandomState(0))
    assert len(seen) == 400
    for rows in seen:  # sorted, distinct, in range
        assert len(rows) == 3 and np.all(np.diff(rows) > 0) and rows.max() < 10
    assert rates["a"] == 1.0
    assert rates["b"] == rates["combined"] == np.mean([0 in rows for rows in seen])
    assert 0.2 <= rates["combined"] <= 0.4  # P(row 0 among 3 of 10) = 0.3
    again = detection_rates(test_rows, 10, ["a", "b"], n_repeats=400, sample_size=3,
                            rng=np.random.RandomState(0))
    assert again == rates
