"""Scale-out: pickling and cloning, joblib and Dask grid searches, Dask arrays."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skrobust.attacks import FGSMTransformer, PGDTransformer, SquareAttackTransformer
from skrobust.metrics import make_adversarial_scorer


@pytest.fixture(scope="module")
def problem():
    X, y = make_classification(n_samples=120, n_features=5, n_informative=3, random_state=0)
    return X, y


def fitted_attacks(X, y):
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    common = dict(clip_min="data", clip_max="data", eps_scale="std", random_state=0)
    yield FGSMTransformer(FrozenEstimator(pipe), eps=0.3, immutable=[0], **common).fit(X, y)
    yield PGDTransformer(make_pipeline(StandardScaler(), LogisticRegression()), eps=0.3,
                         step_size=0.1, n_iter=5, random_start=True, **common).fit(X, y)
    yield SquareAttackTransformer(FrozenEstimator(forest), eps=0.3, n_queries=10,
                                  **common).fit(X, y)


def test_fitted_transformers_pickle_and_clone(problem):
    X, y = problem
    for attack in fitted_attacks(X, y):
        expected = attack.generate(X, y)
        restored = pickle.loads(pickle.dumps(attack))
        np.testing.assert_array_equal(restored.generate(X, y), expected)
        refit = clone(attack).fit(X, y)
        np.testing.assert_allclose(refit.generate(X, y), expected, atol=1e-6)


def grid(n_jobs):
    scorer = make_adversarial_scorer(FGSMTransformer(eps=0.5, eps_scale="std",
                                                     clip_min=None, clip_max=None))
    return GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression()),
                        {"logisticregression__C": [0.01, 1.0]}, cv=2, n_jobs=n_jobs,
                        scoring={"clean": "accuracy", "robust": scorer}, refit="robust")


def test_adversarial_grid_search_with_joblib_processes(problem):
    X, y = problem
    serial = grid(1).fit(X, y)
    parallel = grid(2).fit(X, y)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_robust"],
                               serial.cv_results_["mean_test_robust"])
    assert np.all(serial.cv_results_["mean_test_robust"]
                  <= serial.cv_results_["mean_test_clean"])


def test_adversarial_grid_search_on_a_local_dask_cluster(problem):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_backend

    X, y = problem
    serial = grid(1).fit(X, y)
    # in-process workers: spawning processes that import torch dominates on a busy
    # 2-core machine; benchmarks/scale.py measures a process-based cluster
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster), parallel_backend("dask"):
            on_dask = grid(-1).fit(X, y)
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_robust"],
                               serial.cv_results_["mean_test_robust"])


def test_dask_arrays_in_dask_arrays_out(problem):
    da = pytest.importorskip("dask.array")
    X, y = problem
    X_dask = da.from_array(X, chunks=(25, 2))  # uneven row chunks, split columns
    y_dask = da.from_array(y, chunks=40)
    for attack in fitted_attacks(X, y):
        lazy = attack.generate(X_dask, y_dask)
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == X_dask.chunks[0]
        np.testing.assert_array_equal(lazy.compute(scheduler="synchronous"),
                                      attack.generate(X, y))
        out = attack.transform(X_dask)
        assert isinstance(out, da.Array)
        np.testing.assert_array_equal(out.compute(scheduler="synchronous"),
                                      attack.transform(X))
    with pytest.raises(ValueError, match="y has shape"):
        attack.generate(X_dask, y[:-1])
