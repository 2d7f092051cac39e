import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, minmax_scale
from sklearn.svm import SVC
from sklearn.utils import check_random_state

from skrobust.attacks import PGDExpTransformer, PGDTransformer
from skrobust.defenses import DNRClassifier
from skrobust.defenses._dnr import default_layers
from skrobust.defenses._svm_torch import OvAScores
from skrobust.metrics import rejection_rate, robust_accuracy_with_rejection_score
from skrobust.models import LeNet5
from skrobust.models._skorch import default_net, fit_net, size_net
from skrobust.utils import as_torch_model, extract_features


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=3200, n_features=8, n_informative=5,
                               n_redundant=1, n_classes=3, class_sep=1.5,
                               random_state=0)
    X = minmax_scale(X).astype(np.float32)
    return X[:1000], y[:1000], X[1000:1200], y[1000:1200], X[1200:], y[1200:]


@pytest.fixture(scope="module")
def net(data):
    X_net, y_net = data[2], data[3]
    net = default_net(module__n_features=8, module__n_classes=3,
                      module__hidden_units=(32, 16), max_epochs=30)
    return fit_net(net, X_net, y_net, seed=0)


@pytest.fixture(scope="module")
def dnr(data, net):
    X, y = data[0], data[1]
    return DNRClassifier(FrozenEstimator(net), cv=3, reject_rate=0.2, random_state=0).fit(X, y)


def test_default_layers_are_last_three_relus():
    assert default_layers(LeNet5()) == ["relu2", "relu3", "relu4"]


def test_fitted_attributes(dnr, data):
    X = data[4][:50]
    assert dnr.layers_ == ["relu1", "relu2"]  # the net has two ReLU layers
    assert set(dnr.layer_clfs_) == {"relu1", "relu2"}
    assert list(dnr.classes_) == [0, 1, 2]
    assert dnr.decision_function(X).shape == (50, 3)
    pred = dnr.predict(X)
    assert set(np.unique(pred)) <= {-1, 0, 1, 2}
    # rejection exactly where the best combined score is below the threshold
    np.testing.assert_array_equal(pred == -1, dnr.decision_function(X).max(1) < dnr.threshold_)


def test_rejection_rate_holds_on_new_clean_data(dnr, data):
    X_new = data[4]
    rate = rejection_rate(np.zeros(len(X_new)), dnr.predict(X_new))
    # calibrated on 1000 out-of-fold scores: sampling sd ~0.013 (+0.01 for X_new)
    assert abs(rate - 0.2) < 0.07
    # not the rate on the training data, which is lower (over-fitted scores)
    train_rate = rejection_rate(np.zeros(len(data[0])), dnr.predict(data[0]))
    assert train_rate < rate


def test_rejection_improves_accuracy_on_accepted(dnr, data):
    X, y = data[4], data[5]
    pred = dnr.predict(X)
    accepted = pred != -1
    acc_all = np.mean(dnr.classes_[dnr.decision_function(X).argmax(1)] == y)
    assert np.mean(pred[accepted] == y[accepted]) > acc_all
    # score counts a rejected clean sample as an error
    assert dnr.score(X, y) == pytest.approx(np.mean(pred == y))
    assert dnr.score(X, y) < acc_all


