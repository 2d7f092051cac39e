import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from skorch import NeuralNetClassifier

from skrobust.attacks import FGSMTransformer
from skrobust.attacks._base import attack_estimator
from skrobust.models import MLP
from skrobust.privacy import MaskLayer, SuppressPrivacyClassifier
from skrobust.privacy._masker import _SuppressMasker
from skrobust.privacy._masks import adjust_kept, magnitude_mask
from skrobust.privacy._schedule import cubic_sparsity, suppress_schedule
from skrobust.utils import as_torch_model, extract_features


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=240, n_features=10, n_informative=6, n_classes=3,
                               random_state=0)
    X = MinMaxScaler().fit_transform(X).astype(np.float32)
    return X, np.array(["a", "b", "c"])[y]


def net(**params):
    defaults = dict(module=MLP, module__hidden_units=(32,), criterion=torch.nn.CrossEntropyLoss,
                    optimizer=torch.optim.Adam, lr=0.02, max_epochs=4, batch_size=32,
                    train_split=None, iterator_train__shuffle=True, verbose=0)
    defaults.update(params)
    return NeuralNetClassifier(**defaults)


def weights(clf):
    return dict(clf.estimator_.module_.named_parameters())


def test_cubic_ramp_and_schedule():
    assert cubic_sparsity(0.0, 0.1, 0.9) == pytest.approx(0.1)
    assert cubic_sparsity(1.0, 0.1, 0.9) == pytest.approx(0.9)
    assert cubic_sparsity(0.5, 0.0, 0.8) == pytest.approx(0.8 - 0.8 / 8)
    # the tutorial's ratio: 1000 operations over epochs 3-10 of 1875 batches
    steps, targets = suppress_schedule(1875, 3, 10, 1000, 0.0, 0.95)
    assert len(steps) == 1000
    assert steps[0] == 2 * 1875 and steps[-1] == 10 * 1875 - 1
    assert np.all(np.diff(steps) > 0) and np.all(np.diff(targets) >= 0)
    assert targets[0] == 0.0 and targets[-1] == pytest.approx(0.95)
    # fewer batches than operations: capped at one operation per batch of the window
    steps, targets = suppress_schedule(4, 2, 3, 1000, 0.0, 0.9)
    np.testing.assert_array_equal(steps, np.arange(4, 12))
    assert targets[-1] == pytest.approx(0.9)
    steps, targets = suppress_schedule(5, 1, 1, 1, 0.0, 0.7)
    assert steps.tolist() == [4] and targets.tolist() == [0.7]


