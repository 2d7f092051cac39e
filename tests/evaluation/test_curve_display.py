import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from skrobust.attacks import FGSMTransformer  # noqa: E402
from skrobust.evaluation import SecurityCurveDisplay  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_from_estimator_draws_the_security_curve(mlp_net, mnist_small):
    _, _, X, y = mnist_small
    display = SecurityCurveDisplay.from_estimator(mlp_net, X[:50], y[:50], [0, 0.05, 0.1],
                                                  attack=FGSMTransformer())
    np.testing.assert_array_equal(display.line_.get_xdata(), [0, 0.05, 0.1])
    np.testing.assert_allclose(display.line_.get_ydata(), display.curve_.accuracy)
    assert display.name == "MLP" and display.line_.get_label() == "MLP"
    assert "eps" in display.ax_.get_xlabel() and display.figure_ is display.ax_.figure
    assert "FGSM" in display.ax_.get_title()


def test_several_models_share_one_axis():
    first = SecurityCurveDisplay(eps=[0, 0.1], accuracy=[0.9, 0.1], name="plain").plot()
    second = SecurityCurveDisplay(eps=[0, 0.1], accuracy=[0.9, 0.7], name="robust").plot(
        ax=first.ax_, linestyle="--")
    assert second.ax_ is first.ax_ and len(first.ax_.lines) == 2
    assert [t.get_text() for t in first.ax_.get_legend().get_texts()] == ["plain", "robust"]
    assert second.line_.get_linestyle() == "--"


def test_from_predictions_is_rejection_aware():
    y = np.array([0, 1, 2, 3])
    y_preds = [np.array([0, 1, -1, 3]), np.array([0, -1, -1, 1])]
    plain = SecurityCurveDisplay.from_predictions(y, y_preds, [0.0, 0.3])
    aware = SecurityCurveDisplay.from_predictions(y, y_preds, [0.0, 0.3], reject_label=-1,
                                                  name="DNR")
    np.testing.assert_allclose(plain.accuracy, [0.75, 0.25])
    # a rejection is an error on clean data and a success against an attack
    np.testing.assert_allclose(aware.accuracy, [0.75, 0.75])


def test_mismatched_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="one array of predictions per budget"):
        SecurityCurveDisplay.from_predictions([0, 1], [[0, 1]], [0.0, 0.1])
    with pytest.raises(ValueError, match="one accuracy per budget"):
        SecurityCurveDisplay(eps=[0, 0.1], accuracy=[1.0]).plot()
