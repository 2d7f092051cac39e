"""Detecting PGD examples on MNIST with MMD tests on layer representations.

Reproduces the layer-wise detection protocol ("LADIS"): a two-sample MMD test of
100 natural reference inputs against 100 incoming inputs, repeated 100 times at
alpha = 0.05, on the representations of each layer of a CNN from the input to
the penultimate layer. Detection rates are reported for PGD (L-inf) examples at
several eps, beside the clean-vs-clean false-positive rate, for the plain RBF
test and for each option of :class:`skrobust.detection.MMDDriftDetector`
(five-bandwidth kernel mixture, standardised features, class-matched reference).
Also: a t-SNE plot of natural vs adversarial representations at an early and a
late layer, and how well the witness function ranks adversarial inputs.

The network is a 5-conv CNN of our own (16-32-32-64-64 channels, 3x3, three
max-pools, fc 128, fc 10), trained 2 epochs with Adam on the 60,000 MNIST
training images (cached under --output-dir).

Run (about 15-30 min on 2 CPU cores)::

    SKROBUST_DATA=/path/to/data nice -n 10 python examples/mmd_detection_mnist.py \\
        --output-dir runs/mmd
"""

import argparse
import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skrobust.attacks import PGDTransformer
from skrobust.datasets import load_mnist
from skrobust.detection import MMDDriftDetector
from skrobust.models._layers import ToImage
from skrobust.utils import extract_features

# from the input to the penultimate layer; after each conv pair the pooled output
# (half the features of the ReLU before it) keeps the kernel computations cheap
LAYERS = ["input", "relu1", "pool1", "relu3", "pool2", "relu5", "relu6"]


class DeepCNN(nn.Sequential):
    """5 conv layers + 2 fc layers, named so that layer features can be extracted."""

    def __init__(self, n_classes=10):
        super().__init__(OrderedDict([
            ("reshape", ToImage(1, 28)),
            ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 32, 3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(32, 64, 3, padding=1)), ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("conv5", nn.Conv2d(64, 64, 3, padding=1)), ("relu5", nn.ReLU()),
            ("pool3", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * 3 * 3, 128)), ("relu6", nn.ReLU()),
            ("fc2", nn.Linear(128, n_classes)),
        ]))


def train_or_load(path, data_home, epochs, seed, n_train=None):
    module = DeepCNN()
    if path.exists():
        module.load_state_dict(torch.load(path, weights_only=True))
        print(f"loaded {path}")
        return module
    from skorch import NeuralNetClassifier

    X, y = load_mnist(split="train", data_home=data_home, download=False, return_X_y=True)
    X, y = X[:n_train], y[:n_train]
    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=epochs, batch_size=64, train_split=None,
        iterator_train__shuffle=True, verbose=1)
    net.fit(X.astype(np.float32), y.astype(np.int64))
    torch.save(net.module_.state_dict(), path)
    return net.module_


def accuracy(module, X, y):
    logits = extract_features(module, X, "fc2", batch_size=500)
    return float(np.mean(logits.argmax(1) == y))


def attack_pools(module, X, y, eps_list, n_iter, path, seed):
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            if all(f"eps_{eps:g}" in data for eps in eps_list):
                print(f"loaded {path}")
                return {eps: data[f"eps_{eps:g}"] for eps in eps_list}
    pools = {}
    for eps in eps_list:
        start = time.perf_counter()
        attack = PGDTransformer(module, eps=eps, step_size=2.5 * eps / n_iter,
                                n_iter=n_iter, batch_size=250, random_state=seed)
        pools[eps] = attack.fit(X, y).generate(X, y).astype(np.float32)
        print(f"PGD eps={eps:g}: {time.perf_counter() - start:.0f} s", flush=True)
    np.savez_compressed(path, **{f"eps_{eps:g}": pool for eps, pool in pools.items()})
    return pools


def rates_table(rates, eps_list, layers):
    head = f"{'layer':<10}{'clean (FPR)':>12}" + "".join(f"{f'eps={e:g}':>11}" for e in eps_list)
    lines = [head, "-" * len(head)]
    for name in [*layers, "combined"]:
        row = f"{name:<10}{rates['clean'][name]:>12.2f}"
        row += "".join(f"{rates[e][name]:>11.2f}" for e in eps_list)
        lines.append(row)
    return "\n".join(lines)


