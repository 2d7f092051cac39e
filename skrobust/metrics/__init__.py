"""Metrics of adversarial examples and scorers that attack the model they score.

Label-level metrics take ``(y_true, y_pred_adv)`` or ``(y_true, proba_adv)`` like
scikit-learn's and work with :func:`~sklearn.metrics.make_scorer`. Model-level
metrics need the model itself: :func:`make_adversarial_scorer` builds them.
"""

from ._adversarial import (
    attack_success_rate,
    avg_confidence_adv_class,
    avg_confidence_true_class,
    misclassification_rate,
)
from ._distances import avg_lp_distance, avg_ssim
from ._rejection import (
    accepted_accuracy_score,
    rejection_rate,
    robust_accuracy_with_rejection_score,
)
from ._scorers import AdversarialScorer, make_adversarial_scorer

__all__ = [
    "AdversarialScorer",
    "accepted_accuracy_score",
    "attack_success_rate",
    "avg_confidence_adv_class",
    "avg_confidence_true_class",
    "avg_lp_distance",
    "avg_ssim",
    "make_adversarial_scorer",
    "misclassification_rate",
    "rejection_rate",
    "robust_accuracy_with_rejection_score",
]
