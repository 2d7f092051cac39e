"""What the three adversarial-training reproductions share: data, nets, the table, the plot.

Not an example itself: ``adversarial_training_nad.py``, ``adversarial_training_fast_fgsm.py``
and ``adversarial_training_pgd.py`` import it (run them from any directory).

The robustness table is the same in every example, so models can be compared:

- clean accuracy on the test images;
- FGSM accuracy (white-box, against the model itself, true labels);
- PGD-40 accuracy with random starts and restarts, step ``2.5 * eps / 40`` (Madry
  et al.'s rule), white-box;
- ACAC / ACTC of the FGSM examples (MindArmour's average confidence of the
  adversarial class and of the true class, over the successful examples);
- the worst case over the default ensemble (APGD-CE, APGD-T-10, FAB-T-10, Square, APGD-T, FGSM;
  :func:`skrobust.evaluation.evaluate_robustness`) on the first ``--n-ensemble``
  test images, the figure to compare with published AutoAttack numbers.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from torch import nn  # noqa: E402

from skrobust._demo import load_demo_data  # noqa: E402
from skrobust.attacks import FGSMTransformer, PGDTransformer  # noqa: E402
from skrobust.evaluation import evaluate_attack, evaluate_robustness  # noqa: E402

EPS_GRID = np.round(np.arange(0.0, 0.41, 0.05), 2)


def parser(description, *, epochs, n_train=None, n_attack=1000, restarts=5,
           n_ensemble=1000):
    """The command line every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--output-dir", default="runs", help="where the figure goes (runs/)")
    p.add_argument("--data-home", default=None,
                   help="data root holding mnist/ (default: $SKROBUST_DATA)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs ({epochs})")
    p.add_argument("--n-train", type=int, default=n_train,
                   help=f"train on the first N training images ({n_train or 'all'})")
    p.add_argument("--n-test", type=int, default=None,
                   help="keep the first N test images (all: 10,000, or 2,000 of the "
                   "embedded set)")
    p.add_argument("--n-attack", type=int, default=n_attack,
                   help=f"attack the first N test images ({n_attack}); clean accuracy "
                   "uses all of them")
    p.add_argument("--n-ensemble", type=int, default=n_ensemble,
                   help=f"test images for the AutoAttack-style ensemble ({n_ensemble}; 0 "
                   "skips it)")
    p.add_argument("--restarts", type=int, default=restarts,
                   help=f"random restarts of the PGD-40 evaluation ({restarts})")
    p.add_argument("--n-curve", type=int, default=500,
                   help="test images per point of the accuracy-vs-eps plot (500)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: fastest on a shared machine)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    return p


def setup(args):
    """Threads, output folder, data; prints the data source."""
    torch.set_num_threads(args.threads)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    X_train, y_train, X_test, y_test, source = load_demo_data(
        args.data_home, args.n_train, args.n_test, args.seed)
    print(f"data: {source}; training on {len(X_train)} images, clean accuracy on "
          f"{len(X_test)} test images, attacks on the first {args.n_attack}")
    return output, X_train, y_train, X_test, y_test


def sgd_net(module, *, epochs, batch_size, lr=0.01, device="cpu", **params):
    """A skorch classifier with cross-entropy on logits and SGD with momentum 0.9."""
    return NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=lr,
        optimizer__momentum=0.9, batch_size=batch_size, max_epochs=epochs,
        train_split=None, iterator_train__shuffle=True, device=device, verbose=0,
        **params)


def timed_fit(estimator, X, y):
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start


def pgd(eps, n_iter=40, restarts=1, seed=0):
    """White-box PGD with Madry's step rule ``2.5 * eps / n_iter`` and random starts."""
    return PGDTransformer(eps=eps, step_size=2.5 * eps / n_iter, n_iter=n_iter,
                          random_start=True, n_restarts=restarts, random_state=seed)


