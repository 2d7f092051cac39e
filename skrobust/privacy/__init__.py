"""Privacy: suppress-privacy training and attacks that measure what a model leaks.

:class:`SuppressPrivacyClassifier` trains a sparse model; :class:`ImageInversionAttack`
reconstructs inputs from a layer's features (scored by :func:`inversion_report`);
:func:`membership_inference` and :func:`make_membership_scorer` run the loss- and
confidence-threshold membership inference attacks.
"""

from ._inversion import ImageInversionAttack, inversion_report
from ._membership import (
    MembershipScorer,
    make_membership_scorer,
    membership_inference,
    membership_signal,
)
from ._masks import MaskLayer
from ._suppress import SuppressPrivacyClassifier

__all__ = [
    "ImageInversionAttack",
    "MaskLayer",
    "MembershipScorer",
    "SuppressPrivacyClassifier",
    "inversion_report",
    "make_membership_scorer",
    "membership_inference",
    "membership_signal",
]
