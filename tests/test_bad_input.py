"""Inputs the victim cannot have: labels outside its classes, widths it cannot take,
values beyond float32, and every numeric attack parameter at nan/inf/negative/zero.

Each case asserts the exception type and a fragment of the message (what is wrong,
which argument, the valid range), raised before the first batch.
"""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import (
    APGDTransformer,
    FGSMTransformer,
    PGDExpTransformer,
    PGDTransformer,
    SquareAttackTransformer,
)
from skrobust.defenses import DNRClassifier
from skrobust.detection import MMDDriftDetector
from skrobust.evaluation import evaluate_attack, evaluate_robustness
from skrobust.metrics import make_adversarial_scorer
from skrobust.models import MLP, LeNet5
from skrobust.models._skorch import default_net, fit_net
from skrobust.utils import TorchModel, extract_features

RNG = np.random.RandomState(0)
X = RNG.rand(30, 6).astype(np.float32)
Y = np.arange(30) % 3

ATTACKS = {
    "fgsm": lambda v: FGSMTransformer(v, eps=0.1),
    "pgd": lambda v: PGDTransformer(v, eps=0.1, step_size=0.05, n_iter=2),
    "pgd_exp": lambda v: PGDExpTransformer(v, eps=0.5, n_iter=2),
    "apgd": lambda v: APGDTransformer(v, eps=0.1, n_iter=2, random_start=False),
    "square": lambda v: SquareAttackTransformer(v, eps=0.1, n_queries=5),
}
LABEL_RANGE = r"outside the victim's classes: labels must be class indices in \[0, 2\]"


def _module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


@pytest.fixture(scope="module")
def skorch_victim():
    net = default_net(module=MLP, module__n_features=6, module__n_classes=3,
                      module__hidden_units=(8,), max_epochs=2)
    return FrozenEstimator(fit_net(net, X, Y, seed=0))


@pytest.fixture(params=["module", "skorch"])
def victim(request, skorch_victim):
    return _module() if request.param == "module" else skorch_victim


# ------------------------------------------------------------------- labels
@pytest.mark.parametrize("bad", [7, -1])
@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_labels_outside_the_victims_classes_are_refused(kind, victim, bad):
    attack = ATTACKS[kind](victim).fit(X, Y)
    with pytest.raises(ValueError, match=LABEL_RANGE + r" \(the victim returns scores "
                                         r"for 3 classes\)"):
        attack.generate(X, np.where(Y == 0, bad, Y))


@pytest.mark.parametrize("labels", [np.array(["a", "b", "c"] * 10),
                                    np.where(Y == 0, np.nan, Y), Y + 0.5])
def test_labels_that_are_no_class_indices_are_refused(labels):
    attack = FGSMTransformer(_module()).fit(X, Y)
    with pytest.raises(ValueError, match="y must hold integer class indices for a victim "
                                         "without classes_"):
        attack.generate(X, labels)


def test_labels_of_a_single_logit_victim_are_0_or_1():
    attack = FGSMTransformer(nn.Linear(6, 1)).fit(X, Y % 2)
    assert attack.generate(X, Y % 2).shape == X.shape
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
        attack.generate(X, Y)


@pytest.mark.parametrize("bad", [7, -1])
def test_evaluation_functions_and_scorers_refuse_unknown_labels(skorch_victim, bad):
    y = np.where(Y == 0, bad, Y)
    with pytest.raises(ValueError, match=LABEL_RANGE):
        evaluate_attack(skorch_victim, X, y, FGSMTransformer(eps=0.1))
    with pytest.raises(ValueError, match=LABEL_RANGE):
        make_adversarial_scorer(FGSMTransformer(eps=0.1))(skorch_victim, X, y)


@pytest.mark.parametrize("bad", [7, -1])
def test_evaluate_robustness_refuses_unknown_labels(bad):
    y = np.where(Y == 0, bad, Y)
    with pytest.raises(ValueError, match=LABEL_RANGE):
        evaluate_robustness(_module(), X, y, eps=0.1, sanity_checks=False,
                            attacks=[("FGSM", FGSMTransformer())])


# -------------------------------------------------------------------- width
@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_a_width_the_victim_cannot_take_is_refused_at_fit(kind, victim, width):
    X_bad = RNG.rand(30, width).astype(np.float32)
    with pytest.raises(ValueError, match=f"X has {width} features, but the victim MLP|"
                                         f"X has {width} features, but the victim "
                                         "Sequential expects 6 features"):
        ATTACKS[kind](victim).fit(X_bad, Y)


def test_the_width_of_a_black_box_victim_is_checked_before_the_first_query():
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="X has 4 features, but the victim "
                                         "RandomForestClassifier was fitted on 6"):
        SquareAttackTransformer(FrozenEstimator(forest), n_queries=3).fit(X[:, :4], Y)


def test_the_width_of_a_convolutional_victim_is_found_by_a_dry_forward():
    # LeNet5's first layer is a convolution: no in_features to read
    X_bad = RNG.rand(4, 700).astype(np.float32)
    with pytest.raises(ValueError, match="X has 700 features, which the victim LeNet5 "
                                         "cannot take: its forward pass"):
        FGSMTransformer(LeNet5()).fit(X_bad, Y[:4])


