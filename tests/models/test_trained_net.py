"""TrainedNetClassifierMixin: one predict / predict_proba / torch hook for the
classifiers that train a net on label indices (AdversarialTrainer,
SuppressPrivacyClassifier, and the one wrapped in the other)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.preprocessing import minmax_scale
from skorch import NeuralNetClassifier

from skrobust.attacks import FGSMTransformer
from skrobust.defenses import AdversarialTrainer
from skrobust.models import MLP
from skrobust.models._trained_net import TrainedNetClassifierMixin, trained_net
from skrobust.privacy import SuppressPrivacyClassifier
from skrobust.utils import as_torch_model


def net(**params):
    defaults = dict(module=MLP, module__hidden_units=(16,), criterion=torch.nn.CrossEntropyLoss,
                    optimizer=torch.optim.Adam, lr=0.02, max_epochs=3, batch_size=32,
                    train_split=None, verbose=0)
    defaults.update(params)
    return NeuralNetClassifier(**defaults)


def adversarial(**params):
    return AdversarialTrainer(net(**params), attack=FGSMTransformer(eps=0.05),
                              replace_ratio=0.5, random_state=0)


def suppress(estimator):
    return SuppressPrivacyClassifier(estimator, start_epoch=1, end_epoch=2, sparse_end=0.8,
                                     random_state=0)


BUILDERS = {
    "adversarial": adversarial,
    "suppress": lambda: suppress(net()),
    "suppress(adversarial)": lambda: suppress(adversarial()),
}


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3,
                               random_state=0)
    return minmax_scale(X), np.array(["cat", "dog", "eel"])[y]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return {name: build().fit(X, y) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_both_classifiers_share_the_mixin(name, fitted):
    clf = fitted[name]
    assert isinstance(clf, TrainedNetClassifierMixin)
    for method in ("predict", "predict_proba", "__skrobust_torch_model__"):
        assert getattr(type(clf), method) is getattr(TrainedNetClassifierMixin, method)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_outputs_are_the_nets_own_in_xs_dtype(name, fitted, data):
    # what each classifier returned before the mixin: AdversarialTrainer the softmax
    # of skorch's forward in X's dtype, SuppressPrivacyClassifier the wrapped
    # estimator's predict_proba (float32); the same numbers, now in X's dtype
    X, _ = data
    clf = fitted[name]
    X32 = X.astype(np.float32)
    logits = trained_net(clf.estimator_).forward(X32)
    expected = torch.softmax(logits, dim=1).numpy()
    for dtype in (np.float64, np.float32):
        proba = clf.predict_proba(X.astype(dtype))
        assert proba.dtype == dtype
        np.testing.assert_array_equal(proba, expected.astype(dtype))
    if isinstance(clf, SuppressPrivacyClassifier):
        np.testing.assert_array_equal(clf.predict_proba(X32), clf.estimator_.predict_proba(X32))
    y_pred = clf.predict(X)
    assert y_pred.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(y_pred, clf.classes_[logits.argmax(1).numpy()])


@pytest.mark.parametrize("name", list(BUILDERS))
def test_prediction_is_what_attacks_see(name, fitted, data):
    X, _ = data
    clf = fitted[name]
    model = as_torch_model(clf)
    np.testing.assert_array_equal(model.classes, clf.classes_)
    assert model.module is trained_net(clf.estimator_).module_
    with torch.no_grad():
        module = model.module.eval()
        proba = torch.softmax(module(torch.as_tensor(X, dtype=torch.float32)), 1).numpy()
    np.testing.assert_array_equal(clf.predict_proba(X), proba.astype(X.dtype))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_prediction_keeps_the_modules_mode(name, fitted, data):
    # skorch's forward leaves the module in eval mode; the mixin restores each mode
    X, _ = data
    clf = fitted[name]
    module = trained_net(clf.estimator_).module_
    module.train()
    try:
        clf.predict_proba(X)
        clf.predict(X)
        assert all(m.training for m in module.modules())
    finally:
        module.eval()


def _n_forwards(clf, X):
    calls = []
    handle = trained_net(clf.estimator_).module_.register_forward_hook(
        lambda *args: calls.append(1))
    try:
        clf.predict_proba(X)
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize("params, n_forwards", [
    ({}, 5),  # 150 rows in batches of 32
    ({"iterator_valid__batch_size": 100}, 2),  # skorch's validation iterator first
    ({"batch_size": -1}, 1),  # -1: every row in one batch
])
def test_rows_per_forward_follow_the_nets_batch_size(params, n_forwards, data):
    X, y = data
    clf = AdversarialTrainer(net(max_epochs=1, **params), replace_ratio=0.0,
                             random_state=0).fit(X, y)
    assert _n_forwards(clf, X) == n_forwards


def test_trained_net_follows_meta_estimators(fitted):
    inner = fitted["suppress(adversarial)"]
    assert trained_net(inner) is inner.estimator_.estimator_
    assert trained_net(inner.estimator_.estimator_) is inner.estimator_.estimator_
