"""Matplotlib figures."""

from ._grid import plot_adversarial_grid
from ._inversion import plot_inversion_grid
from ._security_curve import SecurityCurveDisplay

__all__ = ["SecurityCurveDisplay", "plot_adversarial_grid", "plot_inversion_grid"]
