"""Deep Neural Rejection on MNIST: secml's DNR tutorial and the security evaluation curve.

Reproduces the protocol of secml's tutorial 12 (Sotgiu et al., "Deep neural
rejection against adversarial examples", EURASIP J. on Info. Security 2020):

1. split the MNIST training set in two stratified halves;
2. train a LeNet-5 CNN on the first half;
3. fit DNR (RBF SVMs on relu2, relu3, relu4 and an RBF SVM combiner, with the
   tutorial's SVM values) on 5000 random samples of the second half;
4. set the reject threshold so that 10 % of the first 1000 test samples are rejected;
5. attack test sample 10 with PGD-L2 + exponential line search (dmax = 2) and draw
   the tutorial's figure: attack loss, confidence of the true and of the predicted
   class per iteration, original and adversarial digit;
6. security evaluation: accuracy against the L2 budget (0 to 5) on test samples not
   used for the threshold, for the plain CNN and for DNR, where a rejected
   adversarial example counts as correct; table + plot. DNR is evaluated with the
   tutorial's attack (PGDExp) *and* adaptively: the samples PGDExp leaves standing
   are attacked by :class:`~skrobust.attacks.AdaptiveRejectionTransformer` (a
   targeted margin attack on the CNN's logits or feature mimicry towards a DNR
   training digit of the target class, then the reject-aware DNR margin), and
   DNR's curve is the worst case of both.

Run (minutes on a laptop CPU; the trained CNN is cached in the output folder)::

    python examples/dnr_mnist.py --output-dir runs --data-home /path/with/mnist
"""

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC
from skorch import NeuralNetClassifier
from torch import nn

from skrobust.attacks import AdaptiveRejectionTransformer, PGDExpTransformer
from skrobust.datasets import load_mnist
from skrobust.defenses import DNRClassifier
from skrobust.metrics import (
    accepted_accuracy_score,
    rejection_rate,
    robust_accuracy_with_rejection_score,
)
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net

