import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from skrobust.plotting import plot_adversarial_grid, plot_inversion_grid  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_adversarial_grid_shows_clean_over_adversarial_with_coloured_predictions():
    rng = np.random.RandomState(0)
    X, X_adv = rng.rand(4, 12), rng.rand(4, 12)
    X_before = X.copy()
    fig = plot_adversarial_grid(X, X_adv, [0, 1, 2, 3], [0, 1, 2, 3], [0, 5, 2, 7],
                                image_shape=(3, 4), n_images=3)
    top, bottom = fig.axes[:3], fig.axes[3:]
    assert len(fig.axes) == 6
    for c in range(3):
        np.testing.assert_array_equal(top[c].images[0].get_array(), X[c].reshape(3, 4))
        np.testing.assert_array_equal(bottom[c].images[0].get_array(), X_adv[c].reshape(3, 4))
    colours = [ax.title.get_color() for ax in bottom]
    assert colours == ["green", "red", "green"]  # right, fooled, right
    assert bottom[1].get_title() == "pred 5"
    np.testing.assert_array_equal(X, X_before)


def test_inversion_grid_gives_one_row_per_attacked_model():
    X = np.linspace(0, 1, 3 * 16).reshape(3, 16)
    fig = plot_inversion_grid(X, {"normal": X * 0.5, "suppressed": X * 0.0},
                              image_shape=(4, 4), n_images=2)
    assert len(fig.axes) == 6  # original + two models, two columns each
    shown = [ax.images[0].get_array() for ax in fig.axes]
    np.testing.assert_allclose(shown[0], X[0].reshape(4, 4))
    assert any(np.allclose(a, 0.5 * X[0].reshape(4, 4)) for a in shown)


def test_both_grids_refuse_a_row_shorter_than_the_columns_shown():
    X = np.zeros((3, 16))
    with pytest.raises(ValueError, match="'suppressed' has 1 images; 3 are shown"):
        plot_inversion_grid(X, {"normal": X, "suppressed": X[:1]}, image_shape=(4, 4))
    with pytest.raises(ValueError, match="'adversarial' has 2 images; 3 are shown"):
        plot_adversarial_grid(X, X[:2], [0, 1, 2], [0, 1, 2], [0, 1, 2], image_shape=(4, 4))
