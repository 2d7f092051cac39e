"""Square Attack: skrobust against torchattacks on the same model, images and budget.

A LeNet5 is trained on 8,000 digits of the embedded MNIST test set (plain torch,
Adam, a few epochs, PGD-7 adversarial training at eps 0.3: a plain CNN falls to 0 %
under either implementation within a few hundred queries, which compares nothing);
the next ``--n`` digits are attacked at Linf eps 0.3 with the
Square Attack (p_init 0.8, margin loss, one restart) by skrobust's
``SquareAttackTransformer`` and by ``torchattacks.Square`` (AutoAttack's code), at
each budget of ``--queries``. Two victims: the plain CNN, and the same CNN behind
an input quantisation to 16 grey levels (zero gradients everywhere: the case where
a score-based attack is the one that counts). The table gives robust accuracy (the
share of the n digits still classified correctly, clean errors included), the
images each implementation alone leaves standing ("only sk": standing against
skrobust, fooled by torchattacks), and CPU seconds (process time, one thread: wall
time on a shared machine measures the neighbours).
Both implementations draw their windows at random, so a few images of difference
are noise; ``--seeds`` repeats both with other seeds.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/square.py [--n 200] [--queries 1000 5000]
        [--epochs 5] [--seeds 0] [--norm {inf,2}] [--eps 0.3]
        [--json out.json] [--model-cache lenet.pt]
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skrobust.attacks import SquareAttackTransformer
from skrobust.attacks.functional import pgd
from skrobust.datasets import load_mnist
from skrobust.models import LeNet5

EPS = 0.3  # of the adversarial training (Linf)


class Quantised(nn.Module):
    """The victim behind ``round(x * 15) / 15``: 16 grey levels, zero input gradient."""

    def __init__(self, module, levels=16):
        super().__init__()
        self.module, self.levels = module, levels

    def forward(self, x):
        return self.module(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class Images(nn.Module):
    """Flat-input victim seen as an image model, for torchattacks (N, 1, 28, 28)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x.flatten(1))


def train(X, y, epochs, seed, adversarial):
    """LeNet5 with Adam; ``adversarial``: PGD-7 training at eps 0.3 (Madry et al.)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.randperm(len(X_t))
        for i in range(0, len(X_t), 64):
            idx = order[i:i + 64]
            x, t = X_t[idx], y_t[idx]
            if adversarial:
                model.eval()
                x = pgd(model, x, t, eps=EPS, step_size=0.1, n_iter=7, random_start=True,
                        clip_min=0.0, clip_max=1.0, generator=generator)
                model.train()
            opt.zero_grad()
            F.cross_entropy(model(x), t).backward()
            opt.step()
    return model.eval()


def robust(model, X_adv, y):
    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(X_adv, np.float32))).argmax(1)
    return pred.numpy() == y


def run_skrobust(model, X, y, n_queries, seed, norm="inf", eps=EPS):
    attack = SquareAttackTransformer(model, eps=eps, norm=norm, n_queries=n_queries,
                                     p_init=0.8, random_state=seed)
    return attack.fit(X, y).generate(X, y)


def run_torchattacks(model, X, y, n_queries, seed, norm="inf", eps=EPS):
    import torchattacks

    attack = torchattacks.Square(Images(model), norm="Linf" if norm == "inf" else "L2",
                                 eps=eps, n_queries=n_queries,
                                 n_restarts=1, p_init=0.8, loss="margin",
                                 resc_schedule=True, seed=seed)
    x = torch.from_numpy(X).view(-1, 1, 28, 28)
    return attack(x, torch.from_numpy(y)).flatten(1).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--queries", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=8000,
                        help="training digits (8000; the n attacked ones follow them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--norm", choices=["inf", "2"], default="inf")
    parser.add_argument("--eps", type=float, default=None,
                        help="attack radius (default 0.3 for Linf, 2.0 for L2)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--model-cache", default=None,
                        help="state-dict file: loaded if it exists, else written")
    args = parser.parse_args(argv)
    norm = "inf" if args.norm == "inf" else 2
    eps = args.eps if args.eps is not None else (EPS if norm == "inf" else 2.0)

    torch.set_num_threads(1)
    X_all, y_all = load_mnist(split="test", return_X_y=True)
    X_all, y_all = X_all.astype(np.float32), y_all.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(X_all))
    n_train = args.n_train
    X_train, y_train = X_all[order[:n_train]], y_all[order[:n_train]]
    X, y = X_all[order[n_train:n_train + args.n]], y_all[order[n_train:n_train + args.n]]
    if args.model_cache and os.path.exists(args.model_cache):
        cnn = LeNet5()
        cnn.load_state_dict(torch.load(args.model_cache, weights_only=True))
        cnn.eval()
    else:
        cnn = train(X_train, y_train, args.epochs, seed=0, adversarial=True)
        if args.model_cache:
            torch.save(cnn.state_dict(), args.model_cache)
    victims = {"PGD-AT CNN": cnn, "PGD-AT CNN, quantised input": Quantised(cnn).eval()}
    jobs = {"skrobust": run_skrobust, "torchattacks": run_torchattacks}

    rows = []
    header = (f"{'victim':<28} {'queries':>7} {'seed':>4} {'clean':>6} {'skrobust':>9} "
              f"{'torchattacks':>12} {'only sk':>7} {'only ta':>7} {'cpu sk':>7} "
              f"{'cpu ta':>7}")
    print(f"LeNet5, {args.epochs} epochs of PGD-7 training on {n_train} embedded digits; "
          f"{args.n} held-out "
          f"digits; L{args.norm} eps {eps}; p_init 0.8; 1 thread")
    print(header)
    for name, model in victims.items():
        clean = robust(model, X, y)
        for n_queries in args.queries:
            for seed in args.seeds:
                standing, seconds = {}, {}
                for job, fn in jobs.items():
                    start = time.process_time()
                    X_adv = fn(model, X, y, n_queries, seed, norm, eps)
                    seconds[job] = time.process_time() - start
                    delta = (X_adv - X).astype(np.float64)
                    size = (np.abs(delta).max(axis=1) if norm == "inf"
                            else np.linalg.norm(delta, axis=1))
                    assert size.max() <= eps * (1 + 1e-5)
                    standing[job] = robust(model, X_adv, y)
                row = {
                    "victim": name, "norm": args.norm, "eps": eps, "n_queries": n_queries,
                    "seed": seed, "n": args.n,
                    "clean": float(clean.mean()),
                    "skrobust": float(standing["skrobust"].mean()),
                    "torchattacks": float(standing["torchattacks"].mean()),
                    "only_skrobust_standing": int(np.sum(standing["skrobust"]
                                                         & ~standing["torchattacks"])),
                    "only_torchattacks_standing": int(np.sum(standing["torchattacks"]
                                                             & ~standing["skrobust"])),
                    "seconds_skrobust": seconds["skrobust"],
                    "seconds_torchattacks": seconds["torchattacks"],
                }
                rows.append(row)
                print(f"{name:<28} {n_queries:>7} {seed:>4} {row['clean']:>6.1%} "
                      f"{row['skrobust']:>9.1%} {row['torchattacks']:>12.1%} "
                      f"{row['only_skrobust_standing']:>7} "
                      f"{row['only_torchattacks_standing']:>7} "
                      f"{row['seconds_skrobust']:>7.1f} {row['seconds_torchattacks']:>7.1f}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
