"""skrobust: security of machine-learning models as scikit-learn estimators.

The main classes and functions are importable from here; everything else lives in
its subpackage (:mod:`skrobust.attacks`, :mod:`skrobust.defenses`,
:mod:`skrobust.detection`, :mod:`skrobust.privacy`, :mod:`skrobust.metrics`,
:mod:`skrobust.evaluation`, :mod:`skrobust.datasets`, :mod:`skrobust.models`,
:mod:`skrobust.plotting`, :mod:`skrobust.utils`).
"""

from ._version import __version__

from .attacks import (
    APGDTransformer,
    FGSMTransformer,
    PGDExpTransformer,
    PGDTransformer,
    SquareAttackTransformer,
)
from .datasets import load_mnist
from .defenses import AdversarialTrainer, DNRClassifier
from .detection import MMDDriftDetector
from .evaluation import (
    RobustnessWarning,
    SecurityCurveDisplay,
    evaluate_attack,
    evaluate_robustness,
    security_curve,
    write_report,
)
from .metrics import make_adversarial_scorer
from .privacy import (
    ImageInversionAttack,
    SuppressPrivacyClassifier,
    inversion_report,
    make_membership_scorer,
    membership_inference,
)
from .utils import extract_features

__all__ = [
    "APGDTransformer",
    "AdversarialTrainer",
    "DNRClassifier",
    "FGSMTransformer",
    "ImageInversionAttack",
    "MMDDriftDetector",
    "PGDExpTransformer",
    "PGDTransformer",
    "RobustnessWarning",
    "SecurityCurveDisplay",
    "SquareAttackTransformer",
    "SuppressPrivacyClassifier",
    "__version__",
    "evaluate_attack",
    "evaluate_robustness",
    "extract_features",
    "inversion_report",
    "load_mnist",
    "make_adversarial_scorer",
    "make_membership_scorer",
    "membership_inference",
    "security_curve",
    "write_report",
]
