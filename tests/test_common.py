from functools import partial

import pytest
from sklearn.utils.estimator_checks import estimator_checks_generator

from ._instances import expected_failed, small_instances


def _check_id(check):
    if isinstance(check, partial):
        keywords = ",".join(f"{k}={v}" for k, v in sorted(check.keywords.items()))
        return check.func.__name__ + (f"({keywords})" if keywords else "")
    return check.__name__


def _cases():
    """scikit-learn's checks of every instance, as ``parametrize_with_checks`` makes
    them, with ids from the class name and position instead of the repr: a repr may
    print a set (skorch's ``_params_to_validate``), whose order changes with each
    process's hash seed, and pytest-xdist needs every worker to collect the same ids."""
    for i, instance in enumerate(small_instances()):
        prefix = f"{type(instance).__name__}{i}"
        for case in estimator_checks_generator(
                instance, legacy=True, expected_failed_checks=expected_failed(instance),
                mark="xfail"):
            values, marks = (case.values, case.marks) if hasattr(case, "marks") else (case, ())
            yield pytest.param(*values, marks=marks, id=f"{prefix}-{_check_id(values[1])}")


@pytest.mark.parametrize("estimator, check", list(_cases()))
def test_sklearn_compatible(estimator, check):
    check(estimator)
