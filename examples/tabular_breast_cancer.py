"""Attacking and hardening tabular scikit-learn pipelines on the breast cancer data set.

1. Fit ``Pipeline(StandardScaler(), model)`` for a LogisticRegression, an SVC (rbf),
   an MLPClassifier and a skorch MLP (plus a RandomForest, attacked black-box only)
   on 70 % of scikit-learn's breast cancer data (569 samples, 30 features).
2. Robust accuracy on the held-out 30 % against an L-inf PGD whose budget ``eps``
   is measured in units of each feature's standard deviation (``eps_scale="std"``),
   inside the range seen in training (``clip_min="data"``), with and without the
   nine size features (radius, perimeter and area: mean, se, worst) immutable.
3. The black-box Square attack (``predict_proba`` only) against PGD on the models
   where both apply, and against the forest, where only Square does.
4. ``AdversarialTrainer`` on the skorch MLP, its training ``eps`` tuned by
   ``GridSearchCV`` with an adversarial scorer (PGD at eps = 0.3 std).

Prints the tables and saves ``tabular_breast_cancer.png`` and ``.csv`` to
``--output-dir``::

    python examples/tabular_breast_cancer.py --output-dir runs
"""

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skrobust.attacks import PGDTransformer, SquareAttackTransformer
from skrobust.defenses import AdversarialTrainer
from skrobust.metrics import make_adversarial_scorer
from skrobust.models._skorch import default_net

EPS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]
SIZE_FEATURES = ["radius", "perimeter", "area"]


def skorch_mlp(seed, n_features, epochs=60):
    return default_net(module__n_features=n_features, module__n_classes=2,
                       module__hidden_units=(32,), max_epochs=epochs, lr=0.005,
                       batch_size=64, iterator_train__shuffle=True,
                       train_split=None, verbose=0)


def pgd(eps, **params):
    return PGDTransformer(eps=eps, step_size=max(eps, 1e-3) / 4, n_iter=20,
                          eps_scale="std", clip_min="data", clip_max="data", **params)


def robust_accuracy(model, attack, X_fit, y_fit, X, y):
    attack = attack.set_params(estimator=FrozenEstimator(model)).fit(X_fit, y_fit)
    return float(np.mean(model.predict(attack.generate(X, y)) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--n-queries", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=60,
                        help="training epochs of the skorch MLP (60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a shared machine; 0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    data = load_breast_cancer()
    X, y = data.data.astype(np.float32), data.target  # float32: the skorch net needs it
    names = list(data.feature_names)
    immutable = [i for i, name in enumerate(names) if name.split()[-1] in SIZE_FEATURES]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y,
                                              random_state=args.seed)
    models = {
        "LogisticRegression": LogisticRegression(max_iter=2000),
        "SVC (rbf)": SVC(),
        "MLPClassifier": MLPClassifier((32,), max_iter=1000, random_state=args.seed),
        "skorch MLP": skorch_mlp(args.seed, X.shape[1], args.epochs),
    }
    fitted = {}
    for name, model in models.items():
        fitted[name] = make_pipeline(StandardScaler(), model).fit(X_tr, y_tr)

    # 2. robust accuracy against eps (std units), with and without immutable features
    rows = []
    curves = {}
    t0 = time.perf_counter()
    for name, pipe in fitted.items():
        for label, fixed in (("all features", None), ("size immutable", immutable)):
            accs = [robust_accuracy(pipe, pgd(eps, immutable=fixed), X_tr, y_tr, X_te, y_te)
                    for eps in EPS]
            curves[(name, label)] = accs
            rows.append([name, label] + accs)
    print(f"\nRobust accuracy on the test set, PGD-Linf (20 steps), eps in feature std "
          f"units ({time.perf_counter() - t0:.0f} s)")
    header = ["model", "perturbable"] + [f"{e:g}" for e in EPS]
    print_table(header, rows)

    # 3. black-box Square attack vs PGD
    forest = make_pipeline(StandardScaler(),
                           RandomForestClassifier(200, random_state=args.seed)).fit(X_tr, y_tr)
    square_rows = []
    for name, pipe in [*fitted.items(), ("RandomForest", forest)]:
        for eps in (0.1, 0.3):
            square = SquareAttackTransformer(eps=eps, n_queries=args.n_queries,
                                             eps_scale="std", clip_min="data",
                                             clip_max="data", random_state=args.seed)
            t = time.perf_counter()
            acc_square = robust_accuracy(pipe, square, X_tr, y_tr, X_te, y_te)
            t_square = time.perf_counter() - t
            acc_pgd = (robust_accuracy(pipe, pgd(eps), X_tr, y_tr, X_te, y_te)
                       if name != "RandomForest" else float("nan"))
            clean = float(np.mean(pipe.predict(X_te) == y_te))
            square_rows.append([name, eps, clean, acc_pgd, acc_square, t_square])
    print(f"\nSquare attack ({args.n_queries} queries, black-box) vs PGD (white-box): "
          "robust accuracy")
    print_table(["model", "eps (std)", "clean", "PGD", "Square", "Square s"], square_rows)

    # 4. adversarial training of the skorch MLP, eps tuned by GridSearchCV
    # in the scaler's output, eps is in units of the training std already; the
    # grid is over whole attacks so that the step follows eps (2.5 * eps / 5)
    def training_attack(eps):
        return PGDTransformer(eps=eps, step_size=0.5 * eps, n_iter=5, random_start=True,
                              clip_min=None, clip_max=None)

    trainer = make_pipeline(StandardScaler(), AdversarialTrainer(
        skorch_mlp(args.seed, X.shape[1], args.epochs), random_state=args.seed))
    scorer = make_adversarial_scorer(pgd(0.3))
    attacks = [training_attack(eps) for eps in (0.0, 0.1, 0.3, 0.5)]
    search = GridSearchCV(trainer, {"adversarialtrainer__attack": attacks},
                          scoring={"clean": "accuracy", "robust@0.3": scorer},
                          refit="robust@0.3", cv=3, n_jobs=1)
    t = time.perf_counter()
    search.fit(X_tr, y_tr)
    print(f"\nGridSearchCV over the training eps ({time.perf_counter() - t:.0f} s), "
          "3-fold CV")
    res = search.cv_results_
    print_table(["train eps", "clean", "robust@0.3"],
                [[p["adversarialtrainer__attack"].eps, c, r] for p, c, r in
                 zip(res["params"], res["mean_test_clean"], res["mean_test_robust@0.3"])])
    best = search.best_estimator_
    best_eps = search.best_params_["adversarialtrainer__attack"].eps
    best_curve = [robust_accuracy(best, pgd(eps), X_tr, y_tr, X_te, y_te) for eps in EPS]
    curves[(f"skorch MLP, adv. trained (eps={best_eps:g})", "all features")] = best_curve
    rows.append([f"skorch MLP adv. trained eps={best_eps:g}", "all features"] + best_curve)
    print("\nAdversarially trained skorch MLP (best eps), test set")
    print_table(header, rows[-1:])

    with open(out / "tabular_breast_cancer.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    plot(curves, out / "tabular_breast_cancer.png")
    print(f"\nSaved {out / 'tabular_breast_cancer.png'} and the csv.")


def print_table(header, rows):
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, label in zip(axes, ("all features", "size immutable")):
        for (name, which), accs in curves.items():
            if which == label:
                ax.plot(EPS, accs, marker="o", label=name)
        ax.set_title(f"PGD-Linf, {label}")
        ax.set_xlabel("eps (feature standard deviations)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("robust accuracy (test)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
