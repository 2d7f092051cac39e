import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import make_scorer
from sklearn.model_selection import cross_validate
from sklearn.tree import DecisionTreeClassifier

from skrobust.metrics import (
    accepted_accuracy_score,
    rejection_rate,
    robust_accuracy_with_rejection_score,
)


def test_values_on_a_hand_made_example():
    y_true = np.array([0, 1, 2, 3, 0, 1])
    y_pred = np.array([0, -1, 1, 3, -1, 0])
    assert rejection_rate(y_true, y_pred) == pytest.approx(2 / 6)
    assert accepted_accuracy_score(y_true, y_pred) == pytest.approx(2 / 4)
    assert robust_accuracy_with_rejection_score(y_true, y_pred) == pytest.approx(4 / 6)


def test_relations_between_the_metrics():
    rng = np.random.RandomState(0)
    y_true = rng.randint(0, 5, 500)
    y_pred = np.where(rng.rand(500) < 0.3, -1, rng.randint(0, 5, 500))
    rate = rejection_rate(y_true, y_pred)
    accepted = accepted_accuracy_score(y_true, y_pred)
    # robust accuracy with rejection = rejected + correct among accepted
    assert robust_accuracy_with_rejection_score(y_true, y_pred) == pytest.approx(
        rate + (1 - rate) * accepted)


def test_custom_reject_label_and_string_classes():
    y_true = np.array(["a", "b", "c", "a"])
    y_pred = np.array(["a", "reject", "b", "reject"])
    assert rejection_rate(y_true, y_pred, reject_label="reject") == 0.5
    assert accepted_accuracy_score(y_true, y_pred, reject_label="reject") == 0.5
    assert robust_accuracy_with_rejection_score(y_true, y_pred, reject_label="reject") == 0.75
    # the default -1 never matches string labels
    assert rejection_rate(y_true, y_pred) == 0.0


def test_everything_rejected():
    y_true, y_pred = [0, 1], [-1, -1]
    assert rejection_rate(y_true, y_pred) == 1.0
    assert accepted_accuracy_score(y_true, y_pred) == 0.0
    assert np.isnan(accepted_accuracy_score(y_true, y_pred, zero_division=np.nan))
    assert robust_accuracy_with_rejection_score(y_true, y_pred) == 1.0


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        rejection_rate([0, 1, 2], [0, 1])


def test_usable_as_scorers_in_cross_validate():
    X, y = make_classification(n_samples=60, random_state=0)
    scoring = {
        "rejection": make_scorer(rejection_rate, greater_is_better=False),
        "accepted": make_scorer(accepted_accuracy_score),
        "robust": make_scorer(robust_accuracy_with_rejection_score),
        "accuracy": "accuracy",
    }
    result = cross_validate(DecisionTreeClassifier(random_state=0), X, y, cv=3,
                            scoring=scoring)
    # a classifier that never rejects: all three reduce to plain accuracy
    np.testing.assert_allclose(result["test_rejection"], 0.0)
    np.testing.assert_allclose(result["test_accepted"], result["test_accuracy"])
    np.testing.assert_allclose(result["test_robust"], result["test_accuracy"])
