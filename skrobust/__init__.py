"""skrobust: security of machine-learning models as scikit-learn estimators."""

__version__ = "0.1.0.dev0"

from .attacks import FGSMTransformer, PGDTransformer
from .datasets import load_mnist
from .evaluation import evaluate_attack
from .metrics import make_adversarial_scorer
from .utils import extract_features

__all__ = [
    "FGSMTransformer",
    "PGDTransformer",
    "__version__",
    "evaluate_attack",
    "extract_features",
    "load_mnist",
    "make_adversarial_scorer",
]
