import pickle

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import minmax_scale
from torch import nn

from skrobust.attacks import FGSMTransformer, PGDTransformer, SquareAttackTransformer
from skrobust.defenses import AdversarialTrainer
from skrobust.defenses._adversarial_net import Adversary, RobustCheckpoint
from skrobust.metrics import make_adversarial_scorer
from skrobust.models._skorch import default_net
from skrobust.utils import as_torch_model
from skrobust.utils._torch import check_bfloat16_autocast


def small_net(**params):
    return default_net(**{"module__hidden_units": (32,), "max_epochs": 3, **params})


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4,
                               n_classes=3, random_state=0)
    return minmax_scale(X).astype(np.float32), y


def _weights(net):
    return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- robustness


def test_adversarial_training_raises_pgd_accuracy(mnist_small):
    X, y, X_test, y_test = mnist_small
    X, y, X_test, y_test = X[:1000], y[:1000], X_test[:300], y_test[:300]
    scorer = make_adversarial_scorer(PGDTransformer(eps=0.1, step_size=0.02, n_iter=10))
    clean = AdversarialTrainer(small_net(max_epochs=4), replace_ratio=0.0,
                               random_state=0).fit(X, y)
    robust = AdversarialTrainer(small_net(max_epochs=4), attack=PGDTransformer(
        eps=0.1, step_size=0.125, n_iter=2, random_start=True), random_state=0).fit(X, y)
    assert clean.score(X_test, y_test) > 0.8
    assert robust.score(X_test, y_test) > 0.7
    assert scorer(robust, X_test, y_test) > scorer(clean, X_test, y_test) + 0.2


def test_grid_search_over_eps_with_adversarial_scorer(mnist_small):
    X, y, _, _ = mnist_small
    X, y = X[:800], y[:800]
    scorer = make_adversarial_scorer(FGSMTransformer(eps=0.15))
    search = GridSearchCV(
        AdversarialTrainer(small_net(max_epochs=4), attack=FGSMTransformer(),
                           random_state=0),
        {"attack__eps": [0.0, 0.15], "estimator__lr": [1e-2]}, scoring=scorer, cv=2,
    ).fit(X, y)
    assert search.best_params_["attack__eps"] == 0.15
    assert search.best_estimator_.estimator_.lr == 1e-2


def test_grid_over_attack_eps_routes_to_the_training_attack(blobs):
    X, y = blobs
    attack = PGDTransformer(eps=0.3, step_size=0.05, n_iter=2)
    trainer = AdversarialTrainer(small_net(max_epochs=2), attack=attack, random_state=0)
    search = GridSearchCV(trainer, {"attack__eps": [0.0, 0.1]}, cv=2, refit=True,
                          return_train_score=True).fit(X, y)
    assert list(search.cv_results_["param_attack__eps"]) == [0.0, 0.1]
    best = search.best_estimator_
    assert best.attack_.eps == search.best_params_["attack__eps"]
    assert (best.attack_.step_size, best.attack_.n_iter) == (0.05, 2)
    assert attack.eps == 0.3 and trainer.attack is attack  # the caller's objects stay
    # attack__eps=0 trains exactly as clean training: the value reached the attack
    zero = clone(trainer).set_params(attack__eps=0.0).fit(X, y)
    clean = clone(trainer).set_params(replace_ratio=0.0).fit(X, y)
    np.testing.assert_allclose(zero.predict_proba(X), clean.predict_proba(X), atol=1e-6)


# ---------------------------------------------------------------- the training step


def test_eps_zero_is_clean_training(blobs):
    X, y = blobs
    clean = AdversarialTrainer(small_net(), replace_ratio=0.0, random_state=0).fit(X, y)
    zero = AdversarialTrainer(small_net(), attack=FGSMTransformer(eps=0.0),
                              random_state=0).fit(X, y)
    fgsm = AdversarialTrainer(small_net(), attack=FGSMTransformer(eps=0.2),
                              random_state=0).fit(X, y)
    np.testing.assert_allclose(zero.predict_proba(X), clean.predict_proba(X), atol=1e-6)
    assert not np.allclose(fgsm.predict_proba(X), clean.predict_proba(X), atol=1e-3)


