"""APGD-T and FAB-T with their target runs side by side against one at a time.

APGD-T and FAB-T attack each sample with one run per target class (9), each on
the samples no earlier run fooled. When few samples are left, skrobust puts the
next runs of each sample in one batch (at most ``batch_size`` rows, 32 on a CPU),
with the result of running them in turn. This script times both on the same
images of a LeNet5 trained on MNIST (``batch_size=len(X)`` gives one run at a
time), interleaved rounds, medians, and checks that both fool the same images::

    SKROBUST_DATA=../shared/data python benchmarks/target_runs.py --sizes 4 16 64

It prints a table and writes it as JSON (``--output``).
"""

import argparse
import json
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from skrobust._demo import load_demo_data
from skrobust.attacks import APGDTransformer, FABTransformer
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net
from skrobust.utils._torch import eval_mode

EPS = 0.1  # a plain LeNet5 keeps part of its images at this budget: the long case


def attacks(batch_size, n_iter, seed):
    common = dict(eps=EPS, n_iter=n_iter, n_target_classes=9, batch_size=batch_size,
                  random_state=seed)
    return {"APGD-T": APGDTransformer(loss="dlr", **common),
            "FAB-T": FABTransformer(**common)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64],
                   help="images attacked (4 16 64)")
    p.add_argument("--n-iter", type=int, default=100, help="steps per run (100)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="target_runs.json")
    args = p.parse_args(argv)
    if args.repeats < 1 or min(args.sizes) < 1:
        p.error("--repeats and --sizes take numbers >= 1")
    torch.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test, source = load_demo_data(None, args.n_train, None,
                                                              args.seed)
    from skorch import NeuralNetClassifier

    net = fit_net(NeuralNetClassifier(LeNet5, lr=0.01, optimizer=torch.optim.SGD,
                                      optimizer__momentum=0.9, batch_size=32,
                                      max_epochs=1, train_split=None, verbose=0,
                                      criterion=torch.nn.CrossEntropyLoss),
                  X_train, y_train, args.seed)
    victim = FrozenEstimator(net)
    with eval_mode(net.module_), torch.no_grad():
        correct = net.module_(torch.as_tensor(X_test)).argmax(1).numpy() == y_test
    X_all = np.ascontiguousarray(X_test[correct], dtype=np.float32)
    y_all = y_test[correct]
    print(f"data: {source}; LeNet5, 1 epoch on {len(X_train)} images; Linf eps={EPS}; "
          f"{args.n_iter} steps, 9 targets; {args.threads} thread(s); medians of "
          f"{args.repeats} interleaved rounds")
    print(f"{'attack':<8} {'images':>6} {'one at a time':>14} {'side by side':>13} "
          f"{'ratio':>6} {'fooled':>7} {'same':>5}")
    rows = []
    for size in args.sizes:
        X, y = X_all[:size], y_all[:size]
        for name in ("APGD-T", "FAB-T"):
            jobs = {"in turn": attacks(size, args.n_iter, args.seed)[name],
                    "side by side": attacks(256, args.n_iter, args.seed)[name]}
            seconds = {k: [] for k in jobs}
            fooled = {}
            for r in range(args.repeats):
                for k in (list(jobs) if r % 2 == 0 else list(jobs)[::-1]):
                    attack = jobs[k].set_params(estimator=victim).fit(X, y)
                    start = time.perf_counter()
                    X_adv = attack.transform(X)
                    seconds[k].append(time.perf_counter() - start)
                    fooled[k] = net.predict(X_adv) != y
            t = {k: float(np.median(v)) for k, v in seconds.items()}
            same = bool(np.array_equal(fooled["in turn"], fooled["side by side"]))
            row = dict(attack=name, images=size, seconds_in_turn=t["in turn"],
                       seconds_side_by_side=t["side by side"],
                       ratio=t["side by side"] / t["in turn"],
                       fooled=int(fooled["side by side"].sum()), same_fooled=same)
            rows.append(row)
            print(f"{name:<8} {size:6d} {t['in turn']:13.2f}s {t['side by side']:12.2f}s "
                  f"{row['ratio']:6.2f} {row['fooled']:7d} {str(same):>5}", flush=True)
    with open(args.output, "w") as f:
        json.dump({"config": vars(args), "data": source, "eps": EPS, "rows": rows}, f,
                  indent=2)
    print(f"JSON: {args.output}")


if __name__ == "__main__":
    main()
