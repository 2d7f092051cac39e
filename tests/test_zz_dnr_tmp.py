from sklearn.utils.estimator_checks import parametrize_with_checks
from skrobust.defenses import DNRClassifier
from tests._instances import tiny_net

@parametrize_with_checks([
    DNRClassifier(tiny_net(), cv=2, random_state=0),
    DNRClassifier(tiny_net(), cv=2, reject_rate=0.0, random_state=0),
])
def test_mine(estimator, check):
    check(estimator)
