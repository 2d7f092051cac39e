"""scikit-learn pipelines and classifiers re-expressed in torch (float64 parity)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC

from skrobust.attacks import FGSMTransformer
from skrobust.utils import as_torch_model, sklearn_to_torch


def data(n_classes):
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=0)
    return X * np.array([1, 10, 0.1, 5, 1, 2]) + 3, y


CLASSIFIERS = {
    "logreg": lambda: LogisticRegression(max_iter=500),
    "linearsvc": lambda: LinearSVC(),
    "sgd_hinge": lambda: SGDClassifier(random_state=0),
    "sgd_log": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "svc_rbf": lambda: SVC(kernel="rbf", gamma="scale"),
    "svc_linear": lambda: SVC(kernel="linear"),
    "mlp_relu": lambda: MLPClassifier((8, 6), max_iter=100, random_state=0),
    "mlp_tanh": lambda: MLPClassifier((7,), activation="tanh", max_iter=100, random_state=0),
    "mlp_logistic": lambda: MLPClassifier((7,), activation="logistic", max_iter=100,
                                          random_state=0),
}
PREPROCESSING = {
    "standard": lambda: [StandardScaler()],
    "minmax_pca_whiten": lambda: [MinMaxScaler(), PCA(4, whiten=True)],
    "maxabs_pca": lambda: [MaxAbsScaler(), PCA(5)],
}


def reference_scores(pipe, X):
    """What the module must reproduce: decision_function, else the logits of predict_proba."""
    if isinstance(pipe[-1], MLPClassifier):
        proba = pipe.predict_proba(X)
        if proba.shape[1] == 2:
            return np.log(proba[:, 1:] / proba[:, :1]), "logit"
        return np.log(proba), "log_softmax"
    return pipe.decision_function(X).reshape(len(X), -1), "raw"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "clf, pre", [(clf, list(PREPROCESSING)[i % len(PREPROCESSING)])
                 for i, clf in enumerate(CLASSIFIERS)])
def test_converted_pipeline_reproduces_scores(clf, pre, n_classes):
    X, y = data(n_classes)
    pipe = make_pipeline(*PREPROCESSING[pre](), CLASSIFIERS[clf]()).fit(X, y)
    module = sklearn_to_torch(pipe, dtype=torch.float64)
    with torch.no_grad():
        out = module(torch.as_tensor(X)).numpy()
    ref, kind = reference_scores(pipe, X)
    if kind == "log_softmax":
        out = torch.log_softmax(torch.as_tensor(out), 1).numpy()
    assert out.shape == ref.shape == (len(X), 1 if n_classes == 2 else n_classes)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
    pred = out.argmax(1) if n_classes > 2 else (out[:, 0] > 0).astype(int)
    assert np.mean(pipe.classes_[pred] == pipe.predict(X)) >= 0.99  # SVC vote ties aside


def test_transformers_alone_reproduce_transform():
    X, _ = data(2)
    for step in (StandardScaler(with_mean=False), MinMaxScaler((-1, 2), clip=True),
                 MaxAbsScaler(), PCA(3, whiten=True), make_pipeline(StandardScaler(), PCA(2))):
        step.fit(X)
        module = sklearn_to_torch(step, dtype=torch.float64)
        with torch.no_grad():
            out = module(torch.as_tensor(X + 0.5)).numpy()
        np.testing.assert_allclose(out, step.transform(X + 0.5), atol=1e-10)


def test_as_torch_model_of_a_frozen_pipeline_carries_the_classes():
    X, y = data(3)
    labels = np.array(["a", "b", "c"])[y]
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels)
    model = as_torch_model(FrozenEstimator(pipe))
    assert model.classes.tolist() == ["a", "b", "c"]
    assert model.module(torch.zeros(2, 6)).dtype == torch.float32
    np.testing.assert_array_equal(model.encode(["c", "a"]), [2, 0])


@pytest.mark.parametrize("norm", ["inf", 2])
def test_fgsm_on_logistic_regression_is_the_closed_form_worst_case(norm):
    X, y = data(2)
    logreg = LogisticRegression().fit(X, y)
    w = logreg.coef_[0]
    eps = 0.3
    attack = FGSMTransformer(FrozenEstimator(logreg), eps=eps, norm=norm, clip_min=None,
                             clip_max=None).fit(X, y)
    X_adv = attack.generate(X, y)
    # the loss grows fastest along -w for class 1 and +w for class 0
    direction = np.sign(w) if norm == "inf" else w / np.linalg.norm(w)
    expected = X - eps * np.where(y == 1, 1.0, -1.0)[:, None] * direction
    np.testing.assert_allclose(X_adv, expected, atol=1e-5)
    margin = (2 * y - 1) * logreg.decision_function(X)
    worst = margin - eps * (np.abs(w).sum() if norm == "inf" else np.linalg.norm(w))
    np.testing.assert_allclose((2 * y - 1) * logreg.decision_function(X_adv), worst, atol=1e-4)


def test_unfitted_pipeline_victim_is_cloned_and_fitted():
    X, y = data(2)
    pipe = make_pipeline(StandardScaler(), SVC())
    attack = FGSMTransformer(pipe, eps=0.5, clip_min=None, clip_max=None).fit(X, y)
    assert attack.estimator_ is not pipe and hasattr(attack.estimator_, "classes_")
    assert not hasattr(pipe, "classes_")
    X_adv = attack.transform(X)
    assert np.mean(attack.estimator_.predict(X_adv) != attack.estimator_.predict(X)) > 0.1


def test_unsupported_steps_name_the_step_and_point_to_square():
    X, y = data(2)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    with pytest.raises(TypeError, match="RandomForestClassifier.*SquareAttackTransformer"):
        as_torch_model(FrozenEstimator(forest))
    pipe = Pipeline([("onehot", OneHotEncoder(handle_unknown="ignore")),
                     ("clf", LogisticRegression())]).fit(X.round(), y)
    with pytest.raises(TypeError, match=r"step 'onehot' \(OneHotEncoder\) is not "
                                        r"differentiable.*SquareAttackTransformer"):
        sklearn_to_torch(pipe)
    with pytest.raises(TypeError, match="step 'onehot'"):
        FGSMTransformer(pipe, clip_min=None, clip_max=None).fit(X, y)
    with pytest.raises(TypeError, match="is a transformer, not a classifier"):
        as_torch_model(make_pipeline(StandardScaler()).fit(X))
    with pytest.raises(TypeError, match="kernel='precomputed'"):
        as_torch_model(SVC(kernel="precomputed").fit(X @ X.T, y))
    with pytest.raises(NotFittedError):
        sklearn_to_torch(make_pipeline(StandardScaler(), LogisticRegression()))


def test_pipeline_ending_in_a_skorch_net():
    from skrobust.models._skorch import default_net

    X, y = data(3)
    X = X.astype(np.float32)  # scalers keep float32, which the net needs
    net = default_net(max_epochs=3, module__n_features=6, module__n_classes=3,
                      module__hidden_units=(8,))
    pipe = make_pipeline(StandardScaler(), net).fit(X, y)
    model = as_torch_model(FrozenEstimator(pipe))
    with torch.no_grad():
        proba = torch.softmax(model.module(torch.as_tensor(X)), 1).numpy()
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-5)


def test_converter_registry_serves_subclasses_and_new_types():
    from sklearn.base import BaseEstimator, TransformerMixin

    from skrobust.utils import register_sklearn_converter

    X, y = data(3)

    class MyScaler(StandardScaler):  # a subclass takes its parent's converter (MRO)
        pass

    class Square(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.n_features_in_ = X.shape[1]
            return self

        def transform(self, X):
            return X**2

    pipe = make_pipeline(MyScaler(), Square(), LogisticRegression(max_iter=500)).fit(X, y)
    with pytest.raises(TypeError, match=r"step 'square' \(Square\) is not differentiable"):
        as_torch_model(pipe)

    class TorchSquare(torch.nn.Module):
        def forward(self, x):
            return x**2

    assert register_sklearn_converter(Square, kind="transformer")(
        lambda est, dtype: TorchSquare()) is not None
    module = sklearn_to_torch(pipe, dtype=torch.float64)
    np.testing.assert_allclose(module(torch.as_tensor(X)).numpy(), pipe.decision_function(X),
                               atol=1e-8)
    # the registered kind decides where the step may stand
    with pytest.raises(TypeError, match="step 'square' .* is a transformer, not a classifier"):
        as_torch_model(make_pipeline(StandardScaler(), Square()).fit(X))
    with pytest.raises(ValueError, match='kind=.* must be "classifier" or "transformer"'):
        register_sklearn_converter(Square, TorchSquare, kind="layer")


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("base", [SVC(kernel="rbf", gamma=0.3), SVC(kernel="linear"),
                                  LogisticRegression(max_iter=500)])
def test_one_vs_rest_is_registered_by_the_defenses(base, n_classes):
    from sklearn.multiclass import OneVsRestClassifier

    import skrobust.defenses  # noqa: F401 - registers OneVsRestClassifier (DNR's SVMs)

    X, y = data(n_classes)
    pipe = make_pipeline(StandardScaler(), OneVsRestClassifier(base)).fit(X, y)
    model = as_torch_model(FrozenEstimator(pipe))
    np.testing.assert_array_equal(model.classes, pipe.classes_)
    scores = sklearn_to_torch(pipe, dtype=torch.float64)(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(scores, reference_scores(pipe, X)[0], atol=1e-8)


def test_one_vs_rest_without_a_torch_form_says_why():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.tree import DecisionTreeClassifier

    import skrobust.defenses  # noqa: F401

    X, y = data(3)
    with pytest.raises(TypeError, match=r"OneVsRestClassifier has SVC\(kernel='poly'\)"):
        as_torch_model(OneVsRestClassifier(SVC(kernel="poly")).fit(X, y))
    with pytest.raises(TypeError, match="has DecisionTreeClassifier machines.*Square"):
        as_torch_model(OneVsRestClassifier(DecisionTreeClassifier()).fit(X, y))
    # the messages list what the registry holds, the defenses' registration included
    with pytest.raises(TypeError, match="OneVsRestClassifier of RBF or linear SVCs"):
        as_torch_model(RandomForestClassifier(n_estimators=2).fit(X, y))
