"""FAB-T (targeted FAB, 9 targets, as in AutoAttack standard): skrobust against
torchattacks 3.5.1 and, when importable, AutoAttack's own ``FABAttack_PT``.

All implementations attack the same briefly trained LeNet5, the same test digits and
the same budget with AutoAttack's FAB-T settings (100 iterations, 1 restart, 9
target classes, alpha_max 0.1, eta 1.05, beta 0.9). Without restarts FAB is
deterministic, so every per-image disagreement comes from the algorithm (or float
rounding), not from random starts. An image counts as fooled when the returned
point is misclassified within ``eps`` of the clean one (AutoAttack's rule). A further
skrobust column runs the public :class:`FABTransformer`. ``--vs-apgd`` also counts
the images FAB-T fools that APGD-CE and APGD-T (same number of steps, skrobust's)
both leave standing: what FAB-T adds to AutoAttack's first two attacks.

AutoAttack is not on PyPI; give a checkout with ``--autoattack PATH`` (the folder
holding the ``autoattack`` package; it is only imported, never copied) or install it.

Times are medians of ``--rounds`` interleaved rounds, wall-clock seconds
(``time.perf_counter``) with ``--threads`` torch threads.

Usage::

    SKROBUST_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/fab_parity.py \
        [--n 500] [--n-train 20000] [--epochs 1] [--n-iter 100] [--rounds 3] \
        [--threads 1] [--norms inf 2] [--autoattack PATH] [--no-transformer] \
        [--device cpu] [--vs-apgd] [--no-references] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

from skrobust.attacks import FABTransformer
from skrobust.attacks._functional_apgd import apgd
from skrobust.attacks.functional import fab
from skrobust.datasets import load_mnist
from skrobust.models import LeNet5

BUDGETS = {"inf": 0.1, 2: 1.5}
SETTINGS = dict(alpha_max=0.1, eta=1.05, beta=0.9)


def train_lenet(X, y, epochs, seed, device):
    from skorch import NeuralNetClassifier

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        LeNet5, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        batch_size=64, max_epochs=epochs, train_split=None, device=device,
        iterator_train__shuffle=True, verbose=0)
    return net.fit(X.astype(np.float32), y.astype(np.int64))


def run_skrobust(module, x, y, norm, eps, n_iter):
    return fab(module, x, y, eps=eps, norm=norm, n_iter=n_iter, n_restarts=1,
               n_target_classes=9, clip_min=0.0, clip_max=1.0, **SETTINGS)


def run_torchattacks(module, x, y, norm, eps, n_iter):
    import torchattacks

    image = nn.Sequential(nn.Flatten(), module).eval()
    attack = torchattacks.FAB(image, norm="Linf" if norm == "inf" else "L2", eps=eps,
                              steps=n_iter, n_restarts=1, multi_targeted=True, n_classes=10,
                              **SETTINGS)
    return attack(x.view(-1, 1, 28, 28), y).view(len(x), -1)


def run_autoattack(module, x, y, norm, eps, n_iter):
    from autoattack.fab_pt import FABAttack_PT

    image = nn.Sequential(nn.Flatten(), module).eval()
    # AutoAttack standard's FAB-T: targeted, 1 restart, 9 target classes
    attack = FABAttack_PT(image, norm="Linf" if norm == "inf" else "L2", n_restarts=1,
                          n_iter=n_iter, eps=eps, seed=0, targeted=True, device=x.device,
                          n_target_classes=9, **SETTINGS)
    return attack.perturb(x.view(-1, 1, 28, 28), y).view(len(x), -1)


def run_apgd_pair(module, x, y, norm, eps, n_iter, seed):
    """Images that APGD-CE or APGD-T (9 targets) fools, AutoAttack's first two attacks."""
    fooled = np.zeros(len(x), dtype=bool)
    for kwargs in (dict(loss="ce"), dict(loss="dlr", n_target_classes=9)):
        x_adv = apgd(module, x, y, eps=eps, norm=norm, n_iter=n_iter, clip_min=0.0,
                     clip_max=1.0, generator=torch.Generator(x.device).manual_seed(seed),
                     **kwargs)
        fooled |= fooled_within(module, x, x_adv, y, norm, eps)
    return fooled


