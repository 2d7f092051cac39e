"""Seconds per epoch of clean, NAD, fast FGSM and PGD-k training, measured side by side.

Every job trains the same net (LeNet5, SGD, batches of 128) on the same MNIST images
for one epoch with :class:`skrobust.defenses.AdversarialTrainer`:

- clean: ``replace_ratio=0``;
- NAD: FGSM eps=0.3 on half of each batch (MindArmour);
- fast FGSM: uniform random start, one step of 1.25 * eps, every sample (Wong et al.);
- PGD-k: k steps from a random start, every sample (Madry et al.).

Next to each, a hand-written torch loop does the same work (the floor: the same
number of forward and backward passes, no skorch, no estimator). The nominal
floors are 1.5x clean for NAD, 2x for fast FGSM and (k + 1)x for PGD-k; an attack
pass takes input gradients only, so it is a little cheaper than a training pass and
the measured ratios can fall below them. Jobs are interleaved (the order rotates
every round) and repeated; the table shows medians. With one thread (the default)
the times are the process's CPU seconds, which on an idle machine equal wall
seconds and on a shared one are not inflated by other processes; with more threads
they are wall seconds.

Usage::

    python benchmarks/adversarial_training.py [--n 4096] [--k 5] [--repeats 3]

Data: the embedded MNIST test set (no download); one CPU thread by default.
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from torch import nn

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.datasets import load_mnist
from skrobust.defenses import AdversarialTrainer
from skrobust.models import LeNet5

EPS, BATCH = 0.3, 128


def skorch_net():
    return NeuralNetClassifier(LeNet5, criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.SGD, lr=0.01, batch_size=BATCH,
                               max_epochs=1, train_split=None,
                               iterator_train__shuffle=True, verbose=0)


def trainer_jobs(k):
    return {
        "clean": dict(replace_ratio=0.0),
        "NAD (FGSM, half batch)": dict(attack=FGSMTransformer(eps=EPS), replace_ratio=0.5),
        "fast FGSM (random start)": dict(attack=PGDTransformer(
            eps=EPS, step_size=1.25 * EPS, n_iter=1, random_start=True)),
        f"PGD-{k}": dict(attack=PGDTransformer(eps=EPS, step_size=2.5 * EPS / k, n_iter=k,
                                               random_start=True)),
    }


def _input_grad(model, x, y):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return grad


def hand_epoch(X, y, job, k, seed):
    """The same epoch as a plain torch loop: the floor."""
    torch.manual_seed(seed)
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    order = torch.randperm(len(X))
    for start in range(0, len(X), BATCH):
        idx = order[start:start + BATCH]
        x, t = X[idx], y[idx]
        model.eval()
        if job == "NAD (FGSM, half batch)":
            rows = torch.randperm(len(x))[: (len(x) + 1) // 2]
            x = x.clone()
            x[rows] = (x[rows] + EPS * _input_grad(model, x[rows], t[rows]).sign()).clamp(0, 1)
        elif job != "clean":
            n_iter, step = (1, 1.25 * EPS) if job.startswith("fast") else (k, 2.5 * EPS / k)
            x0 = x
            x = (x0 + torch.empty_like(x0).uniform_(-EPS, EPS)).clamp(0, 1)
            for _ in range(n_iter):
                x = x + step * _input_grad(model, x, t).sign()
                x = torch.min(torch.max(x, x0 - EPS), x0 + EPS).clamp(0, 1)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x.detach()), t).backward()
        opt.step()


def trainer_epoch(X, y, params, seed):
    AdversarialTrainer(skorch_net(), random_state=seed, **params).fit(X, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="training images (4096)")
    parser.add_argument("--k", type=int, default=5, help="PGD steps of PGD-k (5)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    X, y = load_mnist(split="test", return_X_y=True)
    X, y = X[: args.n].astype(np.float32), y[: args.n].astype(np.int64)
    jobs = trainer_jobs(args.k)
    names = list(jobs)
    times = {(name, kind): [] for name in names for kind in ("trainer", "hand")}
    trainer_epoch(X[:256], y[:256], jobs["clean"], 0)  # warm-up
    for r in range(args.repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            for kind in ("trainer", "hand") if r % 2 == 0 else ("hand", "trainer"):
                start = clock()
                if kind == "trainer":
                    trainer_epoch(X, y, jobs[name], r)
                else:
                    hand_epoch(X, y, name, args.k, r)
                times[name, kind].append(clock() - start)
    med = {key: statistics.median(v) for key, v in times.items()}
    nominal = {names[0]: 1.0, names[1]: 1.5, names[2]: 2.0, names[3]: args.k + 1.0}
    unit = "CPU" if args.threads == 1 else "wall"
    print(f"LeNet5, {args.n} MNIST images, batches of {BATCH}, {args.threads} thread(s), "
          f"{unit} seconds, median of {args.repeats} interleaved rounds")
    head = ("training", "s/epoch", "floor s", "vs floor", "x clean", "floor x clean",
            "nominal")
    print("{:<26} {:>8} {:>8} {:>9} {:>8} {:>14} {:>8}".format(*head))
    clean, clean_hand = med[names[0], "trainer"], med[names[0], "hand"]
    for name in names:
        ours, hand = med[name, "trainer"], med[name, "hand"]
        print(f"{name:<26} {ours:8.2f} {hand:8.2f} {ours / hand:8.2f}x {ours / clean:7.2f}x "
              f"{hand / clean_hand:13.2f}x {nominal[name]:7.1f}x")


if __name__ == "__main__":
    main()
