import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skrobust.detection import DriftResult, MMDDriftDetector


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.RandomState(0)
    return rng.randn(3000, 4), rng.randn(3000, 4)


def two_layer_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def test_calibrated_on_clean_data(gaussians):
    ref, clean = gaussians
    detector = MMDDriftDetector(n_permutations=100, random_state=0).fit(ref)
    fpr = detector.detection_rate(clean, n_repeats=1000, sample_size=20)
    assert 0.03 <= fpr <= 0.07


@pytest.mark.parametrize("params", [
    {"kernel": "rbf_mixture"},
    {"standardize": True},
    {"estimator": "net", "layers": ["input", "0", "1", "2"]},
])
def test_options_stay_calibrated(gaussians, params):
    ref, clean = gaussians
    params = dict(params)
    if params.get("estimator") == "net":
        params["estimator"] = two_layer_net()
    detector = MMDDriftDetector(n_permutations=50, random_state=1, **params).fit(ref)
    rate = detector.detection_rate(clean, n_repeats=300, sample_size=20)
    rate = rate["combined"] if isinstance(rate, dict) else rate
    assert 0.015 <= rate <= 0.09


def test_power_on_shifted_gaussians(gaussians):
    ref, clean = gaussians
    detector = MMDDriftDetector(random_state=0).fit(ref[:1000])
    assert detector.detection_rate(clean + 0.6, n_repeats=50, sample_size=50) >= 0.95
    result = detector.test(clean[:200] + 1.0)
    assert isinstance(result, DriftResult)
    assert result.is_drift and result.p_value == pytest.approx(1 / 101)
    assert result.statistic > result.threshold > 0
    assert detector.test(clean[:200]).is_drift is False


def test_result_fields_are_consistent(gaussians):
    ref, clean = gaussians
    detector = MMDDriftDetector(n_permutations=200, alpha=0.1, random_state=0).fit(ref[:300])
    for shift in (0.0, 0.1, 0.2, 0.4):
        result = detector.test(clean[:60] + shift)
        null = result.null_statistics
        assert null.shape == (200,)
        assert result.p_value == pytest.approx((1 + np.sum(null >= result.statistic)) / 201)
        assert 1 / 201 <= result.p_value <= 1
        assert result.is_drift == (result.p_value <= 0.1)
        assert result.is_drift == (result.statistic > result.threshold)
        assert detector.score(clean[:60] + shift) == result.p_value


def test_random_state_determinism(gaussians):
    ref, clean = gaussians
    X = clean[:100] + 0.1
    a = MMDDriftDetector(random_state=3).fit(ref[:500]).test(X)
    b = MMDDriftDetector(random_state=3).fit(ref[:500]).test(X)
    c = MMDDriftDetector(random_state=4).fit(ref[:500]).test(X)
    np.testing.assert_array_equal(a.null_statistics, b.null_statistics)
    assert a.p_value == b.p_value
    assert not np.array_equal(a.null_statistics, c.null_statistics)
    assert a.statistic == pytest.approx(c.statistic)  # the statistic itself is not random
    detector = MMDDriftDetector(random_state=3).fit(ref[:500])
    assert detector.score(X) == detector.score(X)  # repeated calls agree
    rate = detector.detection_rate(clean, n_repeats=20, sample_size=30)
    assert rate == detector.detection_rate(clean, n_repeats=20, sample_size=30)


def test_block_size_does_not_change_the_result(gaussians):
    ref, clean = gaussians
    X = clean[:150] + 0.2
    a = MMDDriftDetector(random_state=0).fit(ref[:400]).test(X)
    b = MMDDriftDetector(random_state=0, block_size=37).fit(ref[:400]).test(X)
    np.testing.assert_allclose(a.null_statistics, b.null_statistics, atol=1e-12)
    assert a.p_value == b.p_value


@pytest.mark.parametrize("params, match", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"alpha": 1.5}, "alpha"),
    ({"n_permutations": 0}, "n_permutations"), ({"kernel": "linear"}, "kernel"),
    ({"gamma": -1.0}, "gamma"), ({"gamma": "mean"}, "gamma"),
    ({"class_matched": True}, "class_matched"), ({"layers": "relu1"}, "layers"),
])
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        MMDDriftDetector(**params).fit(np.zeros((10, 2)) + np.arange(10)[:, None])


