import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_validate

from skrobust.privacy import make_membership_scorer, membership_inference, membership_signal


@pytest.fixture(scope="module")
def data():
    # noisy labels (flip_y) so that an over-fitted model memorises its members
    return make_classification(n_samples=900, n_features=10, n_informative=4, flip_y=0.3,
                               random_state=0)


@pytest.mark.parametrize("signal", ["loss", "confidence"])
def test_no_leak_for_identically_distributed_unseen_sets(data, signal):
    X, y = data
    model = LogisticRegression().fit(X[:300], y[:300])
    # neither set was seen: the attack cannot tell them apart
    result = membership_inference(model, X[300:600], y[300:600], X[600:], y[600:],
                                  signal=signal)
    assert abs(result.auc - 0.5) < 0.07
    assert result.advantage < 0.15


@pytest.mark.parametrize("signal", ["loss", "confidence"])
def test_overfitted_model_leaks(data, signal):
    X, y = data
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:300], y[:300])
    result = membership_inference(model, X[:300], y[:300], X[300:600], y[300:600],
                                  signal=signal)
    assert result.auc > 0.75
    assert result.advantage > 0.4
    assert result.tpr - result.fpr == pytest.approx(result.advantage)
    guessed_in = np.mean(result.member_scores >= result.threshold)
    guessed_out = np.mean(result.nonmember_scores >= result.threshold)
    assert guessed_in - guessed_out == pytest.approx(result.advantage)


def test_signals(data):
    X, y = data
    model = LogisticRegression().fit(X, y)
    proba = model.predict_proba(X.astype(np.float32))
    np.testing.assert_allclose(membership_signal(model, X, y),
                               np.log(proba[np.arange(len(y)), y]))
    np.testing.assert_allclose(membership_signal(model, X, None, signal="confidence"),
                               proba.max(1))
    # string labels and a torch module (softmax of logits, labels = column indices)
    labels = np.array(["no", "yes"])
    model_str = LogisticRegression().fit(X, labels[y])
    np.testing.assert_allclose(membership_signal(model_str, X, labels[y]),
                               membership_signal(model, X, y), rtol=1e-6)
    module = torch.nn.Linear(10, 2)
    scores = membership_signal(module, X, y)
    assert scores.shape == (len(X),) and np.all(scores <= 0)


def test_scorer(data):
    X, y = data
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X[:300], y[:300])
    scorer = make_membership_scorer(X[:300], y[:300])
    expected = membership_inference(model, X[:300], y[:300], X[300:], y[300:]).advantage
    assert scorer(model, X[300:], y[300:]) == pytest.approx(-expected)
    raw = make_membership_scorer(X[:300], y[:300], metric="auc", greater_is_better=True)
    assert raw(model, X[300:], y[300:]) > 0.7
    assert repr(raw) == ("make_membership_scorer(<300 members>, signal='loss', "
                         "metric='auc', greater_is_better=True)")
    # one predefined split whose training part is the members
    cv = [(np.arange(300), np.arange(300, 900))]
    scores = cross_validate(RandomForestClassifier(n_estimators=10, random_state=0), X, y,
                            cv=cv, scoring={"acc": "accuracy", "mia": scorer})
    assert scores["test_mia"][0] == pytest.approx(-expected)


def test_bad_input(data):
    X, y = data
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="signal='entropy' is not supported"):
        membership_inference(model, X, y, X, y, signal="entropy")
    with pytest.raises(ValueError, match="metric='f1' is not supported"):
        make_membership_scorer(X, y, metric="f1")
    with pytest.raises(ValueError, match="needs members and non-members, got 0 members"):
        membership_inference(model, X[:0], y[:0], X, y)
    with pytest.raises(ValueError, match="X has 900 samples but y has 3"):
        membership_inference(model, X, y[:3], X, y)
    with pytest.raises(ValueError, match="X_members has 900 samples but y_members has 2"):
        make_membership_scorer(X, y[:2])
    with pytest.raises(ValueError, match=r"y contains labels \[7\] that the victim does not know"):
        membership_inference(model, X[:5], np.full(5, 7), X, y)
