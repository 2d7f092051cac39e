"""Suppress-privacy training against plain training, and the inversion attack's speed.

1. Epoch time of LeNet5 (SGD lr 0.05, batch 32) trained plainly and by
   :class:`skrobust.privacy.SuppressPrivacyClassifier` with the tutorial's mask
   layers, the epoch inside the suppress window and the tutorial's rate of
   suppress operations (1000 over 8 epochs of 1875 batches: one per 15 batches).
   Plain and suppress runs alternate and are repeated; the table shows medians
   and their ratio (target: suppress within 15 % of plain).
2. Seconds per image per iteration of :class:`skrobust.privacy.ImageInversionAttack`
   at fc1 of LeNet5, for a batch of 30 images (the tutorial's protocol) and for
   one image at a time.

Usage::

    python benchmarks/privacy.py [--n 4000] [--repeats 5] [--threads 1]

Data: the embedded MNIST test images (nothing is downloaded).
"""

import argparse
import statistics
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier

from skrobust.datasets import load_mnist
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net
from skrobust.privacy import ImageInversionAttack, MaskLayer, SuppressPrivacyClassifier
from skrobust.utils._torch import torch_seed

LAYERS = [
    MaskLayer("conv1.weight", min_kept=10, lower_clip=0.005, upper_bound=1.2),
    MaskLayer("conv2.weight", min_kept=150, lower_clip=0.005, upper_bound=1.2),
    MaskLayer("fc1.weight", noise=0.01, upper_bound=1.2),
    MaskLayer("fc2.weight", noise=0.01, upper_bound=1.2),
    MaskLayer("fc3.weight", min_kept=50, noise=0.01, upper_bound=1.2),
]
TUTORIAL_RATE = 1000 / (8 * 1875)  # suppress operations per batch


def lenet(epochs=1):
    return NeuralNetClassifier(LeNet5, max_epochs=epochs, lr=0.05, batch_size=32,
                               optimizer=torch.optim.SGD, criterion=torch.nn.CrossEntropyLoss,
                               train_split=None, iterator_train__shuffle=True, verbose=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-iter", type=int, default=20, help="inversion iterations timed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X, y = load_mnist(split="test", return_X_y=True)
    X, y = X[:args.n], y[:args.n].astype(np.int64)
    n_batches = -(-len(X) // 32)
    mask_times = max(1, round(TUTORIAL_RATE * n_batches))

    def plain():
        fit_net(lenet(), X, y, 0)  # the classifier's path, with its batch iterator

    def suppress():
        SuppressPrivacyClassifier(lenet(), start_epoch=1, end_epoch=1, mask_times=mask_times,
                                  mask_layers=LAYERS, random_state=0).fit(X, y)

    jobs = {"plain": plain, "suppress": suppress}
    times = {name: [] for name in jobs}
    plain()  # warm-up
    for r in range(args.repeats):
        order = list(jobs) if r % 2 == 0 else list(jobs)[::-1]
        for name in order:
            start = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"LeNet5 epoch on {len(X)} images ({n_batches} batches of 32, {mask_times} "
          f"suppress operations), {args.repeats} interleaved repeats, medians, "
          f"{args.threads} thread(s)")
    for name in jobs:
        print(f"  {name:<9} {med[name]:7.2f} s  (min {min(times[name]):.2f}, "
              f"max {max(times[name]):.2f})")
    print(f"  suppress / plain = {med['suppress'] / med['plain']:.3f}  (target <= 1.15)")

    with torch_seed(0):
        victim = LeNet5()
    images = X[:30]
    print(f"\nImageInversionAttack at fc1 of LeNet5, {args.n_iter} iterations, medians of "
          f"{args.repeats}")
    for batch in (30, 1):
        attack = ImageInversionAttack(victim, layer="fc1", n_iter=args.n_iter,
                                      batch_size=batch, random_state=0).fit(images)
        subset = images if batch > 1 else images[:5]
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            attack.transform(subset)
            runs.append(time.perf_counter() - start)
        per = statistics.median(runs) / (len(subset) * args.n_iter)
        print(f"  batch {batch:>2}: {1e3 * per:7.3f} ms per image per iteration "
              f"({per * 100 * 30:.2f} s for the tutorial's 30 images x 100 iterations)")


if __name__ == "__main__":
    main()
