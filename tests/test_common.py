from sklearn.utils.estimator_checks import parametrize_with_checks

from ._instances import expected_failed, small_instances


@parametrize_with_checks(list(small_instances()), expected_failed_checks=expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
