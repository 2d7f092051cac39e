"""Defenses: estimators that make a model harder to attack or reject what they cannot trust."""

from ._adversarial_training import AdversarialTrainer
from ._dnr import DNRClassifier

__all__ = ["AdversarialTrainer", "DNRClassifier"]
