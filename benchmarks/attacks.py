"""FGSM and PGD-40 on LeNet5/MNIST: skrobust against the forward+backward floor,
torchattacks and ART, measured side by side in one run.

The floor of an attack with k gradient steps is a plain loop of k forward+backward
passes (input gradient only, :func:`torch.autograd.grad`) over the same batches of
256. Every job attacks the same model and the same examples with the same budget
(Linf, eps=0.3; PGD: step 0.01, 40 iterations, no random start, true labels). The
jobs are interleaved (the order rotates every round) and repeated; the table shows
medians. Adversarial accuracies should agree within 0.5 points. skrobust runs
twice: on float32 X and on float64 X (attacked in float32, projected exactly in
float64 on the batch before the copy back).

``--profile`` also counts, per batch of one skrobust PGD call, the tensor copies
(``aten::copy_``) and the host synchronisations (``aten::_local_scalar_dense``:
``.item()``, ``bool(tensor)``; ``aten::nonzero``: boolean indexing), with
:mod:`torch.profiler`; on a GPU every synchronisation stalls the queue.

Usage::

    SKROBUST_DATA=../shared/data python benchmarks/attacks.py [--n 1000] [--repeats 5] \
        [--threads 1] [--timer cpu] [--fgsm-calls 1] [--profile]

The victim is trained once per run (LeNet5, 1 epoch on the full training set when
a data root holds it, else on 8,000 images of the embedded test set); nothing is
cached. torchattacks and ART are optional (``pip install -e ".[bench]"``).
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import FGSMTransformer, PGDTransformer
from skrobust.datasets import load_mnist
from skrobust.models import LeNet5

EPS, STEP, N_ITER, BATCH = 0.3, 0.01, 40, 256


def load_data(n_test, seed, n_train=None):
    """Training and test data: full MNIST if a data root has it, else the embedded set."""
    try:
        X_train, y_train = load_mnist(split="train", download=False, return_X_y=True)
        X_test, y_test = load_mnist(split="test", return_X_y=True)
        source = "full MNIST (60k train)"
    except FileNotFoundError:
        X, y = load_mnist(split="test", return_X_y=True)
        order = np.random.RandomState(seed).permutation(len(X))
        X_train, y_train = X[order[:8000]], y[order[:8000]]
        X_test, y_test = X[order[8000:]], y[order[8000:]]
        source = "embedded MNIST test set (8k train / 2k test)"
    return (X_train[:n_train], y_train[:n_train], X_test[:n_test], y_test[:n_test],
            source)


def train_lenet(X, y, epochs, seed):
    from skorch import NeuralNetClassifier

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        LeNet5, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        batch_size=64, max_epochs=epochs, train_split=None,
        iterator_train__shuffle=True, verbose=0,
    )
    return net.fit(X, y)


# --- the jobs: each returns X_adv (numpy) for (X, y) -----------------------------

def floor(module, X, y, n_passes):
    """k forward+backward passes per batch, input gradient only: the cost floor."""
    batches = [(torch.from_numpy(X[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH]))
               for i in range(0, len(X), BATCH)]

    def run():
        for x, t in batches:
            for _ in range(n_passes):
                x = x.detach().requires_grad_(True)
                loss = F.cross_entropy(module(x), t, reduction="sum")
                torch.autograd.grad(loss, x)
        return None
    return run


def skrobust_job(net, X, y, attack):
    def run():
        attack.set_params(estimator=FrozenEstimator(net))
        return attack.fit(X, y).generate(X, y)
    return run


def torchattacks_job(module, X, y, attack):
    def run():
        out = np.empty_like(X)
        for i in range(0, len(X), BATCH):
            x, t = torch.from_numpy(X[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH])
            out[i:i + BATCH] = attack(x, t).numpy()
        return out
    return run


def art_job(attack, X, y):
    def run():
        return attack.generate(x=X, y=y)
    return run


def pgd40():
    return PGDTransformer(eps=EPS, step_size=STEP, n_iter=N_ITER, random_start=False,
                          batch_size=BATCH)


def build_jobs(net, X, y):
    module = net.module_.eval()
    X64 = X.astype(np.float64)
    jobs = {
        "FGSM": {
            "floor (1 fwd+bwd)": floor(module, X, y, 1),
            "skrobust": skrobust_job(net, X, y, FGSMTransformer(eps=EPS, batch_size=BATCH)),
            "skrobust float64 X": skrobust_job(net, X64, y, FGSMTransformer(
                eps=EPS, batch_size=BATCH)),
        },
        "PGD-40": {
            f"floor ({N_ITER} fwd+bwd)": floor(module, X, y, N_ITER),
            "skrobust": skrobust_job(net, X, y, pgd40()),
            "skrobust float64 X": skrobust_job(net, X64, y, pgd40()),
        },
    }
    missing = []
    try:
        import torchattacks
    except ImportError:
        missing.append("torchattacks")
    else:
        jobs["FGSM"]["torchattacks"] = torchattacks_job(
            module, X, y, torchattacks.FGSM(module, eps=EPS))
        jobs["PGD-40"]["torchattacks"] = torchattacks_job(
            module, X, y, torchattacks.PGD(module, eps=EPS, alpha=STEP, steps=N_ITER,
                                           random_start=False))
    try:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        missing.append("adversarial-robustness-toolbox")
    else:
        classifier = PyTorchClassifier(
            module, loss=nn.CrossEntropyLoss(), input_shape=(X.shape[1],), nb_classes=10,
            clip_values=(0.0, 1.0), device_type="cpu")
        jobs["FGSM"]["ART"] = art_job(FastGradientMethod(
            classifier, norm=np.inf, eps=EPS, batch_size=BATCH), X, y)
        jobs["PGD-40"]["ART"] = art_job(ProjectedGradientDescent(
            classifier, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=N_ITER,
            num_random_init=0, batch_size=BATCH, verbose=False), X, y)
    return jobs, missing


def profile_counts(net, X, y):
    """Copies and host synchronisations per batch of one skrobust PGD-40 call."""
    from torch.profiler import ProfilerActivity, profile

    attack = pgd40().set_params(estimator=FrozenEstimator(net)).fit(X, y)
    names = ("aten::copy_", "aten::_local_scalar_dense", "aten::nonzero")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        attack.generate(X, y)
    counts = {e.key: e.count for e in prof.key_averages() if e.key in names}
    n_batches = -(-len(X) // BATCH)
    return {name: counts.get(name, 0) / n_batches for name in names}


def accuracy(module, X, y):
    with torch.no_grad():
        pred = torch.cat([module(torch.from_numpy(X[i:i + 1000])).argmax(1)
                          for i in range(0, len(X), 1000)])
    return float((pred.numpy() == y).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="test examples attacked (1000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of all jobs (5)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (1)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="train the victim on the first N images (all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="wall-clock time, or the process's CPU time, which is less "
                             "sensitive to other jobs on a shared machine (wall)")
    parser.add_argument("--fgsm-calls", type=int, default=1,
                        help="calls of each FGSM job per round, timed together: one "
                             "FGSM call is short next to the clock's noise (1)")
    parser.add_argument("--profile", action="store_true",
                        help="also count copies and synchronisations per batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X_train, y_train, X, y, source = load_data(args.n, args.seed, args.n_train)
    start = time.perf_counter()
    net = train_lenet(X_train, y_train, args.epochs, args.seed)
    module = net.module_.eval()
    print(f"victim: LeNet5, {args.epochs} epoch(s) on {len(X_train)} images of {source} in "
          f"{time.perf_counter() - start:.0f} s; clean accuracy on {len(X)} test images "
          f"{100 * accuracy(module, X, y):.2f} %")
    print(f"budget: Linf eps={EPS}; PGD step {STEP}, {N_ITER} iterations, no random "
          f"start; batch {BATCH}; {args.threads} threads; {args.repeats} rounds, medians "
          f"of {args.timer} time; x floor = median over rounds of time / floor time",
          flush=True)

    jobs, missing = build_jobs(net, X, y)
    flat = [(attack, name, job) for attack, group in jobs.items() for name, job in group.items()]
    times = {(attack, name): [] for attack, name, _ in flat}
    adv_acc = {}
    for _, _, job in flat[:2]:  # warm-up
        job()
    clock = time.process_time if args.timer == "cpu" else time.perf_counter
    for r in range(args.repeats):
        shift = r % len(flat)
        for attack, name, job in flat[shift:] + flat[:shift]:
            calls = args.fgsm_calls if attack == "FGSM" else 1
            t0 = clock()
            for _ in range(calls):
                X_adv = job()
            times[attack, name].append((clock() - t0) / calls)
            if X_adv is not None and (attack, name) not in adv_acc:
                adv_acc[attack, name] = accuracy(module, X_adv.astype(np.float32), y)
                assert np.abs(X_adv - X).max() <= EPS + 1e-5, (attack, name)

    header = f"{'attack':<8} {'implementation':<20} {'s / 1000 ex':>12} {'x floor':>8} {'adv acc':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for attack, group in jobs.items():
        floor_times = times[attack, next(iter(group))]
        for name in group:
            t = statistics.median(times[attack, name])
            # ratio to the floor of the same round, then the median over rounds:
            # robust to a machine whose load drifts between rounds
            ratio = statistics.median(a / b for a, b in zip(times[attack, name], floor_times))
            acc = adv_acc.get((attack, name))
            acc_text = "" if acc is None else f"{100 * acc:.2f} %"
            print(f"{attack:<8} {name:<20} {1000 * t / len(X):>12.3f} "
                  f"{ratio:>7.3f}x {acc_text:>9}")
    if args.profile:
        for label, data in (("float32 X", X), ("float64 X", X.astype(np.float64))):
            counts = profile_counts(net, data, y)
            print(f"\nper batch of skrobust PGD-{N_ITER} on {label} (batch {BATCH}): "
                  + ", ".join(f"{name} {count:.1f}" for name, count in counts.items()))
    if missing:
        print(f"\nnot installed (pip install -e '.[bench]'): {', '.join(missing)}")


if __name__ == "__main__":
    main()
