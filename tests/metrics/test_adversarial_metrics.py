import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier
from sklearn.metrics import make_scorer

from skrobust.metrics import (
    attack_success_rate,
    avg_confidence_adv_class,
    avg_confidence_true_class,
    misclassification_rate,
)
from skrobust.utils import TorchModel

PROBA = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
Y = np.array([0, 0, 2, 1])  # rows 1 and 3 are fooled


def test_rates():
    assert misclassification_rate(Y, PROBA.argmax(1)) == 0.5
    assert attack_success_rate([1, 1, 1, 1], PROBA.argmax(1)) == 0.25
    assert isinstance(misclassification_rate(Y, Y), float)


def test_acac_and_actc_average_over_fooled_samples():
    assert avg_confidence_adv_class(Y, PROBA) == pytest.approx((0.6 + 0.5) / 2)
    assert avg_confidence_true_class(Y, PROBA) == pytest.approx((0.1 + 0.4) / 2)


def test_labels_map_columns():
    y_text = np.array(["a", "a", "c", "b"])
    assert avg_confidence_true_class(y_text, PROBA, labels=["a", "b", "c"]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"y_true contains labels \['z'\] that the victim"):
        avg_confidence_true_class(["z"], PROBA[:1], labels=["a", "b", "c"])
    # columns in any order (classes_ of a model need not be sorted)
    assert avg_confidence_true_class(y_text, PROBA[:, [2, 0, 1]], labels=["c", "a", "b"]) \
        == pytest.approx(0.25)
    # without labels, the labels are the column indices
    with pytest.raises(ValueError, match=r"labels \[3\] .* classes are \[0, 1, 2\]"):
        avg_confidence_adv_class([3], PROBA[:1])
    with pytest.raises(ValueError, match="labels has 2 entries but proba_adv has 3 columns"):
        avg_confidence_adv_class(Y, PROBA, labels=[0, 1])


def test_no_success_gives_zero():
    assert avg_confidence_adv_class([0], [[0.9, 0.1]]) == 0.0
    assert avg_confidence_true_class([0], [[0.9, 0.1]]) == 0.0


def test_length_mismatch():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        misclassification_rate([0, 1], [0])


def test_works_with_make_scorer():
    zeros = DummyClassifier(strategy="constant", constant=0).fit([[0], [0]], [0, 1])
    scorer = make_scorer(misclassification_rate, greater_is_better=False)
    assert scorer(zeros, np.zeros((4, 1)), [0, 1, 1, 0]) == -0.5


@pytest.mark.parametrize("classes, unseen", [(["b", "c", "a"], ["a", "maybe"]),
                                             ([10, 20, 30], [20, 7, 40])])
def test_metrics_map_labels_like_the_victim(classes, unseen):
    """The metrics map labels to columns with the victim layer's mapping: the same
    columns and, for a label the model does not know, the same message."""
    classes = np.array(classes)
    model = TorchModel(torch.nn.Linear(2, 3), torch.device("cpu"), classes)
    y = classes[[2, 0, 2, 1]]
    proba = np.eye(3)[[0, 1, 2, 2]]  # rows 0 and 3 put all mass on a wrong class
    fooled = [0, 3]
    index = model.encode(y)
    assert avg_confidence_true_class(y, proba, labels=classes) == \
        pytest.approx(np.mean(proba[fooled, index[fooled]]))
    with pytest.raises(ValueError) as victim:
        model.encode(unseen, name="y_true")
    with pytest.raises(ValueError) as metric:
        avg_confidence_true_class(unseen, np.full((len(unseen), 3), 1 / 3), labels=classes)
    assert str(metric.value) == str(victim.value)
    assert "that the victim does not know; its classes are" in str(metric.value)
