import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler

from skrobust.models import MLP, LeNet5
from skrobust.privacy import ImageInversionAttack, inversion_report
from skrobust.privacy._inversion import inversion_loss, total_variation
from skrobust.utils import extract_features

from .._models import Linear


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return LeNet5()


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).rand(4, 784).astype(np.float32)


def test_loss_decreases_and_output_within_bounds(lenet, images):
    attack = ImageInversionAttack(lenet, layer="fc1", n_iter=20, lr=0.02, clip_min=0.1,
                                  clip_max=0.9, random_state=0).fit(images)
    features = extract_features(lenet, images, "fc1")
    X_inv, history = attack.invert(features, return_loss=True)
    assert X_inv.shape == images.shape and X_inv.dtype == np.float32
    assert X_inv.min() >= 0.1 and X_inv.max() <= 0.9
    assert history.shape == (4, 21)
    assert np.all(history[:, -1] < 0.8 * history[:, 0])
    # transform = invert of X's own features; float64 in, float64 out
    np.testing.assert_allclose(attack.transform(images), X_inv, atol=1e-6)
    assert attack.transform(images.astype(np.float64)).dtype == np.float64


def test_rows_are_independent_and_reproducible(lenet, images):
    attack = ImageInversionAttack(lenet, layer="relu3", n_iter=5, batch_size=3,
                                  random_state=1).fit(images)
    full = attack.transform(images)
    np.testing.assert_allclose(attack.transform(images[1:3]), full[1:3], atol=1e-5)
    np.testing.assert_allclose(attack.transform(images[::-1]), full[::-1], atol=1e-5)
    again = ImageInversionAttack(lenet, layer="relu3", n_iter=5, random_state=1).fit(images)
    np.testing.assert_allclose(again.transform(images), full, atol=1e-5)


def test_inversion_recovers_inputs_of_an_injective_layer():
    # a wide random linear layer is injective: matching its features recovers x
    torch.manual_seed(0)
    module = MLP(n_features=16, n_classes=2, hidden_units=(64,))
    X = np.random.RandomState(0).uniform(0.2, 0.8, (5, 16)).astype(np.float32)
    attack = ImageInversionAttack(module, layer="fc1", n_iter=300, lr=0.02,
                                  loss_weights=(1.0, 0.0, 0.0), image_shape=(4, 4),
                                  random_state=0).fit(X)
    X_inv = attack.transform(X)
    assert np.abs(X_inv - X).max() < 0.05
    rand = np.random.RandomState(1).uniform(0.2, 0.8, X.shape)
    assert np.linalg.norm(X_inv - X) < 0.2 * np.linalg.norm(rand - X)


def test_loss_terms():
    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    # one bright pixel: 2 vertical and 2 horizontal unit differences, / (1 * 3) each
    assert total_variation(x).tolist() == pytest.approx([4 / 3, 0.0])
    target = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    loss = inversion_loss(target, target, x, (1.0, 0.0, 5.0))
    assert loss.tolist() == pytest.approx([5 / 9, 0.0])
    loss = inversion_loss(torch.zeros(2, 2), target, torch.zeros(2, 1, 3, 3), (2.0, 1.0, 1.0))
    assert loss.tolist() == pytest.approx([2.0, 2.0])  # ||f0||^2 / ||f0||^2, weighted


def feature_loss(estimator, layer, X_inv, X):
    """The normalised feature-matching term ||f(x_inv) - f(x)||^2 / ||f(x)||^2 per row."""
    f_inv = extract_features(estimator, X_inv, layer).astype(np.float64)
    f0 = extract_features(estimator, X, layer).astype(np.float64)
    return ((f_inv - f0) ** 2).sum(1) / (f0 ** 2).sum(1)


def test_inversion_lowers_the_feature_loss_from_its_start(lenet, images):
    attack = ImageInversionAttack(lenet, layer="fc1", n_iter=30, lr=0.02,
                                  random_state=0).fit(images)
    start = clone(attack).set_params(n_iter=0).fit(images).transform(images)
    # n_iter=0 returns the starting noise: one faint image shared by all rows
    assert np.all(start == start[0]) and start.max() <= 0.05
    before = feature_loss(lenet, "fc1", start, images)
    after = feature_loss(lenet, "fc1", attack.transform(images), images)
    assert np.all(after < 0.5 * before), (before, after)


