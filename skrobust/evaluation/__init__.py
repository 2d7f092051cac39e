"""Robustness evaluation: attack a fitted model and report every figure at once."""

from ._attack import evaluate_attack, format_attack_table

__all__ = ["evaluate_attack", "format_attack_table"]