def test_torch_scores_equal_sklearn_scores(dnr, data):
    X = data[4][:300]
    model = as_torch_model(FrozenEstimator(dnr))
    with torch.no_grad():
        scores = model.module(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(scores, dnr.decision_function(X), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(model.classes, dnr.classes_)
    assert model.module.reject_threshold == dnr.threshold_


def test_torch_gradients_match_finite_differences(dnr, data):
    module = copy.deepcopy(as_torch_model(dnr).module).double().eval()
    x = torch.as_tensor(data[4][:3], dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("clf", [SVC(kernel="rbf", gamma=0.3, C=2.0), SVC(kernel="linear"),
                                 LogisticRegression()])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_ova_scores_match_decision_function(clf, n_classes):
    X, y = make_classification(n_samples=120, n_features=5, n_informative=4,
                               n_redundant=0, n_classes=n_classes, random_state=1)
    ovr = OneVsRestClassifier(clf).fit(X, y)
    scores = OvAScores(ovr)(torch.as_tensor(X)).numpy()
    expected = ovr.decision_function(X)
    if n_classes == 2:
        expected = np.column_stack([-expected, expected])
    np.testing.assert_allclose(scores, expected, atol=1e-9)


def test_unsupported_layer_clf_has_no_torch_model(data, net):
    dnr = DNRClassifier(FrozenEstimator(net), layer_clf=SVC(kernel="poly"), cv=2,
                        random_state=0).fit(data[0], data[1])
    with pytest.raises(TypeError, match="kernel='rbf'"):
        as_torch_model(dnr)


def test_layer_params_are_parameters_and_applied(data, net):
    dnr = DNRClassifier(FrozenEstimator(net), layer_clf=SVC(C=10, gamma=0.05),
                        layer_params={"relu2": {"C": 0.5}}, cv=2, random_state=0)
    assert dnr.get_params()["layer_params"] == {"relu2": {"C": 0.5}}
    dnr.fit(data[0], data[1])
    assert dnr.layer_clfs_["relu2"].estimators_[0].C == 0.5
    assert dnr.layer_clfs_["relu1"].estimators_[0].C == 10
    assert dnr.layer_clfs_["relu1"].estimators_[0].gamma == 0.05


def test_default_gamma_is_resolved_per_layer(dnr):
    gammas = {name: clf.estimators_[0].gamma for name, clf in dnr.layer_clfs_.items()}
    assert all(isinstance(g, float) for g in gammas.values())
    # standardised features: gamma="scale" is about 1 / n_features of the layer
    assert gammas["relu2"] > gammas["relu1"]


def test_threshold_parameter_and_compute_threshold(data, net, dnr):
    X, y, X_new = data[0], data[1], data[4]
    fixed = DNRClassifier(FrozenEstimator(net), threshold=0.25, cv=2,
                          random_state=0).fit(X, y)
    assert fixed.threshold_ == 0.25
    est = clone(dnr).fit(X, y)
    value = est.compute_threshold(X_new[:1000], 0.3)
    assert value == est.threshold_
    rate = rejection_rate(np.zeros(1000), est.predict(X_new[:1000]))
    assert rate == pytest.approx(0.3, abs=0.002)
    assert est.compute_threshold(X_new, 0.0) == -np.inf
    assert not np.any(est.predict(X_new) == -1)


def test_reject_rate_zero_never_rejects(data, net):
    est = DNRClassifier(FrozenEstimator(net), reject_rate=0.0, cv=2, random_state=0)
    assert np.all(est.fit(data[0], data[1]).predict(data[4]) != -1)


def test_grid_search_over_reject_rate(data, net):
    X, y = data[0], data[1]
    search = GridSearchCV(DNRClassifier(FrozenEstimator(net), cv=2, random_state=0),
                          {"reject_rate": [0.0, 0.3]}, cv=2).fit(X, y)
    # accuracy counts rejections as errors, so rejecting more cannot win
    assert search.best_params_ == {"reject_rate": 0.0}
    means = search.cv_results_["mean_test_score"]
    assert means[0] > means[1]


def test_unfitted_network_is_trained_on_its_own_split(data):
    X, y = data[0], data[1]
    net = default_net(module__hidden_units=(16,), max_epochs=5)
    dnr = DNRClassifier(net, cv=2, random_state=0).fit(X, y)
    assert net.get_params()["max_epochs"] == 5 and not hasattr(net, "module_")
    assert dnr.estimator_.initialized_
    # DNR's out-of-fold scores were computed on the other half only
    n_svm_rows = dnr.layer_clfs_["relu1"].estimators_[0].shape_fit_[0]
    assert n_svm_rows == len(X) // 2
    same = DNRClassifier(net, cv=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(same.decision_function(X), dnr.decision_function(X))


def test_unfitted_network_follows_the_documented_protocol(data):
    # DNR(net) == DNR(frozen net trained by hand on the documented split): the first
    # draw of random_state seeds the net and the folds, the second the stratified
    # split; the net trains on estimator_fraction of the rows, DNR on the others
    X, y = data[0][:400], data[1][:400]
    net = default_net(module__hidden_units=(16,), max_epochs=3)
    dnr = DNRClassifier(net, cv=2, random_state=0).fit(X, y)
    rng = check_random_state(0)
    seed = rng.randint(2**31 - 1)
    net_idx, dnr_idx = train_test_split(np.arange(len(X)), train_size=0.5, stratify=y,
                                        random_state=rng.randint(2**31 - 1))
    by_hand = clone(net)
    size_net(by_hand, X.shape[1], 3)
    fit_net(by_hand, X[net_idx], y[net_idx], seed)
    frozen = DNRClassifier(FrozenEstimator(by_hand), cv=2, random_state=0).fit(
        X[dnr_idx], y[dnr_idx])
    X_new = data[4][:200]
    np.testing.assert_array_equal(dnr.decision_function(X_new), frozen.decision_function(X_new))
    np.testing.assert_array_equal(dnr.predict(X_new), frozen.predict(X_new))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_scikit_learn_network_through_the_victim_layer(data):
    # any victim the attacks take is fitted the same way: an MLPClassifier is
    # re-expressed in torch, its ReLU layers feed DNR and the attacks see DNR whole
    X, y = data[0][:300], data[1][:300]
    dnr = DNRClassifier(MLPClassifier((16, 8), max_iter=300, random_state=0), cv=2,
                        random_state=0).fit(X, y)
    assert dnr.estimator_.n_iter_ > 0 and len(dnr.layers_) == 2
    X_new = data[4][:100]
    with torch.no_grad():
        scores = as_torch_model(dnr).module(torch.as_tensor(X_new)).numpy()
    np.testing.assert_allclose(scores, dnr.decision_function(X_new), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="estimator=KNeighborsClassifier cannot be attacked"):
        DNRClassifier(KNeighborsClassifier(), cv=2).fit(X, y)


def test_torch_layer_outputs_are_the_standardised_features(dnr, data):
    # the differentiable module and predict read the same layers (one capture)
    X = data[4][:50]
    module = as_torch_model(dnr).module
    with torch.no_grad():
        outputs = module.layer_outputs(torch.as_tensor(X))
    features = extract_features(dnr.estimator_, X, dnr.layers_)
    for name, z in zip(dnr.layers_, outputs):
        expected = dnr.layer_scalers_[name].transform(features[name].astype(np.float64))
        np.testing.assert_allclose(z.numpy(), expected, atol=1e-5)
    assert not any(m._forward_hooks for m in module.modules())


def test_string_classes_and_reject_label(data, net):
    X, y = data[0], data[1]
    labels = np.array(["a", "b", "c"])[y]
    dnr = DNRClassifier(FrozenEstimator(net), reject_label="reject", cv=2,
                        reject_rate=0.2, random_state=0).fit(X, labels)
    pred = dnr.predict(data[4])
    assert set(pred) == {"a", "b", "c", "reject"}


def test_pickle_and_clone(dnr, data):
    X = data[4][:100]
    restored = pickle.loads(pickle.dumps(dnr))
    np.testing.assert_allclose(restored.decision_function(X), dnr.decision_function(X))
    assert clone(dnr).get_params()["reject_rate"] == 0.2


def test_in_pipeline_equals_dnr_on_scaled_data(data):
    X, y, X_new = data[0], data[1], data[4][:300]
    dnr = DNRClassifier(default_net(module__hidden_units=(16,), max_epochs=5), cv=2,
                        reject_rate=0.2, random_state=0)
    pipe = make_pipeline(StandardScaler(), dnr).fit(X, y)
    scaler = StandardScaler().fit(X)
    alone = clone(dnr).fit(scaler.transform(X), y)
    np.testing.assert_array_equal(pipe.decision_function(X_new),
                                  alone.decision_function(scaler.transform(X_new)))
    np.testing.assert_array_equal(pipe.predict(X_new), alone.predict(scaler.transform(X_new)))
    assert np.any(pipe.predict(X_new) == -1)  # the reject option survives the pipeline


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"layers": ["nope"]}, ValueError, r"Unknown layer 'nope'; valid layer names .*relu1"),
        ({"layers": ["relu1", "relu1"]}, ValueError, "contains duplicates"),
        ({"layers": []}, ValueError, "layers is empty"),
        ({"reject_rate": 1.0}, ValueError, r"reject_rate=1.0 must be a float in \[0, 1\)"),
        ({"reject_rate": -0.1}, ValueError, "reject_rate=-0.1"),
        ({"layer_clf": KNeighborsClassifier()}, TypeError, "no decision_function"),
        ({"combiner": KNeighborsClassifier()}, TypeError, "combiner=KNeighborsClassifier"),
        ({"reject_label": 1}, ValueError, "reject_label=1 is one of the classes"),
        ({"layer_params": {"relu9": {"C": 1}}}, ValueError, "relu9"),
        ({"threshold": "high"}, ValueError, "threshold='high'"),
        ({"cv": 1}, ValueError, "cv=1"),
    ],
)
def test_bad_parameters(data, net, params, error, match):
    with pytest.raises(error, match=match):
        DNRClassifier(FrozenEstimator(net), **params).fit(data[0], data[1])