def test_bad_input(gaussians):
    ref, clean = gaussians
    with pytest.raises(ValueError, match="minimum of 2"):
        MMDDriftDetector().fit(ref[:1])
    detector = MMDDriftDetector(random_state=0).fit(ref[:100])
    with pytest.raises(ValueError, match="minimum of 2"):
        detector.test(clean[:1])
    with pytest.raises(ValueError, match="4 features"):
        detector.score(clean[:10, :3])
    X_nan = clean[:10].copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detector.test(X_nan)
    with pytest.raises(ValueError, match="NaN"):
        MMDDriftDetector().fit(X_nan)
    with pytest.raises(ValueError, match="sample_size"):
        detector.detection_rate(clean[:50], sample_size=60)
    with pytest.raises(ValueError, match="n_repeats"):
        detector.detection_rate(clean[:50], n_repeats=0, sample_size=10)
    with pytest.raises(TypeError, match="Cannot attack|must be"):
        MMDDriftDetector("not a net").fit(ref[:10])


def test_inputs_are_not_modified_or_kept(gaussians):
    ref, clean = gaussians
    ref_copy, X = ref[:100].copy(), clean[:50].copy()
    detector = MMDDriftDetector(random_state=0, standardize=True).fit(ref_copy)
    detector.test(X)
    detector.score_samples(X)
    np.testing.assert_array_equal(ref_copy, ref[:100])
    np.testing.assert_array_equal(X, clean[:50])
    ref_copy[:] = 0  # the detector holds its own copy
    assert detector.X_ref_["input"].std() > 0.5


def test_layers_of_a_network(gaussians):
    ref, clean = gaussians
    net = two_layer_net()
    detector = MMDDriftDetector(net, layers=["input", "1", "output"], random_state=0).fit(ref[:300])
    assert detector.layers_ == ["input", "1", "output"]
    assert set(detector.X_ref_) == {"input", "1", "output"}
    assert detector.X_ref_["1"].shape == (300, 16) and detector.X_ref_["output"].shape == (300, 3)
    assert set(detector.gamma_) == {"input", "1", "output"}
    result = detector.test(clean[:100] + 1.0)
    assert set(result.per_layer) == {"input", "1", "output"}
    assert result.is_drift and all(r.is_drift for r in result.per_layer.values())
    rates = detector.detection_rate(clean + 1.0, n_repeats=10, sample_size=50)
    assert set(rates) == {"input", "1", "output", "combined"}
    assert min(rates.values()) == 1.0
    single = MMDDriftDetector(net, random_state=0).fit(ref[:300])
    assert single.layers_ == ["output"] and single.X_ref_["output"].shape == (300, 3)
    with pytest.raises(ValueError, match="Unknown layer"):
        MMDDriftDetector(net, layers="conv9").fit(ref[:30])


def test_fitted_attributes_have_one_type_whatever_the_number_of_layers(gaussians):
    ref, _ = gaussians
    net = two_layer_net()
    for layers, standardize in ((None, False), ("1", True), (["input", "1"], True)):
        detector = MMDDriftDetector(net, layers=layers, standardize=standardize,
                                    random_state=0).fit(ref[:100])
        names = detector.layers_
        assert isinstance(detector.X_ref_, dict) and list(detector.X_ref_) == names
        assert isinstance(detector.gamma_, dict) and list(detector.gamma_) == names
        assert all(isinstance(g, float) and g > 0 for g in detector.gamma_.values())
        if standardize:
            for name in names:
                np.testing.assert_allclose(detector.ref_mean_[name],
                                           detector.X_ref_[name].mean(0), atol=1e-6)
                assert detector.ref_scale_[name].shape == (detector.X_ref_[name].shape[1],)
        else:
            assert detector.ref_mean_ is None and detector.ref_scale_ is None
    plain = MMDDriftDetector(random_state=0).fit(ref[:100])
    assert list(plain.X_ref_) == ["input"] and list(plain.gamma_) == ["input"]


