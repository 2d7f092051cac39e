"""Distribution-level detection of drift and adversarial inputs with kernel MMD tests.

:class:`MMDDriftDetector` tests whether a batch comes from the reference
distribution, on the inputs or on layer representations of a network; the
kernel functions behind it (:func:`rbf_kernel`, :func:`median_gamma`,
:func:`mmd2_unbiased`) are public too. :func:`save_detector`,
:func:`load_detector` and :func:`run_monitor` run the ``skrobust monitor`` job.
"""

from ._kernels import kernel_gammas, median_gamma, mmd2_unbiased, rbf_kernel
from ._mmd import MMDDriftDetector
from ._monitor import load_detector, run_monitor, save_detector
from ._protocol import DriftResult

__all__ = [
    "DriftResult",
    "MMDDriftDetector",
    "kernel_gammas",
    "load_detector",
    "median_gamma",
    "mmd2_unbiased",
    "rbf_kernel",
    "run_monitor",
    "save_detector",
]