def test_fits_its_own_victim():
    X, y = make_classification(n_samples=60, n_features=9, random_state=0)
    X = MinMaxScaler().fit_transform(X)
    attack = ImageInversionAttack(layer="fc1", n_iter=20, lr=0.05, loss_weights=(1.0, 0.0, 0.0),
                                  image_shape=(3, 3), random_state=0).fit(X, y)
    # the victim is a fitted clone of the default net, trained on (X, y)
    assert attack.estimator_.initialized_ and list(attack.classes_) == [0, 1]
    assert attack.n_layer_features_ == extract_features(attack.estimator_, X, "fc1").shape[1]
    start = clone(attack).set_params(n_iter=0).fit(X, y).transform(X)
    before = feature_loss(attack.estimator_, "fc1", start, X)
    assert np.all(feature_loss(attack.estimator_, "fc1", attack.transform(X), X) < 0.2 * before)
    with pytest.raises(ValueError, match="y is None but the victim must be fitted here"):
        ImageInversionAttack(layer="fc1", image_shape=(3, 3)).fit(X)


def test_frozen_skorch_victim_equals_its_module(images):
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(LeNet5, max_epochs=1, criterion=torch.nn.CrossEntropyLoss,
                              train_split=None, verbose=0).fit(images, np.arange(4) % 2)
    params = dict(layer="fc2", n_iter=5, random_state=0)
    frozen = ImageInversionAttack(FrozenEstimator(net), **params).fit(images)
    module = ImageInversionAttack(net.module_, **params).fit(images)
    np.testing.assert_array_equal(frozen.transform(images), module.transform(images))
    assert frozen.n_layer_features_ == 84


def test_layer_that_does_not_run_is_refused():
    victim = Linear(n_features=4)
    victim.unused = torch.nn.Linear(3, 3)  # a submodule forward() never calls
    X = np.full((2, 4), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="Layer 'unused' did not run in the module's forward"):
        ImageInversionAttack(victim, layer="unused", image_shape=(2, 2)).fit(X)


@pytest.mark.parametrize("params, match", [
    ({"layer": "nope"}, "Unknown layer 'nope'; valid layer names are"),
    ({"layer": None}, "layer is required"),
    ({"image_shape": (20, 20)}, "image_shape=\\(20, 20\\) does not describe rows of 784"),
    ({"loss_weights": (1.0, 2.0)}, "loss_weights=.* must be 3 floats"),
    ({"loss_weights": (1.0, -1.0, 0.0)}, "must be 3 floats >= 0"),
    ({"n_iter": -1}, "n_iter=-1"),
    ({"lr": 0}, "lr=0 must be a positive float"),
    ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min=1.0 > clip_max=0.0"),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_bad_parameters(lenet, images, params, match):
    params = {"layer": "fc1", **params}
    with pytest.raises(ValueError, match=match):
        ImageInversionAttack(lenet, **params).fit(images)


def test_bad_features(lenet, images):
    attack = ImageInversionAttack(lenet, layer="fc1", n_iter=1).fit(images)
    with pytest.raises(ValueError, match="features has 3 columns but layer 'fc1' outputs 120"):
        attack.invert(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="784 features"):
        attack.transform(images[:, :100])


def test_inversion_report():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 64)
    y = (X[:, :32].mean(1) > X[:, 32:].mean(1)).astype(int) + 3
    judge = LogisticRegression().fit(X, y)
    X_inv = np.clip(X + 0.1 * rng.randn(*X.shape), 0, 1)
    report = inversion_report(X, X_inv, y, judge, image_shape=(8, 8))
    expected_l2 = np.mean(np.linalg.norm(X_inv - X, axis=1) / np.linalg.norm(X, axis=1))
    assert report.l2 == pytest.approx(expected_l2)
    assert 0 < report.ssim < 1
    proba = judge.predict_proba(X_inv.astype(np.float32))
    assert report.confidence == pytest.approx(proba[np.arange(40), y - 3].mean())
    # a torch module judge (logits) works too, on column indices
    module = torch.nn.Linear(64, 2)
    report = inversion_report(X, X_inv, y - 3, module, image_shape=(8, 8))
    assert 0 < report.confidence < 1
    with pytest.raises(ValueError, match="X_orig has 40 samples but y has 3"):
        inversion_report(X, X_inv, y[:3], judge, image_shape=(8, 8))
    with pytest.raises(ValueError, match="y contains labels .* that the victim does not know"):
        inversion_report(X, X_inv, y + 10, judge, image_shape=(8, 8))