def test_old_names_fail_with_the_new_name(gaussians):
    ref, clean = gaussians
    with pytest.raises(TypeError, match=r"layer is now layers.*pass layers='relu1'"):
        MMDDriftDetector(layer="relu1")
    with pytest.raises(ValueError, match="Invalid parameter 'layer'.*'layers'"):
        MMDDriftDetector().set_params(layer="input")
    detector = MMDDriftDetector(standardize=True, random_state=0).fit(ref[:100])
    # the batch decision is test(X).is_drift: no predict with one bool per batch
    assert not hasattr(detector, "predict") and not hasattr(MMDDriftDetector, "predict")
    with pytest.raises(AttributeError, match=r"predict is gone.*test\(X\)\.is_drift"):
        detector.predict(clean[:50])
    for old, new in (("feature_scale_", "ref_scale_"), ("feature_mean_", "ref_mean_"),
                     ("layer", "layers")):
        assert not hasattr(detector, old)
        with pytest.raises(AttributeError, match=rf"{old} is now {new}"):
            getattr(detector, old)
    with pytest.raises(AttributeError, match="no attribute 'colour_'"):
        detector.colour_


def test_same_results_as_before_the_split(gaussians):
    """Figures of the detector before the split of _mmd.py and the renames (commit
    a7bbc93): the same seed gives the same null, p-values, rates and scores."""
    rng = np.random.RandomState(0)
    ref, X = rng.randn(200, 4), rng.randn(150, 4) + 0.2
    plain = MMDDriftDetector(random_state=3, n_permutations=50).fit(ref)
    result = plain.test(X[:60])
    assert result.statistic == pytest.approx(0.026238819700730165, rel=1e-9)
    assert result.p_value == 1 / 51 and result.per_layer["input"].p_value == 1 / 51
    assert result.threshold == pytest.approx(0.006462414056466637, rel=1e-9)
    assert plain.detection_rate(X, n_repeats=10, sample_size=30) == 0.5
    scores = plain.score_samples(X[:40])
    np.testing.assert_allclose(scores[:3], [-0.047332889761224184, -0.058341725847453674,
                                            0.05216324267826544], rtol=1e-9)
    assert scores.sum() == pytest.approx(-0.264711825370326, rel=1e-9)

    net = two_layer_net()
    layered = MMDDriftDetector(net, layers=["input", "1", "output"], class_matched=True,
                               standardize=True, random_state=3, n_permutations=50).fit(ref)
    result = layered.test(X[:60])
    assert result.statistic == pytest.approx(12.532095621323109, rel=1e-9)
    assert result.p_value == 6 / 51
    assert {k: r.p_value for k, r in result.per_layer.items()} == {
        "input": 7 / 51, "1": 12 / 51, "output": 3 / 51}
    assert layered.detection_rate(X, n_repeats=10, sample_size=30) == {
        "input": 0.1, "1": 0.1, "output": 0.2, "combined": 0.2}
    assert layered.score_samples(X[:40]).sum() == pytest.approx(-0.44903904318714405,
                                                                 rel=1e-9)


def test_class_matched_reference_ignores_class_imbalance():
    rng = np.random.RandomState(0)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0]])
    labels = rng.randint(2, size=2000)
    X = centres[labels] + rng.randn(2000, 2)
    net = nn.Linear(2, 2)
    with torch.no_grad():  # predicts the sign of the first feature
        net.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        net.bias.zero_()
    ref, pool = X[:1000], X[1000:]
    only_right = pool[pool[:, 0] > 0]  # a clean batch of a single class
    plain = MMDDriftDetector(net, layers="input", random_state=0).fit(ref)
    matched = MMDDriftDetector(net, layers="input", class_matched=True, random_state=0).fit(ref)
    assert plain.detection_rate(only_right, n_repeats=20, sample_size=50) == 1.0
    # calibrated, not conservative: labels are permuted within predicted classes
    assert 0.015 <= matched.detection_rate(only_right, n_repeats=200, sample_size=50) <= 0.09
    assert matched.detection_rate(pool + [0.0, 0.7], n_repeats=20, sample_size=50) >= 0.6
    assert matched.ref_classes_.shape == (1000,)


def test_standardize_helps_with_a_noisy_large_feature():
    rng = np.random.RandomState(0)
    scale = np.array([1.0, 100.0])
    ref, X = rng.randn(1000, 2) * scale, rng.randn(1000, 2) * scale + [1.0, 0.0]
    plain = MMDDriftDetector(random_state=0).fit(ref)
    std = MMDDriftDetector(random_state=0, standardize=True).fit(ref)
    assert std.detection_rate(X, n_repeats=30, sample_size=50) >= 0.8
    assert plain.detection_rate(X, n_repeats=30, sample_size=50) <= 0.3