def test_same_random_state_same_model(blobs):
    X, y = blobs
    params = dict(attack=PGDTransformer(eps=0.1, step_size=0.125, n_iter=2,
                                        random_start=True), replace_ratio=0.5)
    a = AdversarialTrainer(small_net(), random_state=3, **params).fit(X, y)
    b = AdversarialTrainer(small_net(), random_state=3, **params).fit(X, y)
    c = AdversarialTrainer(small_net(), random_state=4, **params).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


class BNNet(nn.Module):
    def __init__(self, n_features=6, n_classes=3):
        super().__init__()
        self.fc = nn.Linear(n_features, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.bn(self.fc(x)))))


def test_crafting_leaves_batchnorm_modes_and_grads_alone(blobs):
    X, y = blobs
    attack = PGDTransformer(eps=0.1, step_size=0.25 / 3, n_iter=3, random_start=True)
    clf = AdversarialTrainer(default_net(module=BNNet, max_epochs=1), attack=attack,
                             random_state=0).fit(X, y)
    net = clf.estimator_
    module = net.module_.train()
    for p in module.parameters():
        p.grad = torch.full_like(p, 7.0)
    bn_before = {k: v.clone() for k, v in module.bn.state_dict().items()}
    x, t = torch.as_tensor(X[:32]), torch.as_tensor(y[:32])
    adversary = Adversary(clf.attack_, 1.0, 0.0, 1.0, 0, torch.device("cpu"))
    x_adv = adversary.craft(module, x, t)
    assert (x_adv - x).abs().max() > 0.05
    assert all(m.training for m in module.modules())  # modes restored
    for k, v in module.bn.state_dict().items():
        assert torch.equal(v, bn_before[k]), k  # running stats untouched
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in module.parameters())


def test_one_training_step_updates_batchnorm_once(blobs):
    X, y = blobs
    clf = AdversarialTrainer(default_net(module=BNNet, max_epochs=1, batch_size=len(X)),
                             attack=PGDTransformer(eps=0.1, step_size=0.0625, n_iter=4),
                             random_state=0).fit(X, y)
    # one batch per epoch, PGD-4: only the training forward pass counts
    assert int(clf.estimator_.module_.bn.num_batches_tracked) == 1


def test_replace_ratio_replaces_that_share_of_rows():
    x = torch.rand(10, 4) * 0.8 + 0.1
    y = torch.zeros(10, dtype=torch.long)
    module = nn.Linear(4, 2)
    for ratio, n_changed in ((0.0, 0), (0.5, 5), (0.25, 3), (1.0, 10)):
        adversary = Adversary(FGSMTransformer(eps=0.05), ratio, 0.0, 1.0, 0,
                              torch.device("cpu"))
        x_adv = adversary.craft(module, x, y)
        assert int((x_adv != x).any(1).sum()) == n_changed


# ---------------------------------------------------------------- parameters


def test_training_attack_resolution(blobs):
    X, y = blobs
    fit = dict(estimator=small_net(max_epochs=1), random_state=0)
    # the names stand for the transformers with their own defaults
    for name, cls in (("fgsm", FGSMTransformer), ("pgd", PGDTransformer)):
        attack_ = AdversarialTrainer(attack=name, **fit).fit(X, y).attack_
        assert type(attack_) is cls and attack_.get_params() == cls().get_params()
    given = PGDTransformer(eps=0.1, step_size=0.03, n_iter=2, random_start=True)
    clf = AdversarialTrainer(attack=given, **fit)
    assert clf.get_params()["attack__eps"] == 0.1
    clf.set_params(attack__eps=0.05).fit(X, y)
    assert (clf.attack_.eps, clf.attack_.n_iter, clf.attack_.step_size) == (0.05, 2, 0.03)
    assert clf.attack_ is not given and clf.attack_.random_start