def random_schedules(n=300, seed=0):
    """Random valid schedule arguments, small and large windows, few and many operations."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        batches, start = int(rng.integers(1, 60)), int(rng.integers(1, 6))
        end = start + int(rng.integers(0, 6))
        mask_times = int(rng.choice([1, 2, 3, int(rng.integers(1, 400)), 1000]))
        sparse_start = float(rng.choice([0.0, rng.uniform(0, 0.5)]))
        yield batches, start, end, mask_times, sparse_start, float(rng.uniform(sparse_start + 0.01, 0.99))


def test_cubic_sparsity_is_a_monotone_ramp_between_its_ends():
    t = np.linspace(-0.5, 1.5, 201)
    for start, end in [(0.0, 0.95), (0.1, 0.9), (0.3, 0.31)]:
        ramp = cubic_sparsity(t, start, end)
        assert np.all(np.diff(ramp) >= 0)
        np.testing.assert_allclose(ramp[t <= 0], start)  # progress is clipped to [0, 1]
        np.testing.assert_allclose(ramp[t >= 1], end)
        inside = (t > 0) & (t < 1)
        # cubic: most weights go early, above the straight line from start to end
        assert np.all(ramp[inside] > start + (end - start) * t[inside])


def test_schedule_spreads_operations_over_the_window_and_ends_at_sparse_end():
    for batches, start, end, mask_times, s0, s1 in random_schedules():
        steps, targets = suppress_schedule(batches, start, end, mask_times, s0, s1)
        first, last = (start - 1) * batches, end * batches - 1
        n_ops = min(mask_times, last - first + 1)
        assert len(steps) == len(targets) == n_ops
        assert np.issubdtype(steps.dtype, np.integer)
        assert np.all(np.diff(steps) > 0) and np.all(np.diff(targets) >= 0)
        assert steps[-1] == last and targets[-1] == pytest.approx(s1)  # the end step
        assert np.all((steps >= first) & (steps <= last))
        assert np.all((targets >= s0 - 1e-12) & (targets <= s1 + 1e-12))
        if n_ops > 1:
            assert steps[0] == first and targets[0] == pytest.approx(s0)
            assert np.ptp(np.diff(steps)) <= 1  # evenly spread, up to rounding


@pytest.mark.parametrize("min_kept", [0, 40])
def test_masks_along_the_schedule_reach_the_target_at_the_end_step(min_kept):
    # the schedule and the mask as functions, weights changing between operations
    gen = torch.Generator().manual_seed(0)
    for i, (batches, start, end, mask_times, s0, s1) in enumerate(random_schedules(40, 1)):
        weight = torch.randn(7, 11, generator=gen)
        steps, targets = suppress_schedule(batches, start, end, mask_times, s0, s1)
        keep, suppressed = None, []
        for target in targets:
            keep = magnitude_mask(weight, target, min_kept=min_kept, previous=keep)
            weight = (weight + 0.5 * torch.randn(weight.shape, generator=gen)) * keep
            suppressed.append(int((~keep).sum()))
            assert int((weight == 0).sum()) == suppressed[-1]
        assert np.all(np.diff(suppressed) >= 0), i
        assert suppressed[-1] == min(int(np.floor(s1 * weight.numel() + 1e-9)),
                                     weight.numel() - min_kept), i


def test_magnitude_mask_properties():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 4, 3, generator=gen)
    before = weight.clone()
    masks = [magnitude_mask(weight, s) for s in np.linspace(0, 1, 11)]
    torch.testing.assert_close(weight, before)  # the weights are not touched
    for s, keep in zip(np.linspace(0, 1, 11), masks):
        assert keep.shape == weight.shape and keep.dtype == torch.bool
        assert int((~keep).sum()) == int(np.floor(s * weight.numel() + 1e-9))
        if 0 < s < 1:  # the smallest magnitudes go
            assert weight.abs()[~keep].max() <= weight.abs()[keep].min()
    for low, high in zip(masks, masks[1:]):  # nested: more sparsity, fewer kept
        assert torch.all(high <= low)


def test_adjust_kept():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(200, generator=gen) * 0.4
    keep = torch.rand(200, generator=gen) > 0.3
    clip = adjust_kept(weight.clone(), keep, MaskLayer("w", lower_clip=0.05, upper_bound=0.6))
    assert torch.all(clip[keep].abs() >= 0.05) and torch.all(clip.abs() <= 0.6)
    torch.testing.assert_close(clip[~keep], weight[~keep].clamp(-0.6, 0.6))
    assert torch.all(torch.sign(clip[keep]) == torch.where(weight[keep] >= 0, 1.0, -1.0))
    torch.testing.assert_close(adjust_kept(weight.clone(), keep, MaskLayer("w")), weight)
    layer = MaskLayer("w", noise=0.01)
    a = adjust_kept(weight.clone(), keep, layer, generator=torch.Generator().manual_seed(1))
    b = adjust_kept(weight.clone(), keep, layer, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    bound = min(0.5, max(0.1, 0.75 * float(weight[keep].abs().max())))
    large = keep & (weight.abs() > bound)
    assert large.any() and torch.all((a - weight)[large].abs() <= 0.01)
    assert torch.any(a[large] != weight[large]) and torch.equal(a[~large], weight[~large])


def test_magnitude_mask():
    w = torch.tensor([0.5, -0.01, 0.2, 0.03, -0.4, 0.0])
    keep = magnitude_mask(w, 0.5)
    assert keep.tolist() == [True, False, True, False, True, False]
    assert magnitude_mask(w, 0.9, min_kept=4).sum() == 4
    # masks only grow: a suppressed weight stays suppressed even if it is now large
    previous = torch.tensor([False, True, True, True, True, True])
    keep = magnitude_mask(w, 0.2, previous=previous)
    assert not keep[0] and keep.sum() == 5


def test_fit_reaches_sparse_end_and_predicts(data):
    X, y = data
    clf = SuppressPrivacyClassifier(net(), start_epoch=2, end_epoch=3, mask_times=5,
                                    sparse_end=0.8, random_state=0).fit(X, y)
    assert set(clf.masks_) == {"fc1.weight", "out.weight"}
    for name, keep in clf.masks_.items():
        w = weights(clf)[name].detach().numpy()
        assert keep.shape == w.shape and keep.dtype == bool
        assert np.all(w[~keep] == 0)
        assert clf.layer_sparsity_[name] == pytest.approx(np.floor(0.8 * w.size) / w.size)
    assert clf.sparsity_ == pytest.approx(0.8, abs=0.01)
    # 8 batches per epoch, 16 in the window, 5 operations, the last on the last batch
    assert clf.schedule_.batches_per_epoch == 8
    assert clf.schedule_.batch.tolist() == [8, 12, 16, 19, 23]
    assert clf.schedule_.epoch.tolist() == [2, 2, 3, 3, 3]
    assert clf.schedule_.target_sparsity[-1] == pytest.approx(0.8)
    assert np.all(np.diff(clf.schedule_.sparsity) >= 0)
    assert set(clf.predict(X)) <= set(clf.classes_)
    np.testing.assert_allclose(clf.predict_proba(X).sum(1), 1, rtol=1e-5)
    assert clf.score(X, y) > 0.5  # chance is 1/3


def test_masker_takes_the_schedule_as_one_dict(data, capsys):
    # the estimator's five schedule parameters reach the callback as one dict, which
    # places the operations (suppress_schedule) and bounds the verbose window
    X, y = data
    schedule = dict(start_epoch=2, end_epoch=3, mask_times=5, sparse_start=0.1,
                    sparse_end=0.8)
    clf = SuppressPrivacyClassifier(net(), random_state=0, verbose=1, **schedule).fit(X, y)
    masker = next(cb for _, cb in clf.estimator_.callbacks_ if isinstance(cb, _SuppressMasker))
    assert masker.schedule == schedule
    assert clone(masker).get_params()["schedule"] == schedule
    steps, targets = suppress_schedule(clf.schedule_.batches_per_epoch, **schedule)
    np.testing.assert_array_equal(clf.schedule_.batch, steps)
    np.testing.assert_allclose(clf.schedule_.target_sparsity, targets)
    printed = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("suppress-privacy")]
    assert [line.split(",")[0] for line in printed] == [
        "suppress-privacy: epoch 2", "suppress-privacy: epoch 3"]


def test_sparsity_reached_in_one_mask_step(data):
    X, y = data
    clf = SuppressPrivacyClassifier(net(max_epochs=2), start_epoch=1, end_epoch=1,
                                    mask_times=1, sparse_end=0.9, random_state=0).fit(X, y)
    assert len(clf.schedule_.batch) == 1
    assert clf.schedule_.sparsity[0] == pytest.approx(0.9, abs=0.01)
    assert clf.sparsity_ == pytest.approx(clf.schedule_.sparsity[0])


@pytest.mark.parametrize("optimizer, params", [
    (torch.optim.SGD, {"optimizer__momentum": 0.9, "optimizer__weight_decay": 1e-2, "lr": 0.1}),
    (torch.optim.Adam, {"optimizer__weight_decay": 1e-2, "lr": 0.01}),
])
def test_masked_weights_stay_zero_after_further_steps(data, optimizer, params):
    # momentum, Adam moments and weight decay would revive suppressed weights if
    # only the gradients were masked
    X, y = data
    clf = SuppressPrivacyClassifier(net(max_epochs=5, optimizer=optimizer, **params),
                                    start_epoch=1, end_epoch=2, mask_times=4,
                                    sparse_end=0.7, random_state=0).fit(X, y)
    final = clf.schedule_.sparsity[-1]
    for name, keep in clf.masks_.items():
        w = weights(clf)[name].detach().numpy()
        assert np.all(w[~keep] == 0), name
        assert np.count_nonzero(w[keep]) == keep.sum()  # kept weights kept training
    assert clf.sparsity_ == pytest.approx(final)
    # and after more optimiser steps on the fitted net
    clf.estimator_.partial_fit(X, np.searchsorted(clf.classes_, y))
    for name, keep in clf.masks_.items():
        assert np.all(weights(clf)[name].detach().numpy()[~keep] == 0)


def test_mask_layer_settings(data):
    X, y = data
    layers = [MaskLayer("fc1", min_kept=100, lower_clip=0.05, upper_bound=0.3),
              {"name": "out.weight", "noise": 0.01}]
    clf = SuppressPrivacyClassifier(net(), start_epoch=1, end_epoch=4, mask_times=3,
                                    sparse_end=0.9, mask_layers=layers,
                                    random_state=0).fit(X, y)
    assert set(clf.masks_) == {"fc1.weight", "out.weight"}
    assert clf.masks_["fc1.weight"].sum() == 100  # min_kept beats the 90 % target
    w = weights(clf)["fc1.weight"].detach().numpy()[clf.masks_["fc1.weight"]]
    # the last operation ran after the last step: clipping is visible in the result
    assert np.abs(w).min() >= 0.05 - 1e-7 and np.abs(w).max() <= 0.3 + 1e-7
    assert "fc1.bias" not in clf.masks_


def test_reproducible_and_does_not_mutate(data):
    X, y = data
    template = net()
    clf = SuppressPrivacyClassifier(template, start_epoch=1, end_epoch=2, mask_times=3,
                                    sparse_end=0.5, random_state=3)
    a, b = clone(clf).fit(X, y), clone(clf).fit(X, y)
    for name in a.masks_:
        np.testing.assert_array_equal(a.masks_[name], b.masks_[name])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not hasattr(template, "module_") and template.callbacks is None
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X), a.predict(X))


def test_clone_keeps_mask_layers(data):
    layers = [MaskLayer("fc1", min_kept=3), {"name": "out.weight", "noise": 0.01}]
    clf = SuppressPrivacyClassifier(net(), mask_layers=layers, start_epoch=1, end_epoch=2)
    params = clone(clf).get_params()
    assert params["mask_layers"] == layers and params["estimator__lr"] == 0.02
    assert clone(clf.set_params(estimator__max_epochs=7)).estimator.max_epochs == 7


def test_torch_model_protocol(data):
    X, y = data
    clf = SuppressPrivacyClassifier(net(), start_epoch=1, end_epoch=2, sparse_end=0.5,
                                    random_state=0).fit(X, y)
    assert extract_features(clf, X[:5], "fc1").shape == (5, 32)
    X_adv = attack_estimator(FGSMTransformer(eps=0.2), clf, X, y)
    assert np.abs(X_adv - X).max() <= 0.2 + 1e-6
    assert np.mean(clf.predict(X_adv) == y) < np.mean(clf.predict(X) == y)


def test_pipeline_and_grid_search(data):
    X, y = data
    clf = SuppressPrivacyClassifier(net(max_epochs=2), start_epoch=1, end_epoch=2,
                                    sparse_end=0.5, random_state=0)
    grid = GridSearchCV(make_pipeline(MinMaxScaler(), clf),
                        {"suppressprivacyclassifier__estimator__lr": [1e-4, 0.02]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["suppressprivacyclassifier__estimator__lr"] == 0.02


def test_default_net(data):
    X, y = data
    clf = SuppressPrivacyClassifier(start_epoch=1, end_epoch=2, sparse_end=0.5,
                                    random_state=0).fit(X, y)
    assert clf.sparsity_ == pytest.approx(0.5, abs=0.01)


def test_wraps_adversarial_trainer(data):
    from skrobust.defenses import AdversarialTrainer

    X, y = data
    clf = SuppressPrivacyClassifier(AdversarialTrainer(net(max_epochs=3)), start_epoch=1, end_epoch=3,
                                    mask_times=4, sparse_end=0.6, random_state=0).fit(X, y)
    assert clf.sparsity_ == pytest.approx(0.6, abs=0.01)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert extract_features(clf, X[:3], "fc1").shape == (3, 32)
    # the wrapped trainer learnt indices; the torch view labels its columns with y's labels
    model = as_torch_model(clf)
    np.testing.assert_array_equal(model.classes, clf.classes_)
    assert model.module is clf.estimator_.estimator_.module_
    X_adv = attack_estimator(FGSMTransformer(eps=0.2), clf, X, y)
    assert np.abs(X_adv - X).max() <= 0.2 + 1e-6


@pytest.mark.parametrize("params, match", [
    ({"start_epoch": 0}, "start_epoch=0 must be a positive integer"),
    ({"start_epoch": 3, "end_epoch": 2}, "0 < start_epoch <= end_epoch <= max_epochs"),
    ({"start_epoch": 1, "end_epoch": 9}, "raise estimator__max_epochs"),
    ({"mask_times": 0}, "mask_times=0"),
    ({"sparse_start": 0.5, "sparse_end": 0.5}, "0 <= sparse_start < sparse_end < 1"),
    ({"sparse_end": 1.0}, "0 <= sparse_start < sparse_end < 1"),
    ({"sparse_start": -0.1}, "0 <= sparse_start < sparse_end < 1"),
    ({"mask_layers": []}, "mask_layers is empty"),
    ({"mask_layers": ["fc1", "fc1"]}, "more than once"),
    ({"mask_layers": [MaskLayer("fc1", min_kept=-1)]}, "min_kept=-1"),
    ({"mask_layers": [{"name": "fc1", "nosie": 0.1}]}, "not a valid layer description"),
    ({"mask_layers": [3]}, "mask_layers\\[0\\] is a int"),
    ({"mask_layers": ["conv9"]}, "'conv9', which is neither a parameter"),
])
def test_bad_parameters(data, params, match):
    X, y = data
    params = {"start_epoch": 1, "end_epoch": 2, **params}
    clf = SuppressPrivacyClassifier(net(max_epochs=2), **params)
    with pytest.raises((ValueError, TypeError), match=match):
        clf.fit(X, y)


def test_bad_estimator_and_targets(data):
    X, y = data
    from sklearn.linear_model import LogisticRegression

    from sklearn.frozen import FrozenEstimator

    with pytest.raises(TypeError, match="holds no skorch net"):
        SuppressPrivacyClassifier(LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="suppress-privacy training trains the net"):
        SuppressPrivacyClassifier(FrozenEstimator(net())).fit(X, y)
    # a torch module is used as is by the victim layer: refused for the same reason
    with pytest.raises(TypeError, match="MLP, which is used as is"):
        SuppressPrivacyClassifier(MLP(n_features=10, n_classes=3)).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SuppressPrivacyClassifier(net()).fit(X, np.zeros(len(X)))