def test_score_samples_ranks_the_shifted_rows(gaussians):
    ref, clean = gaussians
    detector = MMDDriftDetector(random_state=0).fit(ref[:500])
    batch = np.vstack([clean[:90], clean[90:100] + 4.0])
    scores = detector.score_samples(batch)
    assert scores.shape == (100,)
    assert scores[90:].max() < np.median(scores[:90])
    top = detector.top_k_suspicious(batch, k=10)
    assert len(top) == 10 and np.sum(top >= 90) >= 9
    assert len(detector.top_k_suspicious(batch, k=500)) == 100
    # rows are scored the same whatever their order in the batch
    order = np.random.RandomState(0).permutation(100)
    np.testing.assert_allclose(detector.score_samples(batch[order]), scores[order], atol=1e-12)


def test_pipeline_clone_and_pickle(gaussians):
    ref, clean = gaussians
    pipe = make_pipeline(StandardScaler(), MMDDriftDetector(random_state=0)).fit(ref[:200])
    assert 0 < pipe.score(clean[:50]) <= 1
    assert pipe.score(clean[:50] + 2.0) <= 0.05  # the scaler is applied first
    assert not hasattr(pipe, "predict")
    detector = MMDDriftDetector(random_state=0).fit(ref[:200])
    restored = pickle.loads(pickle.dumps(detector))
    assert restored.score(clean[:50]) == detector.score(clean[:50])
    fresh = clone(detector)
    assert not hasattr(fresh, "X_ref_") and fresh.get_params() == detector.get_params()


# --------------------------------------------------------------- cannot be blinded
@pytest.fixture(scope="module")
def drifted():
    """A reference and a batch the detector flags (40 reference rows + 3)."""
    rng = np.random.RandomState(0)
    ref = rng.rand(150, 8)
    return ref, ref[:40] + 3.0


def _assert_flagged(detector, batch):
    result = detector.test(batch)
    assert np.isfinite(result.statistic) and np.isfinite(result.threshold)
    assert np.isfinite(result.null_statistics).all()
    assert 0 < result.p_value <= 1
    assert result.is_drift, result
    scores = detector.score_samples(batch)
    assert np.isfinite(scores).all()
    return result


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("value", [1e30, -1e300, 1e300, np.finfo(np.float64).max])
def test_one_extreme_row_cannot_hide_drift(drifted, standardize, value):
    ref, batch = drifted
    detector = MMDDriftDetector(random_state=0, standardize=standardize).fit(ref)
    assert detector.test(batch).is_drift
    for rows in ([0], [0, 1, 2]):
        hostile = batch.copy()
        hostile[rows] = value
        _assert_flagged(detector, hostile)
    mixed = batch.copy()
    mixed[0, ::2], mixed[0, 1::2] = value, -value  # differences overflow float64
    _assert_flagged(detector, mixed)


@pytest.mark.parametrize("standardize", [False, True])
def test_a_whole_batch_scaled_to_1e300_is_drift(drifted, standardize):
    ref, batch = drifted
    detector = MMDDriftDetector(random_state=0, standardize=standardize).fit(ref)
    _assert_flagged(detector, batch * 1e300)
    _assert_flagged(detector, np.full_like(batch, 1e300))  # identical extreme rows


def test_extreme_row_on_the_output_layer(drifted):
    ref, batch = drifted
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    ref32, batch32 = ref.astype(np.float32), batch.astype(np.float32)
    for standardize in (False, True):
        detector = MMDDriftDetector(net, layers="output", standardize=standardize,
                                    random_state=0).fit(ref32)
        assert detector.test(batch32).is_drift
        hostile = batch32.copy()
        hostile[0] = 1e30  # float32 logits of about 1e29: their squares overflow float32
        _assert_flagged(detector, hostile)


