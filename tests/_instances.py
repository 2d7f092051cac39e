"""Small instances of every public estimator for the common checks."""

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.models._skorch import default_net


def tiny_net(**params):
    return default_net(max_epochs=2, module__hidden_units=(8,), **params)


def small_instances():
    # the checks feed unbounded synthetic data, hence no clip bounds
    common = dict(clip_min=None, clip_max=None, random_state=0)
    yield FGSMTransformer(tiny_net(), eps=0.1, **common)
    yield PGDTransformer(tiny_net(), eps=0.1, step_size=0.05, n_iter=3, **common)
    yield PGDTransformer(tiny_net(), eps=0.1, step_size=0.05, n_iter=3, norm=2,
                         random_start=True, n_restarts=2, **common)


ORDER_DEPENDENT = (
    "random starts are drawn per batch from one generator, so a row's output depends "
    "on the rows before it (documented under random_start)"
)


def expected_failed(estimator):
    if getattr(estimator, "random_start", False):
        return {
            "check_methods_sample_order_invariance": ORDER_DEPENDENT,
            "check_methods_subset_invariance": ORDER_DEPENDENT,
        }
    return {}