@pytest.mark.parametrize("params, cls", [
    (dict(eps=0.1), "FGSMTransformer"),
    (dict(norm=2, clip_min=None), "FGSMTransformer"),
    (dict(eps=0.1, n_iter=10, random_start=True), "PGDTransformer"),
    (dict(step_size=0.01), "PGDTransformer"),
    (dict(clip_max=None), "FGSMTransformer"),
])
def test_removed_attack_parameters_say_where_they_went(params, cls):
    name = next(iter(params))
    with pytest.raises(TypeError, match=rf"attack={cls}\({name}=.*attack__{name}="):
        AdversarialTrainer(small_net(), **params)
    with pytest.raises(ValueError, match=f"Invalid parameter '{name}'"):
        AdversarialTrainer(small_net()).set_params(**params)


@pytest.mark.parametrize("params, error, match", [
    (dict(attack=FGSMTransformer(eps=-0.1)), ValueError, "'eps'"),
    (dict(attack=PGDTransformer(n_iter=-1)), ValueError, "'n_iter'"),
    (dict(replace_ratio=1.5), ValueError, "replace_ratio"),
    (dict(replace_ratio=-0.1), ValueError, "replace_ratio"),
    (dict(estimator=LogisticRegression()), TypeError, "not a skorch classifier"),
    (dict(attack="cw"), ValueError, "attack='cw'"),
    (dict(attack=FGSMTransformer), ValueError, "attack=<class"),
    (dict(attack=SquareAttackTransformer()), ValueError, "gradient attack"),
    (dict(attack=FGSMTransformer(small_net())), ValueError, "estimator=None"),
    (dict(attack=FGSMTransformer(targeted=True)), ValueError, "untargeted"),
    (dict(attack=PGDTransformer(immutable=[0])), ValueError, r"constraints \(immutable\)"),
    (dict(attack=FGSMTransformer(clip_min="data", eps_scale="std")), ValueError,
     r"constraints \(eps_scale, clip_min\)"),
    (dict(attack=FGSMTransformer(norm=3)), ValueError, "norm"),
    (dict(robust_val_fraction=1.0), ValueError, "robust_val_fraction"),
    (dict(mixed_precision="yes"), ValueError, "mixed_precision='yes'"),
    (dict(estimator=FrozenEstimator(default_net())), ValueError, "unfitted"),
])
def test_bad_parameters_raise_clear_errors(blobs, params, error, match):
    X, y = blobs
    with pytest.raises(error, match=match):
        AdversarialTrainer(**{"estimator": small_net(), **params}).fit(X, y)


def test_mixed_precision_needs_bfloat16_autocast_on_the_device():
    check_bfloat16_autocast(torch.device("cpu"))
    with pytest.raises(ValueError, match="mixed_precision=True needs torch.autocast"):
        check_bfloat16_autocast(torch.device("meta"))


# ---------------------------------------------------------------- mixed precision


class _DtypeRecorder(nn.Module):
    """A linear classifier that records the dtype of its logits and the mode."""

    seen = []

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x):
        out = self.linear(x)
        _DtypeRecorder.seen.append((self.training, torch.is_grad_enabled(), out.dtype))
        return out


def test_mixed_precision_runs_training_forward_passes_in_bfloat16(blobs):
    X, y = blobs
    _DtypeRecorder.seen = []
    net = NeuralNetClassifier(_DtypeRecorder, criterion=nn.CrossEntropyLoss, max_epochs=1,
                              batch_size=40, train_split=None, verbose=0)
    clf = AdversarialTrainer(net, attack="fgsm", mixed_precision=True, random_state=0)
    clf.fit(X, y)
    crafting = [d for training, grad, d in _DtypeRecorder.seen if not training]
    steps = [d for training, grad, d in _DtypeRecorder.seen if training]
    assert len(steps) == 3 and set(steps) == {torch.bfloat16}
    assert set(crafting[:3]) == {torch.bfloat16}  # the FGSM passes of the 3 batches
    assert all(p.dtype == torch.float32 for p in clf.estimator_.module_.parameters())
    _DtypeRecorder.seen = []
    assert clf.predict_proba(X).dtype == np.float32  # predictions stay float32
    assert {d for _, _, d in _DtypeRecorder.seen} == {torch.float32}
    _DtypeRecorder.seen = []
    AdversarialTrainer(net, attack="fgsm", random_state=0).fit(X, y)
    assert {d for _, _, d in _DtypeRecorder.seen} == {torch.float32}


