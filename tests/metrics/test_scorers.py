import dataclasses
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.metrics import (
    avg_confidence_true_class,
    make_adversarial_scorer,
    misclassification_rate,
)
from skrobust.models._skorch import default_net


def small_mnist(mnist_small, n=600):
    X, y, _, _ = mnist_small
    return X[:n], y[:n]


def test_scorer_attacks_the_scored_estimator(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    scorer = make_adversarial_scorer(FGSMTransformer(eps=0.1))
    clean = accuracy_score(y, mlp_net.predict(X))
    robust = scorer(mlp_net, X, y)
    X_adv = FGSMTransformer(FrozenEstimator(mlp_net), eps=0.1).fit(X, y).generate(X, y)
    assert robust == accuracy_score(y, mlp_net.predict(X_adv))
    assert robust < clean
    loss = make_adversarial_scorer(FGSMTransformer(eps=0.1), misclassification_rate,
                                   greater_is_better=False)
    assert loss(mlp_net, X, y) == -(1 - robust)
    actc = make_adversarial_scorer(FGSMTransformer(eps=0.1), avg_confidence_true_class,
                                   response_method="predict_proba")
    assert 0.0 <= actc(mlp_net, X, y) < 0.5


def test_repr_is_readable():
    scorer = make_adversarial_scorer(PGDTransformer(eps=0.1), misclassification_rate,
                                     greater_is_better=False)
    assert repr(scorer) == ("make_adversarial_scorer(PGDTransformer(eps=0.1), "
                            "metric=misclassification_rate, greater_is_better=False)")


def test_scorer_is_an_immutable_record_that_pickles():
    scorer = make_adversarial_scorer(FGSMTransformer(eps=0.1), greater_is_better=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scorer.sign = 1
    copy = pickle.loads(pickle.dumps(scorer))  # what joblib does for n_jobs > 1
    assert repr(copy) == repr(scorer) and copy.sign == -1


def test_cross_validate_with_a_multi_metric_dict(mnist_small):
    X, y = small_mnist(mnist_small)
    net = default_net(max_epochs=3, module__n_features=784, module__n_classes=10)
    scores = cross_validate(net, X, y, cv=2, scoring={
        "clean": "accuracy",
        "fgsm": make_adversarial_scorer(FGSMTransformer(eps=0.1)),
    })
    assert np.all(scores["test_fgsm"] < scores["test_clean"])


def test_grid_search_over_the_victim_with_an_adversarial_scorer(mnist_small):
    X, y = small_mnist(mnist_small)
    net = default_net(max_epochs=2, module__n_features=784, module__n_classes=10)
    search = GridSearchCV(net, {"lr": [1e-3, 1e-2]}, cv=2,
                          scoring=make_adversarial_scorer(FGSMTransformer(eps=0.05)))
    search.fit(X, y)
    assert set(search.cv_results_["param_lr"]) == {1e-3, 1e-2}
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_attack_in_a_pipeline_and_a_grid_over_eps(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    victim = FrozenEstimator(mlp_net)
    pipe = make_pipeline(FGSMTransformer(victim, eps=0.1), victim)
    # the pipeline attacks the victim's own predictions, then classifies the result
    assert pipe.fit(X, y).score(X, y) < accuracy_score(y, mlp_net.predict(X))
    search = GridSearchCV(pipe, {"fgsmtransformer__eps": [0.0, 0.1]}, cv=2).fit(X, y)
    means = search.cv_results_["mean_test_score"]
    assert means[0] > means[1]  # eps=0 leaves the victim's accuracy intact
    assert clone(pipe).get_params()["fgsmtransformer__eps"] == 0.1


def test_a_metric_that_is_not_callable_is_refused_at_construction():
    with pytest.raises(ValueError, match="metric='nope' is not callable; pass a function "
                                         r"metric\(y_true, response"):
        make_adversarial_scorer(FGSMTransformer(), metric="nope")


def _raw_tabular():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    return X, y, make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def test_a_failing_scorer_stops_a_search_with_error_score_raise():
    # the default [0, 1] bounds on raw tabular features: the message names the
    # tabular options, and error_score="raise" turns sklearn's NaN into the error
    X, y, pipe = _raw_tabular()
    scorer = make_adversarial_scorer(FGSMTransformer(eps=0.1))
    search = GridSearchCV(pipe, {"logisticregression__C": [1.0]}, cv=2, scoring=scorer,
                          error_score="raise")
    with pytest.raises(ValueError, match='values above clip_max=1.0 .*clip_max="data".*'
                                         'eps_scale="std"'):
        search.fit(X, y)
    tabular = FGSMTransformer(eps=0.1, clip_min="data", clip_max="data", eps_scale="std")
    search.set_params(scoring=make_adversarial_scorer(tabular)).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_a_fitted_attack_keeps_the_scales_it_learned_on_the_training_data():
    X, y, pipe = _raw_tabular()
    X_train, y_train, X_test, y_test = X[:400], y[:400], X[400:], y[400:]
    pipe.fit(X_train, y_train)
    template = FGSMTransformer(eps=0.5, clip_min="data", clip_max="data", eps_scale="std")
    fitted = clone(template).fit(X_train, y_train)
    from skrobust.evaluation import evaluate_attack

    X_adv = evaluate_attack(pipe, X_test, y_test, fitted).X_adv
    change = np.abs(X_adv - X_test).max(axis=0)
    np.testing.assert_allclose(change, 0.5 * X_train.std(axis=0), rtol=1e-6)
    assert not np.allclose(change, 0.5 * X_test.std(axis=0), rtol=1e-2)
    # unfitted: learned on the scored (test) rows
    X_adv = evaluate_attack(pipe, X_test, y_test, template).X_adv
    np.testing.assert_allclose(np.abs(X_adv - X_test).max(axis=0),
                               0.5 * X_test.std(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="X has 5 features, but the victim Pipeline was "
                                         "fitted on 30 features"):
        evaluate_attack(pipe, X_test[:, :5], y_test, fitted)
    score = make_adversarial_scorer(fitted)(pipe, X_test, y_test)
    assert 0 <= score < pipe.score(X_test, y_test)
