"""APGD-CE and APGD-T (targeted DLR, 9 targets): skrobust against torchattacks 3.5.1.

Both implementations attack the same briefly trained LeNet5, the same test digits
and the same budget with 100 steps. torchattacks draws its random start from the
global torch RNG seeded with ``seed``; skrobust's :func:`apgd` is given a
``torch.Generator`` with the same seed, so both start from the same points and any
per-image difference comes from the algorithm (checkpoints, step-size halving,
momentum, projection). A second skrobust column runs the public
:class:`APGDTransformer` (its own seed: independent random starts).

Times are CPU seconds (``time.process_time``), medians of ``--rounds`` interleaved
rounds. ``--baseline FILE`` also times another version of
``skrobust/attacks/_functional_apgd.py`` in the same rounds (before/after figures),
e.g. ``git show HEAD~1:skrobust/attacks/_functional_apgd.py > /tmp/old.py``.

Usage::

    SKROBUST_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/apgd_parity.py \
        [--n 500] [--n-train 20000] [--epochs 1] [--rounds 3] [--baseline FILE] \
        [--no-transformer] [--json out.json]
"""

import argparse
import importlib.util
import json
import statistics
import time
from functools import partial

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import APGDTransformer
from skrobust.attacks._functional_apgd import apgd
from skrobust.datasets import load_mnist
from skrobust.models import LeNet5

BUDGETS = {"inf": 0.1, 2: 1.5}


def train_lenet(X, y, epochs, seed):
    from skorch import NeuralNetClassifier

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        LeNet5, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        batch_size=64, max_epochs=epochs, train_split=None,
        iterator_train__shuffle=True, verbose=0)
    return net.fit(X.astype(np.float32), y.astype(np.int64))


def run_torchattacks(module, x, y, norm, eps, name, n_iter, seed):
    import torchattacks

    image = nn.Sequential(nn.Flatten(), module).eval()
    ta_norm = "Linf" if norm == "inf" else "L2"
    if name == "APGD-CE":
        attack = torchattacks.APGD(image, norm=ta_norm, eps=eps, steps=n_iter, n_restarts=1,
                                   seed=seed, loss="ce")
    else:
        attack = torchattacks.APGDT(image, norm=ta_norm, eps=eps, steps=n_iter, n_restarts=1,
                                    seed=seed, n_classes=10)
    return attack(x.view(-1, 1, 28, 28), y).view(len(x), -1)


def load_baseline(path):
    """Another version of ``_functional_apgd.py``, imported inside ``skrobust.attacks``."""
    spec = importlib.util.spec_from_file_location("skrobust.attacks._apgd_baseline", path)
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    return baseline.apgd


def run_skrobust(module, x, y, norm, eps, name, n_iter, seed, apgd=apgd):
    kwargs = dict(eps=eps, norm=2 if norm == 2 else "inf", n_iter=n_iter, clip_min=0.0,
                  clip_max=1.0, generator=torch.Generator().manual_seed(seed))
    if name == "APGD-CE":
        return apgd(module, x, y, loss="ce", **kwargs)
    return apgd(module, x, y, loss="dlr", n_target_classes=9, **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norms", nargs="+", default=["inf", "2"], choices=["inf", "2"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None,
                        help="another _functional_apgd.py to time in the same rounds")
    parser.add_argument("--no-transformer", action="store_true",
                        help="skip the APGDTransformer column")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    X_train, y_train = load_mnist(split="train", download=False, return_X_y=True)
    X_test, y_test = load_mnist(split="test", return_X_y=True)
    net = train_lenet(X_train[:args.n_train], y_train[:args.n_train], args.epochs, args.seed)
    module = net.module_.eval()
    X, y = X_test[:args.n].astype(np.float32), y_test[:args.n].astype(np.int64)
    x, yt = torch.as_tensor(X), torch.as_tensor(y)
    with torch.no_grad():
        clean = module(x).argmax(1) == yt
    print(f"LeNet5, {args.epochs} epoch(s) on {args.n_train} digits; {args.n} test digits, "
          f"clean accuracy {100 * clean.float().mean():.1f} %; {args.n_iter} steps")
    runners = {"torchattacks": run_torchattacks, "skrobust": run_skrobust}
    if args.baseline:
        runners["baseline"] = partial(run_skrobust, apgd=load_baseline(args.baseline))
    print(f"{'attack':<8} {'norm':<4} {'eps':>4}  {'torchattacks':>12}  {'skrobust':>8}  "
          f"{'disagree':>8}  {'transformer':>11}  {'t_ta':>6}  {'t_sk':>6}  {'sk/ta':>5}"
          + (f"  {'t_base':>6}  {'sk/base':>7}  {'dis_base':>8}" if args.baseline else ""))
    rows = []
    for norm, eps in BUDGETS.items():
        if str(norm) not in args.norms:
            continue
        for name in ("APGD-CE", "APGD-T"):
            times, robust = {lib: [] for lib in runners}, {}
            for _ in range(args.rounds):
                for lib, fn in runners.items():
                    start = time.process_time()
                    x_adv = fn(module, x, yt, norm, eps, name, args.n_iter, args.seed)
                    times[lib].append(time.process_time() - start)
                    with torch.no_grad():
                        fooled = (module(x_adv).argmax(1) == yt).numpy() & clean.numpy()
                    # every round starts from the same seed: the points must not change
                    assert robust.setdefault(lib, fooled) is fooled or np.array_equal(
                        robust[lib], fooled), f"{lib} changed between rounds"
            times = {lib: statistics.median(t) for lib, t in times.items()}
            if not args.no_transformer:
                attack = APGDTransformer(
                    FrozenEstimator(net), eps=eps, norm=norm, n_iter=args.n_iter,
                    loss="ce" if name == "APGD-CE" else "dlr",
                    n_target_classes=None if name == "APGD-CE" else 9, random_state=args.seed)
                X_adv = attack.fit(X, y).generate(X, y)
                robust["transformer"] = (net.predict(X_adv) == y) & clean.numpy()
            disagree = int((robust["torchattacks"] != robust["skrobust"]).sum())
            row = dict(attack=name, norm=str(norm), eps=eps, n=args.n, rounds=args.rounds,
                       torchattacks=float(robust["torchattacks"].mean()),
                       skrobust=float(robust["skrobust"].mean()),
                       disagreements=disagree,
                       seconds_torchattacks=times["torchattacks"],
                       seconds_skrobust=times["skrobust"])
            if "transformer" in robust:
                row["transformer"] = float(robust["transformer"].mean())
                row["disagreements_transformer"] = int(
                    (robust["torchattacks"] != robust["transformer"]).sum())
            line = (f"{name:<8} {str(norm):<4} {eps:>4}  {100 * row['torchattacks']:>11.1f}%  "
                    f"{100 * row['skrobust']:>7.1f}%  {disagree:>8}  "
                    f"{100 * row.get('transformer', float('nan')):>10.1f}%  "
                    f"{times['torchattacks']:>6.1f}  {times['skrobust']:>6.1f}  "
                    f"{times['skrobust'] / times['torchattacks']:>5.2f}")
            if args.baseline:
                row["seconds_baseline"] = times["baseline"]
                row["disagreements_baseline"] = int(
                    (robust["torchattacks"] != robust["baseline"]).sum())
                line += (f"  {times['baseline']:>6.1f}  "
                         f"{times['skrobust'] / times['baseline']:>7.2f}  "
                         f"{row['disagreements_baseline']:>8}")
            rows.append(row)
            print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
