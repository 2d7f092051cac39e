"""Matplotlib figures drawn from arrays (image grids).

The security-evaluation curve is drawn by
:class:`skrobust.evaluation.SecurityCurveDisplay`, next to the function that computes it.
"""

from ._grid import plot_adversarial_grid
from ._inversion import plot_inversion_grid

__all__ = ["plot_adversarial_grid", "plot_inversion_grid"]
