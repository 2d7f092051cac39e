"""Adversarial attacks as scikit-learn transformers.

``transform(X)`` attacks the fitted victim's own predictions; ``generate(X, y)``
attacks given labels (true labels for evaluation, target labels for targeted
attacks). The tensor-level steps live in :mod:`skrobust.attacks.functional`.
"""

from . import functional
from ._adaptive import AdaptiveRejectionTransformer
from ._apgd import APGDTransformer
from ._fab import FABTransformer
from ._fgsm import FGSMTransformer
from ._pgd import PGDTransformer
from ._pgd_exp import PGDExpTransformer, reject_margin_loss
from ._square import SquareAttackTransformer

__all__ = ["APGDTransformer", "AdaptiveRejectionTransformer", "FABTransformer", "FGSMTransformer", "PGDExpTransformer", "PGDTransformer",
           "SquareAttackTransformer",
           "functional", "reject_margin_loss"]
