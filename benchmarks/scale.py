"""Wall time of an adversarial grid search: n_jobs=1, n_jobs=2 and a local Dask cluster.

The search: ``GridSearchCV`` of ``Pipeline(StandardScaler(), MLPClassifier)`` over
four ``alpha`` values with 3-fold CV (12 fits) on the breast cancer data, scored
on clean accuracy and on accuracy under PGD-Linf (20 steps, eps = 0.3 feature
std) through :func:`skrobust.metrics.make_adversarial_scorer`. Three back ends:

- ``n_jobs=1``: one process (torch itself limited to one thread);
- ``n_jobs=2``: joblib's default (loky) process pool, reused between repeats;
- ``dask``: ``joblib.parallel_backend("dask")`` on a ``distributed.LocalCluster``
  of 2 worker processes with 1 thread each (started once; its start-up time is
  printed apart).

The runs are interleaved (the order rotates every round) and repeated; the
table shows medians and the ratio to ``n_jobs=1``. Usage::

    python benchmarks/scale.py [--repeats 3]
"""

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch
from joblib import parallel_backend
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skrobust.attacks import PGDTransformer
from skrobust.metrics import make_adversarial_scorer


def search(n_jobs):
    attack = PGDTransformer(eps=0.3, step_size=0.075, n_iter=20, eps_scale="std",
                            clip_min="data", clip_max="data")
    return GridSearchCV(
        make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=300, random_state=0)),
        {"mlpclassifier__alpha": [1e-4, 1e-3, 1e-2, 1e-1]}, cv=3, n_jobs=n_jobs,
        scoring={"clean": "accuracy", "robust": make_adversarial_scorer(attack)},
        refit=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # MLPClassifier's ConvergenceWarning, here and in the worker processes
    warnings.filterwarnings("ignore")
    os.environ["PYTHONWARNINGS"] = "ignore"
    X, y = load_breast_cancer(return_X_y=True)

    def run(name):
        t = time.perf_counter()
        if name == "dask":
            with parallel_backend("dask"):
                result = search(-1).fit(X, y)
        else:
            result = search(1 if name == "n_jobs=1" else 2).fit(X, y)
        return time.perf_counter() - t, result.cv_results_["mean_test_robust"]

    names = ["n_jobs=1", "n_jobs=2"]
    client = cluster = None
    try:
        import distributed

        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        client.run(lambda: __import__("skrobust"))  # import torch & co. on the workers
        print(f"LocalCluster(2 workers x 1 thread) start-up incl. imports: "
              f"{time.perf_counter() - t:.1f} s")
        names.append("dask")
    except ImportError:
        print("dask.distributed is not installed: the Dask column is skipped "
              '(pip install "dask[distributed]").')

    run("n_jobs=2")  # warm the loky pool once, like the cluster
    times = {name: [] for name in names}
    scores = {}
    try:
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds, robust = run(name)
                times[name].append(seconds)
                scores[name] = robust
    finally:
        if client is not None:
            client.close()
            cluster.close()
    base = statistics.median(times["n_jobs=1"])
    print(f"\nGrid search: 12 fits + clean and PGD scoring; median of {args.repeats} "
          "interleaved runs")
    print(f"{'back end':<10} {'seconds':>8} {'speed-up':>9}")
    for name in names:
        med = statistics.median(times[name])
        print(f"{name:<10} {med:8.2f} {base / med:9.2f}x")
    same = all(np.allclose(scores[n], scores["n_jobs=1"]) for n in names)
    print(f"robust CV scores identical across back ends: {same}")


if __name__ == "__main__":
    main()