@pytest.mark.slow
def test_mixed_precision_keeps_robust_accuracy():
    """PGD-5 training of a small MLP on the 8x8 digits, float32 against bfloat16 from
    the same seeds; PGD-20 robust accuracy (float32) on 597 held-out digits, averaged
    over three seeds, does not fall by 0.5 points or more. (One seed against another
    moves it by up to 1.7 points in float32 alone, so a gain is noise; a loss of 0.5
    points over three seeds would be a robustness cost of bfloat16.)"""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    order = np.random.RandomState(0).permutation(len(X))
    train, test = order[:1200], order[1200:]
    eps = 0.1
    attack = PGDTransformer(eps=eps, step_size=2.5 * eps / 20, n_iter=20, random_start=True,
                            random_state=0)
    robust = {False: [], True: []}
    for seed in range(3):
        for mixed in (False, True):
            net = small_net(module__hidden_units=(128,), optimizer=torch.optim.Adam,
                            lr=1e-2, max_epochs=15, batch_size=64)
            clf = AdversarialTrainer(net, attack=PGDTransformer(
                eps=eps, step_size=2.5 * eps / 5, n_iter=5, random_start=True),
                mixed_precision=mixed, random_state=seed).fit(X[train], y[train])
            X_adv = attack.set_params(estimator=clf).fit(X[train], y[train]).generate(
                X[test], y[test])
            robust[mixed].append(clf.score(X_adv, y[test]))
    assert np.mean(robust[False]) > 0.7  # the training worked
    assert np.mean(robust[True]) > np.mean(robust[False]) - 0.005


def test_bad_data_raise_clear_errors(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="above the attack's clip_max=1.0 "
                                         r"\(in 120 of 120 rows\).*attack__clip_max"):
        AdversarialTrainer(small_net()).fit(X + 1, y)
    X_low = X.copy()
    X_low[3, 2] = -0.5
    with pytest.raises(ValueError, match=r"below the attack's clip_min=0.0 \(in 1 of"):
        AdversarialTrainer(small_net()).fit(X_low, y)
    unbounded = FGSMTransformer(clip_min=None, clip_max=None)
    assert AdversarialTrainer(small_net(max_epochs=1), attack=unbounded).fit(X + 1, y)
    with pytest.raises(ValueError, match="1 class"):
        AdversarialTrainer(small_net()).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="5 scores per sample"):
        AdversarialTrainer(small_net(module__n_classes=5, max_epochs=1)).fit(X, y)


# ---------------------------------------------------------------- sklearn integration


def test_clone_pickle_set_params_round_trips(blobs):
    X, y = blobs
    labels = np.array(["cat", "dog", "emu"])[y]
    net = small_net()
    clf = AdversarialTrainer(net, attack=FGSMTransformer(eps=0.1), random_state=0)
    clf.fit(X, labels)
    assert net.get_params()["max_epochs"] == 3 and not hasattr(net, "module_")
    assert set(clf.predict(X)) <= set(labels)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert proba.dtype == np.float32
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    assert isinstance(restored.estimator_, type(clf.estimator_))
    twin = clone(clf)
    assert not hasattr(twin, "estimator_")
    assert twin.get_params()["attack__eps"] == 0.1 and twin.attack is not clf.attack
    twin.set_params(attack__eps=0.2, estimator__max_epochs=1, estimator__lr=0.05)
    assert clf.attack.eps == 0.1
    assert twin.estimator.max_epochs == 1 and twin.estimator.lr == 0.05
    assert twin.fit(X, labels).estimator_.lr == 0.05 and len(twin.estimator_.history) == 1


