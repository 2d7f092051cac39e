"""Robustness evaluation: attack a fitted model and report every figure at once."""

from ._attack import evaluate_attack, format_attack_table
from ._curve import security_curve
from ._curve_display import SecurityCurveDisplay
from ._report import write_report
from ._robustness import default_attacks, evaluate_robustness, format_robustness_table
from ._sanity import (
    RobustnessWarning,
    SanityCheck,
    check_black_box_weaker,
    check_deterministic,
    check_eps_zero,
    check_flat_scores,
    check_gradients,
    check_input_bounds,
    check_not_constant,
    check_iterative_stronger,
    check_monotonic_accuracy,
    check_training_mode,
    run_sanity_checks,
)

__all__ = [
    "RobustnessWarning",
    "SanityCheck",
    "SecurityCurveDisplay",
    "check_black_box_weaker",
    "check_deterministic",
    "check_eps_zero",
    "check_flat_scores",
    "check_gradients",
    "check_input_bounds",
    "check_not_constant",
    "check_iterative_stronger",
    "check_monotonic_accuracy",
    "check_training_mode",
    "default_attacks",
    "evaluate_attack",
    "evaluate_robustness",
    "format_attack_table",
    "format_robustness_table",
    "run_sanity_checks",
    "security_curve",
    "write_report",
]