def test_not_fitted_errors(data):
    with pytest.raises(NotFittedError):
        DNRClassifier().compute_threshold(data[0], 0.1)
    with pytest.raises(NotFittedError):
        as_torch_model(DNRClassifier())


def test_pgd_attacks_dnr_end_to_end(dnr, data):
    X, y = data[4][:60], data[5][:60]
    attack = PGDTransformer(FrozenEstimator(dnr), norm=2, eps=0.5, step_size=0.05,
                            n_iter=10, clip_min=None, clip_max=None)
    X_adv = attack.fit(X, y).generate(X, y)
    assert np.all(np.linalg.norm(X_adv - X, axis=1) <= 0.5 + 1e-5)
    clean = robust_accuracy_with_rejection_score(y, dnr.predict(X))
    assert robust_accuracy_with_rejection_score(y, dnr.predict(X_adv)) < clean


def test_reject_aware_attack_reduces_robust_accuracy(dnr, data):
    X, y = data[4][:40], data[5][:40]
    attack = PGDExpTransformer(FrozenEstimator(dnr), eps=1.0, step_size=0.05, n_iter=8,
                               clip_min=None, clip_max=None)
    X_adv, history = attack.fit(X, y).generate_with_history(X, y)
    clean = robust_accuracy_with_rejection_score(y, dnr.predict(X))
    assert robust_accuracy_with_rejection_score(y, dnr.predict(X_adv)) < clean
    # the margin is positive exactly for accepted misclassified samples
    fooled = (dnr.predict(X_adv) != y) & (dnr.predict(X_adv) != -1)
    np.testing.assert_array_equal(history.loss[-1] > 0, fooled)


def test_torch_model_is_in_eval_mode_without_switching_the_net(data, net):
    # a fitted DNR is deployed with its net in eval mode: the sanity checks of
    # security_curve / evaluate_robustness must not warn about training mode
    import warnings

    from skrobust.evaluation import RobustnessWarning, check_training_mode, security_curve

    module = copy.deepcopy(net.module_).train()
    dnr = DNRClassifier(module, cv=3, reject_rate=0.2, random_state=0).fit(
        data[0][:300], data[1][:300])
    assert module.training  # the caller's module keeps its mode
    assert not any(m.training for m in as_torch_model(dnr).module.modules())
    assert check_training_mode(dnr, warn=False).passed
    X, y = data[4][:20], data[5][:20]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        security_curve(dnr, X, y, [0.0, 0.3], attack=PGDExpTransformer(n_iter=2),
                       norm=2, reject_label=-1, random_state=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, RobustnessWarning)]
    assert not [m for m in messages if "training mode" in m], messages