def fooled_within(module, x, x_adv, y, norm, eps):
    """AutoAttack's rule: misclassified, and no farther than eps from the clean point."""
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "inf" else delta.norm(dim=1)
    with torch.no_grad():
        wrong = module(x_adv).argmax(1) != y
    return (wrong & (size <= eps * (1 + 1e-6))).cpu().numpy()


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norms", nargs="+", default=["inf", "2"], choices=["inf", "2"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autoattack", default=None,
                        help="folder holding the autoattack package (a checkout)")
    parser.add_argument("--no-transformer", action="store_true",
                        help="skip the FABTransformer column")
    parser.add_argument("--vs-apgd", action="store_true",
                        help="also count the images FAB-T fools that APGD-CE and APGD-T "
                             "(same steps) both leave standing")
    parser.add_argument("--no-references", action="store_true",
                        help="run skrobust only (with --vs-apgd: what FAB-T adds)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.autoattack:
        sys.path.insert(0, args.autoattack)
    runners = {"skrobust": run_skrobust}
    if not args.no_references:
        runners = {"torchattacks": run_torchattacks, **runners}
        try:
            import autoattack.fab_pt  # noqa: F401
            runners["autoattack"] = run_autoattack
        except ImportError:
            print("autoattack not importable: its column is skipped (see --autoattack)")
    X_train, y_train = load_mnist(split="train", download=False, return_X_y=True)
    X_test, y_test = load_mnist(split="test", return_X_y=True)
    net = train_lenet(X_train[:args.n_train], y_train[:args.n_train], args.epochs, args.seed,
                      args.device)
    module = net.module_.eval()
    X, y = X_test[:args.n].astype(np.float32), y_test[:args.n].astype(np.int64)
    x, yt = torch.as_tensor(X, device=args.device), torch.as_tensor(y, device=args.device)
    with torch.no_grad():
        clean = (module(x).argmax(1) == yt).cpu().numpy()
    print(f"LeNet5, {args.epochs} epoch(s) on {args.n_train} digits; {args.n} test digits, "
          f"clean accuracy {100 * clean.mean():.1f} %; FAB-T, {args.n_iter} iterations, "
          f"9 targets; {args.threads} thread(s) on {args.device}")
    names = list(runners)
    header = f"{'norm':<4} {'eps':>4}  " + "  ".join(f"{lib:>12}" for lib in names)
    header += "  " + "  ".join(f"{'dis_' + lib[:2]:>6}" for lib in names if lib != "skrobust")
    header += f"  {'transformer':>11}  " + "  ".join(f"{'t_' + lib[:2]:>6}" for lib in names)
    header += f"  {'sk/ta':>5}" if "torchattacks" in runners else ""
    print(header)
    rows = []
    for norm, eps in BUDGETS.items():
        if str(norm) not in args.norms:
            continue
        times, robust = {lib: [] for lib in runners}, {}
        for _ in range(args.rounds):
            for lib, fn in runners.items():
                _sync(args.device)
                start = time.perf_counter()
                x_adv = fn(module, x, yt, norm, eps, args.n_iter)
                _sync(args.device)
                times[lib].append(time.perf_counter() - start)
                stands = clean & ~fooled_within(module, x, x_adv, yt, norm, eps)
                # no random start: every round must give the same images
                assert robust.setdefault(lib, stands) is stands or np.array_equal(
                    robust[lib], stands), f"{lib} changed between rounds"
        times = {lib: statistics.median(t) for lib, t in times.items()}
        row = dict(attack="FAB-T", norm=str(norm), eps=eps, n=args.n, n_iter=args.n_iter,
                   rounds=args.rounds, threads=args.threads, device=args.device,
                   clean=float(clean.mean()))
        for lib in names:
            row[lib] = float(robust[lib].mean())
            row["seconds_" + lib] = times[lib]
            if lib != "skrobust":
                ours, theirs = robust["skrobust"], robust[lib]
                row["disagreements_" + lib] = int((ours != theirs).sum())
                # images only the reference fools: where ours is weaker
                row["only_" + lib + "_fools"] = int((ours & ~theirs).sum())
        if not args.no_transformer:
            attack = FABTransformer(FrozenEstimator(net), eps=eps, norm=norm,
                                    n_iter=args.n_iter, random_state=args.seed)
            X_adv = attack.fit(X, y).generate(X, y)
            stands = clean & (net.predict(X_adv) == y)
            row["transformer"] = float(stands.mean())
            row["disagreements_transformer"] = int((stands != robust["skrobust"]).sum())
        if args.vs_apgd:
            by_apgd = run_apgd_pair(module, x, yt, norm, eps, args.n_iter, args.seed)
            stands_apgd = clean & ~by_apgd
            row["apgd_ce_t"] = float(stands_apgd.mean())
            row["fab_t_only"] = int((stands_apgd & ~robust["skrobust"]).sum())
            row["apgd_ce_t_then_fab_t"] = float((stands_apgd & robust["skrobust"]).mean())
        line = f"{str(norm):<4} {eps:>4}  " + "  ".join(
            f"{100 * row[lib]:>11.1f}%" for lib in names)
        line += "  " + "  ".join(f"{row['disagreements_' + lib]:>6}" for lib in names
                                 if lib != "skrobust")
        line += f"  {100 * row.get('transformer', float('nan')):>10.1f}%  "
        line += "  ".join(f"{times[lib]:>6.1f}" for lib in names)
        if "torchattacks" in times:
            line += f"  {times['skrobust'] / times['torchattacks']:>5.2f}"
        rows.append(row)
        print(line, flush=True)
        if args.vs_apgd:
            print(f"     APGD-CE + APGD-T leave {100 * row['apgd_ce_t']:.1f} %; FAB-T fools "
                  f"{row['fab_t_only']} of those images ({100 * row['apgd_ce_t_then_fab_t']:.1f}"
                  " % left)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