class _Windows(nn.Module):
    """A convolution over windows of 6 features: 12 features silently make 2 rows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 3, kernel_size=6)

    def forward(self, x):
        return self.conv(x.reshape(-1, 1, 6)).flatten(1)


def test_a_width_that_changes_the_number_of_rows_is_refused():
    assert FGSMTransformer(_Windows()).fit(X, Y).generate(X, Y).shape == X.shape
    with pytest.raises(ValueError, match=r"returned scores of shape \(4, 3\) for 2 "
                                         "input rows"):
        FGSMTransformer(_Windows()).fit(RNG.rand(4, 12), Y[:4])


def test_the_dry_forward_is_cached_per_module_and_width():
    calls = []
    module = _module()
    module.register_forward_hook(lambda *args: calls.append(1))
    model = TorchModel(module, torch.device("cpu"))
    assert model.check_n_features(6) == 3
    assert TorchModel(module, torch.device("cpu")).check_n_features(6) == 3
    assert len(calls) == 1
    with pytest.raises(ValueError, match="expects 6 features"):
        model.check_n_features(5)


def test_evaluate_robustness_refuses_a_width_the_victim_cannot_take():
    with pytest.raises(ValueError, match="X has 4 features, but the victim Sequential "
                                         "expects 6 features"):
        evaluate_robustness(_module(), X[:, :4], Y, eps=0.1)


def test_width_in_features_dnr_and_mmd(skorch_victim):
    narrow = X[:, :4]
    match = "X has 4 features, but the victim MLP expects 6 features"
    with pytest.raises(ValueError, match=match):
        extract_features(skorch_victim, narrow, "fc1")
    with pytest.raises(ValueError, match=match):
        DNRClassifier(skorch_victim).fit(narrow, Y)
    with pytest.raises(ValueError, match=match):
        MMDDriftDetector(skorch_victim, layers="output").fit(narrow)


# ------------------------------------------------------------ float32 range
def test_values_beyond_float32_are_refused_not_answered_with_nan(skorch_victim):
    X_big = X.astype(np.float64)
    X_big[0, 0] = 1e300
    attack = PGDTransformer(_module(), n_iter=2, clip_min=None, clip_max=None).fit(X, Y)
    with pytest.raises(ValueError, match=r"beyond the float32 range \(max \|X\| = 1e\+300"):
        attack.generate(X_big, Y)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        attack.fit(X_big, Y)
    dnr = DNRClassifier(skorch_victim, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        dnr.predict(X_big)
    X_big[0, 0] = 1e30  # within float32: a finite answer
    assert np.isfinite(dnr.decision_function(X_big)).all()
    assert set(dnr.predict(X_big)) <= {0, 1, 2, dnr.reject_label}
    # within float32, but the network overflows: refused, never a NaN score that
    # would slip past the reject option
    weight = skorch_victim.estimator.module_.fc1.weight.detach().numpy()
    X_big[0] = 3e38 * np.sign(weight[np.abs(weight).sum(1).argmax()])
    with pytest.raises(ValueError, match="layer 'relu1' gives non-finite outputs for 1 "
                                         "of 30 rows of X"):
        dnr.predict(X_big)


# --------------------------------------------------------------- parameters
BAD_PARAMS = [
    (FGSMTransformer, "eps", [np.nan, np.inf, -0.1]),
    (FGSMTransformer, "batch_size", [0, -1, 1.5, np.nan]),
    (PGDTransformer, "step_size", [np.nan, np.inf, -0.1]),
    (PGDTransformer, "n_iter", [-1, 1.5, np.nan]),
    (PGDTransformer, "n_restarts", [0, np.nan]),
    (PGDExpTransformer, "eps", [np.nan, np.inf, -1.0]),
    (PGDExpTransformer, "step_size", [np.nan, np.inf, 0.0, -0.1]),
    (PGDExpTransformer, "min_step_size", [np.nan, np.inf, 0.0]),
    (PGDExpTransformer, "n_iter", [-1, np.nan]),
    (PGDExpTransformer, "max_line_search", [-1, np.inf]),
    (APGDTransformer, "eps", [np.nan, np.inf, -0.1]),
    (APGDTransformer, "n_iter", [0, np.nan]),
    (APGDTransformer, "n_restarts", [0]),
    (APGDTransformer, "n_target_classes", [0, np.nan]),
    (APGDTransformer, "rho", [np.nan, -0.1, 1.5]),
    (APGDTransformer, "momentum", [np.nan, np.inf, -0.1]),
    (SquareAttackTransformer, "eps", [np.nan, np.inf, -0.1]),
    (SquareAttackTransformer, "n_queries", [0, np.nan]),
    (SquareAttackTransformer, "p_init", [np.nan, 0.0, 1.5]),
]


@pytest.mark.parametrize(
    "cls, name, value",
    [(cls, name, value) for cls, name, values in BAD_PARAMS for value in values],
    ids=lambda v: getattr(v, "__name__", repr(v)),
)
def test_every_numeric_attack_parameter_is_validated_alike(cls, name, value):
    attack = cls(_module(), **{name: value})
    with pytest.raises(ValueError, match=f"The '{name}' parameter of {cls.__name__} "
                                         f"must be .* Got {value!r} instead"):
        attack.fit(X, Y)
