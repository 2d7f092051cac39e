import numpy as np
import pytest

from skrobust.metrics import avg_lp_distance, avg_ssim

X = np.array([[0.0, 0.5, 1.0, 0.5], [1.0, 1.0, 0.0, 0.0]])
X_ADV = np.array([[0.3, 0.5, 1.0, 0.1], [1.0, 1.0, 0.0, 0.0]])


def test_absolute_distances():
    assert avg_lp_distance(X, X_ADV, p=0) == 1.0
    assert avg_lp_distance(X, X_ADV, p=2) == pytest.approx(0.5 / 2)
    assert avg_lp_distance(X, X_ADV, p="inf") == pytest.approx(0.2)
    assert avg_lp_distance(X, X_ADV, p=np.inf) == pytest.approx(0.2)


def test_relative_distances_follow_mindarmour():
    l2 = np.linalg.norm(X_ADV[0] - X[0]) / np.linalg.norm(X[0])
    assert avg_lp_distance(X, X_ADV, p=2, relative=True) == pytest.approx(l2 / 2)
    assert avg_lp_distance(X, X_ADV, p=0, relative=True) == pytest.approx((2 / 3) / 2)


def test_bad_input():
    with pytest.raises(ValueError, match="p=1 is not supported"):
        avg_lp_distance(X, X_ADV, p=1)
    with pytest.raises(ValueError, match=r"X has shape \(2, 4\) but X_adv has shape \(1, 4\)"):
        avg_lp_distance(X, X_ADV[:1])
    with pytest.raises(ValueError, match=r"image_shape=\(3, 3\) holds 9 values"):
        avg_ssim(X, X_ADV, image_shape=(3, 3))


def test_ssim_identity_and_noise():
    rng = np.random.RandomState(0)
    images = rng.rand(3, 64)
    assert avg_ssim(images, images, image_shape=(8, 8)) == pytest.approx(1.0)
    noisy = np.clip(images + rng.normal(0, 0.3, images.shape), 0, 1)
    assert avg_ssim(images, noisy, image_shape=(8, 8)) < 0.9
