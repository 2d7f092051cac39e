"""Cost of an honest evaluation: APGD against PGD, and the ensemble against all-on-all.

1. Seconds per 1000 examples per iteration of APGD and of PGD with the same number
   of iterations on LeNet5 (the floor is the same: one forward and one backward pass
   per iteration; APGD adds one pass at the start, its checkpoints and momentum).
   ``transform`` is timed, so every sample is attacked for every iteration.
2. The worst-case ensemble (APGD-CE, APGD-T with 9 targets, FGSM), where each attack
   only runs on the samples still standing, against running each of its attacks on
   every correctly classified sample.

Timings are interleaved and repeated; medians are printed. Run::

    SKROBUST_DATA=../shared/data python benchmarks/evaluation.py
"""

import argparse
import statistics
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from skrobust._demo import load_demo_data
from skrobust.attacks import APGDTransformer, PGDTransformer
from skrobust.evaluation import default_attacks, evaluate_robustness
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="test images timed (500)")
    p.add_argument("--n-iter", type=int, default=20, help="iterations timed (20)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (3)")
    p.add_argument("--n-ensemble", type=int, default=200, help="images of part 2 (200)")
    p.add_argument("--ensemble-iter", type=int, default=50, help="APGD iterations, part 2 (50)")
    p.add_argument("--n-train", type=int, default=10000, help="training images (10000)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--data-home", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test, source = load_demo_data(args.data_home, args.n_train,
                                                              None, 0)
    net = NeuralNetClassifier(LeNet5, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.SGD, lr=0.01, optimizer__momentum=0.9,
                              batch_size=32, max_epochs=1, train_split=None,
                              iterator_train__shuffle=True, verbose=0)
    fit_net(net, X_train, y_train, 0)
    print(f"data: {source}; LeNet5 trained 1 epoch on {len(X_train)} images; "
          f"torch threads: {args.threads}")

    X, y = X_test[:args.n], y_test[:args.n]
    module = net.module_
    pgd = PGDTransformer(module, eps=0.3, step_size=0.01, n_iter=args.n_iter).fit(X, y)
    apgd = APGDTransformer(module, eps=0.3, n_iter=args.n_iter, random_state=0).fit(X, y)
    times = {"PGD": [], "APGD-CE": []}
    for _ in range(args.repeats):
        times["PGD"].append(timed(lambda: pgd.transform(X)))
        times["APGD-CE"].append(timed(lambda: apgd.transform(X)))
    per = {k: statistics.median(v) / (len(X) / 1000) / args.n_iter for k, v in times.items()}
    print(f"\n1. seconds per 1000 examples per iteration ({args.n_iter} iterations, "
          f"{len(X)} images, median of {args.repeats})")
    for k, v in per.items():
        print(f"   {k:<8} {v:.4f} s")
    print(f"   APGD / PGD = {per['APGD-CE'] / per['PGD']:.2f} "
          f"(pass-count floor {(args.n_iter + 1) / args.n_iter:.2f})")

    X, y = X_test[:args.n_ensemble], y_test[:args.n_ensemble]
    attacks = default_attacks(10, n_iter=args.ensemble_iter)
    for eps in (0.1, 0.3):
        ensemble_t, all_t = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = evaluate_robustness(net, X, y, eps=eps, attacks=attacks,
                                         sanity_checks=False, random_state=0)
            ensemble_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            alone = [evaluate_robustness(net, X, y, eps=eps, attacks=[a],
                                         sanity_checks=False, random_state=0)
                     for a in attacks]
            all_t.append(time.perf_counter() - start)
        e, a = statistics.median(ensemble_t), statistics.median(all_t)
        print(f"\n2. eps={eps}: ensemble {e:.1f} s vs every attack on every sample {a:.1f} s "
              f"-> {a / e:.1f}x faster ({len(X)} images, APGD {args.ensemble_iter} "
              f"iterations, median of {args.repeats})")
        print("   samples attacked: " + ", ".join(f"{k} {v}" for k, v in
                                                 result.n_attacked.items())
              + f"; robust accuracy {100 * result.robust_accuracy:.1f} % (ensemble) vs "
              + ", ".join(f"{r.attacks[0]} {100 * r.robust_accuracy:.1f} %" for r in alone))


if __name__ == "__main__":
    np.random.seed(0)
    main()