def test_trained_model_is_attackable(blobs):
    X, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    clf = AdversarialTrainer(small_net(), attack=FGSMTransformer(eps=0.1),
                             random_state=0).fit(X, labels)
    model = as_torch_model(FrozenEstimator(clf))
    assert list(model.classes) == ["a", "b", "c"]
    X_adv = PGDTransformer(FrozenEstimator(clf), eps=0.1, step_size=0.02,
                           n_iter=5).fit(X, labels).generate(X, labels)
    assert np.abs(X_adv - X).max() <= 0.1 + 1e-6
    assert clf.score(X_adv, labels) <= clf.score(X, labels)


def test_warm_start_continues_training(blobs):
    X, y = blobs
    clf = AdversarialTrainer(small_net(max_epochs=2), replace_ratio=0.0, random_state=0)
    clf.fit(X, y)
    first = _weights(clf.estimator_)
    clf.estimator_.set_params(lr=0.0)  # warm starts continue estimator_ as it is
    clf.set_params(warm_start=True, replace_ratio=0.5).fit(X, y)
    assert len(clf.estimator_.history) == 4
    assert _same_weights(first, _weights(clf.estimator_))  # lr=0: not re-initialised
    clf.set_params(warm_start=False).fit(X, y)
    assert len(clf.estimator_.history) == 2


def test_frozen_net_is_fine_tuned_on_a_copy(blobs):
    X, y = blobs
    pretrained = small_net(module__n_features=6, module__n_classes=3).fit(X, y)
    before = _weights(pretrained)
    pretrained.set_params(lr=0.0, max_epochs=1)  # fine-tuning uses the net's settings
    clf = AdversarialTrainer(FrozenEstimator(pretrained), replace_ratio=0.5,
                             random_state=0).fit(X, y)
    assert _same_weights(before, _weights(clf.estimator_))  # starts from its weights
    pretrained.set_params(lr=0.05)
    clf.fit(X, y)
    assert not _same_weights(before, _weights(clf.estimator_))
    assert _same_weights(before, _weights(pretrained))  # the given net is untouched
    assert clf.estimator_ is not pretrained


# ---------------------------------------------------------------- catastrophic-overfitting guard


class _Recorder(Callback):
    def initialize(self):
        self.states = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.states.append(_weights(net))


def test_robust_checkpoint_restores_the_best_epoch(blobs, monkeypatch):
    X, y = blobs
    scripted = iter([0.2, 0.7, 0.4, 0.6])
    monkeypatch.setattr(RobustCheckpoint, "robust_accuracy",
                        lambda self, net, dataset: next(scripted))
    recorder = _Recorder()
    clf = AdversarialTrainer(small_net(max_epochs=4, callbacks=[("rec", recorder)]),
                             attack=FGSMTransformer(eps=0.1), robust_val_fraction=0.25,
                             random_state=0).fit(X, y)
    history = clf.estimator_.history
    assert history[:, "valid_robust_acc"] == [0.2, 0.7, 0.4, 0.6]
    assert history[:, "valid_robust_acc_best"] == [True, True, False, False]
    assert clf.best_epoch_ == 2
    states = dict(clf.estimator_.callbacks_)["rec"].states  # the clone's recorder
    assert _same_weights(states[1], _weights(clf.estimator_))
    assert not _same_weights(states[3], _weights(clf.estimator_))


def test_robust_checkpoint_measures_the_restored_weights(blobs):
    X, y = blobs
    fast = PGDTransformer(eps=0.2, step_size=0.25, n_iter=1, random_start=True)
    clf = AdversarialTrainer(small_net(max_epochs=4), attack=fast,
                             robust_val_fraction=0.25, random_state=0).fit(X, y)
    net = clf.estimator_
    scores = net.history[:, "valid_robust_acc"]
    assert len(scores) == 4 and all(0 <= s <= 1 for s in scores)
    assert clf.best_epoch_ == int(np.argmax(scores)) + 1
    _, dataset_valid = net.get_split_datasets(X.astype(np.float32), y)
    assert len(dataset_valid) == 30  # held out, not trained on
    checkpoint = dict(net.callbacks_)["robust_checkpoint"]
    assert checkpoint.robust_accuracy(net, dataset_valid) == max(scores)
