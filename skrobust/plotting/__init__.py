"""Matplotlib figures."""

from ._grid import plot_adversarial_grid

__all__ = ["plot_adversarial_grid"]