def test_network_overflow_is_refused_or_flagged():
    rng = np.random.RandomState(0)
    ref = rng.rand(100, 2).astype(np.float32)
    net = nn.Linear(2, 2)
    with torch.no_grad():  # output 0: 10 (x0 - x1), NaN when both overflow; output 1: inf
        net.weight.copy_(torch.tensor([[10.0, -10.0], [10.0, 10.0]]))
        net.bias.zero_()
    detector = MMDDriftDetector(net, layers="output", random_state=0).fit(ref)
    batch = ref[:30].copy()
    batch[0] = [3e38, 3e38]
    with pytest.raises(ValueError, match=r"layer 'output' are NaN for 1 row\(s\) \(first: \[0\]\)"):
        detector.test(batch)
    with pytest.raises(ValueError, match="NaN"):
        detector.score_samples(batch)
    only_inf = ref[:30].copy()
    only_inf[:2] = [3e38, 0.0]  # logits +-inf, no NaN: saturated, isolated points
    result = detector.test(only_inf)
    assert np.isfinite(result.statistic) and 0 < result.p_value <= 1
    beyond = ref[:30].astype(np.float64)
    beyond[0] = 1e300  # beyond float32, where the network computes: refused up front
    with pytest.raises(ValueError, match="beyond the float32 range"):
        detector.test(beyond)


def test_reference_out_of_the_kernel_range_is_refused():
    ref = np.random.RandomState(0).rand(50, 3) * 1e200
    with pytest.raises(ValueError, match="overflow float64.*standardize=True"):
        MMDDriftDetector().fit(ref)
    detector = MMDDriftDetector(standardize=True, random_state=0).fit(ref)
    assert np.isfinite(detector.gamma_["input"]) and detector.gamma_["input"] > 0
    assert detector.test(ref[:30] * 3).is_drift


def test_non_finite_input_is_still_an_error(drifted):
    ref, batch = drifted
    detector = MMDDriftDetector(random_state=0).fit(ref)
    for bad in (np.nan, np.inf, -np.inf):
        X = batch.copy()
        X[1, 2] = bad
        with pytest.raises(ValueError, match="NaN|infinity"):
            detector.test(X)
        with pytest.raises(ValueError, match="NaN|infinity"):
            detector.score_samples(X)


def test_a_non_finite_statistic_is_never_a_p_value():
    from skrobust.detection._protocol import drift_result

    with pytest.raises(ValueError, match="not finite"):
        drift_result(np.array([np.nan, 0.1, 0.2]), 0.05)
    with pytest.raises(ValueError, match="not finite"):
        drift_result(np.array([0.5, np.nan, 0.2]), 0.05)


def test_standardize_scale_is_capped_by_the_reference(drifted):
    ref, batch = drifted
    detector = MMDDriftDetector(standardize=True, random_state=0).fit(ref)
    hostile = batch.copy()
    hostile[0] = 1e6  # would make the pooled scale ~1e5 times the reference's
    Z = detector._pooled(hostile, ref, "input")
    # the 39 other batch rows keep their shift of 3 / 0.29 ~ 10 reference standard
    # deviations up to the factor SCALE_CAP (uncapped: 1e-4)
    from skrobust.detection._mmd import SCALE_CAP
    assert SCALE_CAP == 4.0
    gap = Z[1:40].mean(0) - Z[40:].mean(0)
    assert gap.min() > 2.0
    assert np.isfinite(Z).all()


def test_property_appended_finite_rows_never_blind_the_detector(drifted):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    ref, batch = drifted
    detectors = [MMDDriftDetector(random_state=0, n_permutations=50,
                                  standardize=standardize).fit(ref)
                 for standardize in (False, True)]
    finite = st.floats(allow_nan=False, allow_infinity=False, width=64)

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=arrays(np.float64, st.tuples(st.integers(1, 3), st.just(8)), elements=finite),
           which=st.integers(0, 1), size=st.integers(20, 40),
           shift=st.floats(1.5, 1e6), sign=st.sampled_from([-1.0, 1.0]))
    def check(rows, which, size, shift, sign):
        detector = detectors[which]
        flagged = ref[:size] + sign * shift  # >= 5 reference standard deviations
        assert detector.test(flagged).is_drift
        hostile = np.vstack([flagged, rows])
        result = detector.test(hostile)
        assert np.isfinite(result.statistic)
        assert np.isfinite(result.p_value) and 0 < result.p_value <= 1
        assert result.is_drift  # a few rows, whatever their values, cannot hide it
        assert np.isfinite(detector.score_samples(hostile)).all()

    check()