def robustness(model, X, y, eps, *, n_attack, restarts, n_ensemble=0, seed=0):
    """Clean accuracy on all of X; FGSM and PGD-40 accuracy and FGSM ACAC/ACTC on
    n_attack; the ensemble's worst case on n_ensemble (if > 0)."""
    Xa, ya = X[:n_attack], y[:n_attack]
    fgsm = evaluate_attack(model, Xa, ya, FGSMTransformer(eps=eps))
    strong = evaluate_attack(model, Xa, ya, pgd(eps, 40, restarts, seed))
    result = dict(clean=model.score(X, y), fgsm=fgsm.adversarial_accuracy,
                  pgd=strong.adversarial_accuracy, acac=fgsm.acac, actc=fgsm.actc)
    if n_ensemble:
        result["ensemble"] = evaluate_robustness(
            model, X[:n_ensemble], y[:n_ensemble], eps=eps, random_state=seed
        ).robust_accuracy
    return result


def transfer_robustness(model, source, X, y, eps, *, n_attack):
    """MindArmour's protocol: FGSM examples crafted against ``source``, scored on ``model``."""
    Xa, ya = X[:n_attack], y[:n_attack]
    result = evaluate_attack(source, Xa, ya, FGSMTransformer(eps=eps))
    proba = model.predict_proba(result.X_adv)
    from skrobust.metrics import avg_confidence_adv_class, avg_confidence_true_class

    labels = model.classes_
    return dict(clean=model.score(X, y),
                fgsm=float(np.mean(labels[proba.argmax(1)] == ya)),
                acac=avg_confidence_adv_class(ya, proba, labels=labels),
                actc=avg_confidence_true_class(ya, proba, labels=labels))


def format_table(rows, *, restarts, title):
    """rows: list of (name, dict with clean/fgsm/pgd/ensemble/acac/actc/seconds, any may
    be missing)."""
    head = ("model", "clean", "FGSM", f"PGD-40x{restarts}", "ensemble", "ACAC", "ACTC",
            "train s")
    width = max(len(head[0]), *(len(name) for name, _ in rows))
    fmt = f"{{:<{width}}}  {{:>7}}  {{:>7}}  {{:>9}}  {{:>8}}  {{:>6}}  {{:>6}}  {{:>8}}"

    def pct(r, key):
        return f"{100 * r[key]:.1f} %" if key in r else "-"

    def num(r, key, spec):
        return format(r[key], spec) if key in r else "-"

    lines = [title, fmt.format(*head)]
    for name, r in rows:
        lines.append(fmt.format(name, pct(r, "clean"), pct(r, "fgsm"), pct(r, "pgd"),
                                pct(r, "ensemble"),
                                num(r, "acac", ".2f"), num(r, "actc", ".2f"),
                                num(r, "seconds", ".0f")))
    return "\n".join(lines)


def plot_accuracy_vs_eps(models, X, y, path, *, title, n_iter=20, eps_grid=EPS_GRID,
                         seed=0):
    """Accuracy under FGSM (dashed) and PGD-``n_iter`` (solid) against eps, one axis."""
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {}
    for (name, model), color in zip(models.items(), plt.cm.tab10.colors):
        acc_fgsm, acc_pgd = [], []
        for eps in eps_grid:
            if eps == 0:
                acc_fgsm.append(model.score(X, y))
                acc_pgd.append(acc_fgsm[-1])
                continue
            acc_fgsm.append(evaluate_attack(model, X, y, FGSMTransformer(eps=eps))
                            .adversarial_accuracy)
            acc_pgd.append(evaluate_attack(model, X, y, pgd(eps, n_iter, 1, seed))
                           .adversarial_accuracy)
        curves[name] = dict(fgsm=acc_fgsm, pgd=acc_pgd)
        ax.plot(eps_grid, acc_pgd, "-o", color=color, label=f"{name}: PGD-{n_iter}")
        ax.plot(eps_grid, acc_fgsm, "--", color=color, label=f"{name}: FGSM")
    ax.set(xlabel="eps (Linf, pixels in [0, 1])", ylabel="accuracy", ylim=(0, 1.02),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure saved to {path} ({len(X)} test images per point)")
    return curves