def plot_rates(all_rates, eps_list, layers, alpha, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_rates), figsize=(4.2 * len(all_rates), 3.8),
                             sharey=True, squeeze=False)
    depth = np.arange(len(layers))
    for ax, (variant, rates) in zip(axes[0], all_rates.items()):
        for eps in eps_list:
            ax.plot(depth, [rates[eps][n] for n in layers], marker="o", label=f"PGD eps={eps:g}")
        ax.plot(depth, [rates["clean"][n] for n in layers], marker="s", color="k",
                label="clean vs clean (FPR)")
        ax.axhline(alpha, color="grey", ls="--", lw=1, label=f"alpha={alpha:g}")
        ax.set_xticks(depth, layers, rotation=45)
        ax.set_title(variant)
        ax.set_xlabel("layer (input -> penultimate)")
    axes[0, 0].set_ylabel("detection rate (100 tests, 100 vs 100)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(module, X_nat, X_adv, layers, eps, path, seed):
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    feats = extract_features(module, np.concatenate([X_nat, X_adv]), layers)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 4.2))
    for ax, name in zip(axes, layers):
        f = feats[name]
        f = PCA(n_components=min(50, f.shape[1]), random_state=seed).fit_transform(f)
        emb = TSNE(n_components=2, init="pca", random_state=seed).fit_transform(f)
        n = len(X_nat)
        ax.scatter(*emb[:n].T, s=4, label="natural")
        ax.scatter(*emb[n:].T, s=4, label=f"PGD eps={eps:g}")
        ax.set_title(f"t-SNE of {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs", type=Path)
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=None, help="first N training images")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--n-iter", type=int, default=10, help="PGD steps")
    parser.add_argument("--n-ref", type=int, default=2000, help="natural reference pool")
    parser.add_argument("--n-pool", type=int, default=500, help="tested pool (attacked)")
    parser.add_argument("--n-repeats", type=int, default=100)
    parser.add_argument("--sample-size", type=int, default=100)
    parser.add_argument("--n-permutations", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--variants", nargs="*",
                        default=["rbf", "rbf_mixture", "standardize", "class_matched"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a shared machine; 0: torch's default)")
    args = parser.parse_args(argv)
    if args.n_pool < 100:
        parser.error(f"--n-pool {args.n_pool}: at least 100 (the witness ranking mixes 90 "
                     "natural and 10 adversarial images of the pool)")
    if args.n_ref + args.n_pool > 10000:
        parser.error(f"--n-ref {args.n_ref} + --n-pool {args.n_pool}: at most 10000 "
                     "(both are drawn, disjoint, from the 10k test images)")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # the caches are named by everything they depend on: another run in the same folder
    # with other sizes must not load them
    n_train = "" if args.n_train is None else f"_{args.n_train}"
    module = train_or_load(out / f"mnist_deepcnn_{args.epochs}ep{n_train}_seed{args.seed}.pt",
                           args.data_home, args.epochs, args.seed, args.n_train)
    module.eval()
    X_test, y_test = load_mnist(split="test", return_X_y=True)
    X_test = X_test.astype(np.float32)
    print(f"test accuracy: {accuracy(module, X_test, y_test):.4f}")

    # disjoint natural pools: the reference, and the images that are attacked
    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(X_test))
    ref_rows = order[:args.n_ref]
    pool_rows = order[args.n_ref:args.n_ref + args.n_pool]
    X_ref, X_clean, y_clean = X_test[ref_rows], X_test[pool_rows], y_test[pool_rows]
    adv = attack_pools(module, X_clean, y_clean, args.eps, args.n_iter,
                       out / (f"pgd_pools_{args.epochs}ep{n_train}_seed{args.seed}_"
                              f"{args.n_iter}it_ref{args.n_ref}_pool{args.n_pool}.npz"),
                       args.seed)
    for eps in args.eps:
        print(f"eps={eps:g}: accuracy under PGD {accuracy(module, adv[eps], y_clean):.3f}")

    variants = {
        "rbf": {},
        "rbf_mixture": {"kernel": "rbf_mixture"},
        "standardize": {"standardize": True},
        "class_matched": {"class_matched": True},
    }
    all_rates = {}
    for variant in args.variants:
        start = time.perf_counter()
        detector = MMDDriftDetector(
            module, layers=LAYERS, n_permutations=args.n_permutations, alpha=args.alpha,
            random_state=args.seed, **variants[variant]).fit(X_ref)
        kw = dict(n_repeats=args.n_repeats, sample_size=args.sample_size)
        rates = {"clean": detector.detection_rate(X_clean, **kw)}
        for eps in args.eps:
            rates[eps] = detector.detection_rate(adv[eps], **kw)
        all_rates[variant] = rates
        print(f"\n== {variant} ({time.perf_counter() - start:.0f} s): detection rate, "
              f"{args.n_repeats} tests of {args.sample_size} vs {args.sample_size}, "
              f"alpha={args.alpha:g}")
        print(rates_table(rates, args.eps, LAYERS), flush=True)
    plot_rates(all_rates, args.eps, LAYERS, args.alpha, out / "mmd_detection_rates.png")

    # witness ranking: 90 natural + 10 adversarial, how many adversarial in the top 10
    detector = MMDDriftDetector(module, layers="relu6", random_state=args.seed).fit(X_ref)
    ranking = {}
    for eps in args.eps:
        hits = []
        for repeat in range(20):
            r = np.random.RandomState(repeat)
            nat = r.choice(len(X_clean), 90, replace=False)
            bad = r.choice(len(X_clean), 10, replace=False)
            batch = np.concatenate([X_clean[nat], adv[eps][bad]])
            top = detector.top_k_suspicious(batch, k=10)
            hits.append(np.mean(top >= 90))
        ranking[eps] = float(np.mean(hits))
    print("\nwitness ranking at relu6, precision@10 (10 adversarial among 100; chance 0.10):")
    print("  " + "  ".join(f"eps={e:g}: {p:.2f}" for e, p in ranking.items()))

    eps_tsne = 0.1 if 0.1 in args.eps else args.eps[-1]
    plot_tsne(module, X_clean[:500], adv[eps_tsne][:500], ["relu1", "relu6"], eps_tsne,
              out / "mmd_tsne.png", args.seed)
    with open(out / "mmd_detection_results.json", "w") as f:
        json.dump({"rates": {v: {str(k): r for k, r in rates.items()}
                             for v, rates in all_rates.items()},
                   "witness_precision_at_10": {str(k): v for k, v in ranking.items()},
                   "args": {k: str(v) for k, v in vars(args).items()}}, f, indent=1)
    print(f"\nfigures and results in {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