TUTORIAL_SVMS = dict(
    layers=["relu2", "relu3", "relu4"],
    layer_clf=SVC(kernel="rbf", C=10, gamma=1e-2),
    combiner=SVC(kernel="rbf", C=0.1, gamma=1),
    layer_params={"relu4": {"C": 1}, "relu2": {"gamma": 1e-3}},
    standardize=False,  # the tutorial's values are for raw layer outputs
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--data-home", default=None, help="folder holding mnist/")
    parser.add_argument("--n-train", type=int, default=5000, help="DNR training samples")
    parser.add_argument("--n-threshold", type=int, default=1000)
    parser.add_argument("--reject-rate", type=float, default=0.1)
    parser.add_argument("--n-eval", type=int, default=500, help="security-evaluation samples")
    parser.add_argument("--eps", type=float, nargs="+",
                        default=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    parser.add_argument("--n-iter", type=int, default=20,
                        help="PGDExp iterations of the security evaluation")
    parser.add_argument("--single-init", action="store_true",
                        help="no second start from the nearest sample of another class")
    parser.add_argument("--adaptive-iter", type=int, default=100,
                        help="APGD iterations of each stage of the adaptive attack")
    parser.add_argument("--n-targets", type=int, default=3,
                        help="target classes per sample of the adaptive attack")
    parser.add_argument("--no-adaptive", action="store_true",
                        help="evaluate DNR with PGDExp only (the tutorial's evaluation)")
    parser.add_argument("--sample-idx", type=int, default=10)
    parser.add_argument("--cnn-epochs", type=int, default=8)
    parser.add_argument("--n-cnn-train", type=int, default=None,
                        help="train the CNN on the first N images of its half (all 30,000)")
    parser.add_argument("--cv", type=int, default=5, help="DNR cross-validation folds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a shared machine; 0: torch's default)")
    parser.add_argument("--fit-only", action="store_true", help="stop after fitting DNR")
    parser.add_argument("--skip-curve", action="store_true",
                        help="stop after the single-sample figure")
    return parser.parse_args(argv)


def train_cnn(X, y, epochs, cache):
    net = NeuralNetClassifier(LeNet5, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, max_epochs=epochs,
                              batch_size=128, train_split=None,
                              iterator_train__shuffle=True, verbose=0)
    if cache.exists():
        net.initialize()
        net.module_.load_state_dict(torch.load(cache, weights_only=True))
        print(f"loaded the CNN from {cache}")
        return net
    start = time.perf_counter()
    fit_net(net, X, y, seed=0)
    torch.save(net.module_.state_dict(), cache)
    print(f"trained the CNN in {time.perf_counter() - start:.0f} s")
    return net


def attack_figure(dnr, x, y, X_init, y_init, args, path):
    import matplotlib.pyplot as plt

    # the tutorial's solver: eta = eta_min = 0.1, 30 iterations, double init from
    # the DNR training set
    attack = PGDExpTransformer(FrozenEstimator(dnr), eps=2.0, step_size=0.1, n_iter=30,
                               double_init=not args.single_init)
    x_adv, history = attack.fit(X_init, y_init).generate_with_history(x, y)
    loss = history.loss[:, 0]
    scores = history.scores[:, 0, :]
    conf = torch.softmax(torch.as_tensor(scores), dim=1).numpy()  # as in the tutorial
    pred = dnr.predict(x_adv)[0]
    true_col = int(np.searchsorted(dnr.classes_, y[0]))
    other = scores[-1].copy()
    other[true_col] = -np.inf
    pred_col = int(np.argmax(other))  # the best competing class at the end
    fig, axes = plt.subplots(2, 2, figsize=(8, 7))
    axes[0, 0].plot(loss, c="black")
    axes[0, 0].set(xlabel="iteration", ylabel="loss")
    axes[0, 1].plot(conf[:, pred_col], "--", c="black",
                    label=f"best other ({dnr.classes_[pred_col]})")
    axes[0, 1].plot(conf[:, true_col], c="black", label=f"true ({y[0]})")
    axes[0, 1].set(xlabel="iteration", ylabel="confidence")
    axes[0, 1].legend()
    axes[1, 0].imshow(x[0].reshape(28, 28), cmap="gray")
    axes[1, 0].set_title(f"orig (true {y[0]})")
    axes[1, 1].imshow(x_adv[0].reshape(28, 28), cmap="gray")
    axes[1, 1].set_title(f"adv (DNR predicts {pred})")
    for ax in axes[1]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"sample {args.sample_idx}: true {y[0]}, DNR on the adversarial digit: {pred} "
          f"(-1 = rejected), final loss {loss[-1]:.3f}, "
          f"L2 {np.linalg.norm(x_adv - x):.3f}, {history.n_gradients} gradients, "
          f"{history.n_forwards} forward passes; figure: {path}")


def security_curve(cnn, dnr, X, y, X_init, y_init, args, out):
    import matplotlib.pyplot as plt

    rows = []
    for eps in args.eps:
        row = {"eps": eps}
        for name, victim in (("cnn", cnn), ("dnr", dnr)):
            start = time.perf_counter()
            if eps == 0:
                X_adv = X
            else:
                # early_stop: a sample stops at its first success (only successes count)
                attack = PGDExpTransformer(FrozenEstimator(victim), eps=eps, step_size=0.1,
                                           n_iter=args.n_iter, early_stop=True,
                                           double_init=not args.single_init,
                                           batch_size=100)
                X_adv = attack.fit(X_init, y_init).generate(X, y)
            pred = victim.predict(X_adv)
            row[f"{name}_acc"] = robust_accuracy_with_rejection_score(y, pred)
            if name == "dnr" and eps > 0 and not args.no_adaptive:
                # the worst case with the adaptive attack, on the samples still standing
                row["dnr_pgdexp_acc"] = row["dnr_acc"]
                standing = np.flatnonzero((pred == y) | (pred == dnr.reject_label))
                if len(standing):
                    adaptive = AdaptiveRejectionTransformer(
                        FrozenEstimator(dnr), eps=eps, norm=2, n_iter=args.adaptive_iter,
                        n_target_classes=args.n_targets, batch_size=100, random_state=0)
                    X_adv = X_adv.copy()
                    X_adv[standing] = adaptive.fit(X_init, y_init).generate(
                        X[standing], y[standing])
                    pred = victim.predict(X_adv)
                row["dnr_acc"] = robust_accuracy_with_rejection_score(y, pred)
            elif name == "dnr":
                row["dnr_pgdexp_acc"] = row["dnr_acc"]
            row[f"{name}_s"] = time.perf_counter() - start
            if name == "dnr":
                row["dnr_rejected"] = rejection_rate(y, pred)
                row["dnr_acc_reject_is_error"] = float(np.mean(pred == y))
        rows.append(row)
        print(f"eps {eps:4.1f}: CNN {row['cnn_acc']:.3f}  DNR {row['dnr_acc']:.3f} "
              f"(PGDExp alone {row['dnr_pgdexp_acc']:.3f}) "
              f"(rejected {row['dnr_rejected']:.3f}, rejection-as-error "
              f"{row['dnr_acc_reject_is_error']:.3f})  [{row['cnn_s']:.0f} s, "
              f"{row['dnr_s']:.0f} s]", flush=True)
        with open(out / "dnr_security_curve.csv", "w", newline="") as fh:  # partial results
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with open(out / "dnr_security_curve.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    eps = [r["eps"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(eps, [r["cnn_acc"] for r in rows], "o-", label="CNN (LeNet-5)")
    ax.plot(eps, [r["dnr_pgdexp_acc"] for r in rows], "s--", c="gray",
            label="DNR, PGDExp alone")
    if not args.no_adaptive:
        ax.plot(eps, [r["dnr_acc"] for r in rows], "s-", label="DNR, worst case with adaptive")
    ax.set(xlabel=r"L2 budget $d_{max}$", ylabel="accuracy (rejection = correct)",
           ylim=(0, 1.02), title=f"{len(y)} test samples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "dnr_security_curve.png", dpi=100)
    plt.close(fig)
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, y = load_mnist(split="train", data_home=args.data_home, return_X_y=True)
    X_test, y_test = load_mnist(split="test", data_home=args.data_home, return_X_y=True)
    first, second = train_test_split(np.arange(len(X)), train_size=0.5, stratify=y,
                                     random_state=1)
    first = first[:args.n_cnn_train]
    size = "" if args.n_cnn_train is None else f"_{len(first)}"
    cnn = train_cnn(X[first], y[first], args.cnn_epochs,
                    out / f"lenet5_mnist_half{size}_{args.cnn_epochs}ep.pt")

    rng = np.random.RandomState(0)
    train = rng.choice(second, args.n_train, replace=False)
    # DNR is refitted on every run: a fitted estimator can only be cached as a pickle,
    # and loading a pickle can run arbitrary code
    start = time.perf_counter()
    # reject_rate=0: every SVM sees all its samples; the threshold is set below on
    # held-out test samples, as in the tutorial
    dnr = DNRClassifier(FrozenEstimator(cnn), cv=args.cv, reject_rate=0.0, random_state=0,
                        **TUTORIAL_SVMS)
    dnr.fit(X[train], y[train])
    fit_s = time.perf_counter() - start
    if args.fit_only:
        return
    X_thr, y_thr = X_test[:args.n_threshold], y_test[:args.n_threshold]
    dnr.compute_threshold(X_thr, args.reject_rate)
    n_sv = {name: int(sum(len(e.support_) for e in clf.estimators_))
            for name, clf in dnr.layer_clfs_.items()}
    print(f"DNR fitted on {args.n_train} samples in {fit_s:.0f} s; support vectors {n_sv}; "
          f"threshold at {args.reject_rate:.0%} rejection of {args.n_threshold} test samples "
          f"{dnr.threshold_:.4f}")

    X_eval = X_test[args.n_threshold:args.n_threshold + args.n_eval]
    y_eval = y_test[args.n_threshold:args.n_threshold + args.n_eval]
    pred = dnr.predict(X_eval)
    print("\nclean test samples not used for the threshold "
          f"({len(y_eval)}):\n"
          f"  CNN accuracy                       {np.mean(cnn.predict(X_eval) == y_eval):.4f}\n"
          f"  DNR accuracy (rejection = error)   {np.mean(pred == y_eval):.4f}\n"
          f"  DNR rejection rate                 {rejection_rate(y_eval, pred):.4f}\n"
          f"  DNR accuracy on accepted samples   {accepted_accuracy_score(y_eval, pred):.4f}\n")

    x0 = X_test[args.sample_idx:args.sample_idx + 1]
    attack_figure(dnr, x0, y_test[args.sample_idx:args.sample_idx + 1], X[train], y[train],
                  args, out / "dnr_attack.png")

    if args.skip_curve:
        return
    print(f"\nsecurity evaluation (PGD-L2 exponential line search, {args.n_iter} "
          "iterations, early stop at success, double init unless --single-init; "
          "reject-aware margin loss for DNR):")
    rows = security_curve(cnn, dnr, X_eval, y_eval, X[train], y[train], args, out)
    print("\n| L2 budget | CNN accuracy | DNR accuracy (rejection = correct) | "
          "DNR, PGDExp alone | DNR rejected |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['eps']:.1f} | {r['cnn_acc']:.3f} | {r['dnr_acc']:.3f} | "
              f"{r['dnr_pgdexp_acc']:.3f} | {r['dnr_rejected']:.3f} |")
    dominated = all(r["dnr_acc"] > r["cnn_acc"] for r in rows if r["eps"] > 0)
    print(f"\nDNR above the CNN at every budget > 0: {dominated}; "
          f"figures in {out}/dnr_attack.png and {out}/dnr_security_curve.png")


if __name__ == "__main__":
    main()
