"""skrobust on a GPU, side by side with the floor, torchattacks and hand-written loops.

Three sections (issue 16, items 1-3), all on one device, in one run:

1. **Attacks.** FGSM and PGD-40 (Linf, eps 0.3, step 0.01, no random start, true
   labels) on a LeNet5 trained here on MNIST, ``--n`` test images, batch
   ``--batch-size``: the floor (per batch: one host->device copy, k forward+backward
   passes with the input gradient only, one device->host copy; no projection),
   ``FGSMTransformer``/``PGDTransformer`` on float32 and float64 X, and
   ``torchattacks.FGSM``/``PGD`` fed the same numpy batches. Ratios are to the floor
   of the same round, medians over rounds.
2. **Evaluation.** ``evaluate_robustness`` with its default ensemble against
   ``torchattacks.AutoAttack(version="standard")`` on the first ``--n-eval`` test
   images: wall time and robust accuracy.
3. **Training.** One epoch of ``AdversarialTrainer`` (PGD-10 from a random start,
   and FGSM with random start) against a hand-written torch loop doing the same
   work: same batches of ``--train-batch``, crafting in eval mode with input
   gradients only, one SGD step per batch on the adversarial batch.

Jobs are interleaved (the order rotates every round) and repeated ``--repeats``
times after a warm-up; the tables show medians, and everything is saved as JSON
(``--json``). Without CUDA the script says so and exits 0; ``--device cpu`` runs
the same comparison on the CPU (use small sizes).

Usage::

    python benchmarks/gpu.py [--n 10000] [--repeats 3] [--json gpu.json]
    python benchmarks/gpu.py --device cpu --n 512 --n-eval 64 --n-train 2000 --repeats 1

MNIST comes from ``$SKROBUST_DATA`` when it holds the training set, else the
embedded 10k test set is split (8k to train the victim, 2k to attack).
torchattacks is optional (``pip install -e ".[bench]"``); its columns are left out
without it.
"""

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from attacks import load_data  # benchmarks/attacks.py: full MNIST, else the embedded set

EPS, STEP, N_ITER = 0.3, 0.01, 40


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_victim(X, y, device, epochs, seed=0):
    """LeNet5, Adam, batch 128, trained with a plain torch loop on the device."""
    from skrobust.models import LeNet5

    torch.manual_seed(seed)
    module = LeNet5().to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    x_all = torch.as_tensor(X, device=device)
    y_all = torch.as_tensor(y, device=device)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), device=device).split(128):
            optimizer.zero_grad()
            F.cross_entropy(module(x_all[idx]), y_all[idx]).backward()
            optimizer.step()
    return module.eval()


def accuracy(module, X, y, device):
    with torch.no_grad():
        pred = torch.cat([module(torch.as_tensor(X[i:i + 1024], dtype=torch.float32,
                                                 device=device)).argmax(1).cpu()
                          for i in range(0, len(X), 1024)])
    return float((pred.numpy() == y).mean())


def interleave(jobs, repeats, device):
    """Run every job once as warm-up, then ``repeats`` rotated rounds; wall times."""
    names = list(jobs)
    results = {name: jobs[name]() for name in names}
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            results[name] = jobs[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times, results


# --- 1. attacks ---------------------------------------------------------------------

def attack_jobs(module, X, y, device, batch):
    from skrobust.attacks import FGSMTransformer, PGDTransformer

    def per_batch(attack_batch, keep=True):
        """A job: per batch, one copy in, ``attack_batch(x, t)``, one copy out."""
        def run():
            out = np.empty_like(X)
            for i in range(0, len(X), batch):
                x = torch.as_tensor(X[i:i + batch], device=device)
                t = torch.as_tensor(y[i:i + batch], device=device)
                out[i:i + batch] = attack_batch(x, t).detach().cpu().numpy()
            return out if keep else None
        return run

    def passes(k):
        """k forward+backward passes, input gradient only, no step: the floor."""
        def attack_batch(x, t):
            for _ in range(k):
                x = x.detach().requires_grad_(True)
                torch.autograd.grad(F.cross_entropy(module(x), t, reduction="sum"), x)
            return x
        return attack_batch

    def floor(k):
        return per_batch(passes(k), keep=False)

    def skrobust(attack, data):
        def run():
            return attack.fit(data, y).generate(data, y)
        return run

    X64 = X.astype(np.float64)
    fgsm = dict(eps=EPS, batch_size=batch, device=device)
    pgd = dict(eps=EPS, step_size=STEP, n_iter=N_ITER, batch_size=batch, device=device)
    jobs = {
        "FGSM": {"floor (1 fwd+bwd)": floor(1),
                 "skrobust float32 X": skrobust(FGSMTransformer(module, **fgsm), X),
                 "skrobust float64 X": skrobust(FGSMTransformer(module, **fgsm), X64)},
        f"PGD-{N_ITER}": {f"floor ({N_ITER} fwd+bwd)": floor(N_ITER),
                          "skrobust float32 X": skrobust(PGDTransformer(module, **pgd), X),
                          "skrobust float64 X": skrobust(PGDTransformer(module, **pgd), X64)},
    }
    try:
        import torchattacks
    except ImportError:
        return jobs

    def external(attack):
        return per_batch(attack)

    jobs["FGSM"]["torchattacks"] = external(torchattacks.FGSM(module, eps=EPS))
    jobs[f"PGD-{N_ITER}"]["torchattacks"] = external(torchattacks.PGD(
        module, eps=EPS, alpha=STEP, steps=N_ITER, random_start=False))
    return jobs


def run_attacks(module, X, y, device, args):
    table = []
    for attack, jobs in attack_jobs(module, X, y, device, args.batch_size).items():
        times, results = interleave(jobs, args.repeats, device)
        floor_name = next(iter(jobs))
        for name in jobs:
            X_adv = results[name]
            row = {"attack": attack, "implementation": name,
                   "seconds": statistics.median(times[name]),
                   "x_floor": statistics.median(a / b for a, b in zip(times[name],
                                                                      times[floor_name]))}
            if X_adv is not None:
                row["adv_accuracy"] = accuracy(module, X_adv, y, device)
                row["max_linf"] = float(np.abs(X_adv - X).max())
            table.append(row)
    return table


# --- 2. evaluation ------------------------------------------------------------------

def run_evaluation(module, X, y, device, args):
    from skrobust.evaluation import evaluate_robustness

    jobs = {"skrobust evaluate_robustness": lambda: evaluate_robustness(
        module, X, y, eps=EPS, random_state=0).robust_accuracy}
    try:
        import torchattacks
    except ImportError:
        pass
    else:
        image_model = torch.nn.Sequential(torch.nn.Flatten(), module).eval()
        auto = torchattacks.AutoAttack(image_model, norm="Linf", eps=EPS,
                                       version="standard", n_classes=10, seed=0)

        def autoattack():
            x = torch.as_tensor(X.reshape(-1, 1, 28, 28), device=device)
            t = torch.as_tensor(y, device=device)
            x_adv = auto(x, t).detach().reshape(len(X), -1).cpu().numpy()
            return accuracy(module, x_adv, y, device)
        jobs["torchattacks AutoAttack standard"] = autoattack
    names = list(jobs)
    times = {name: [] for name in names}
    robust = {}
    for r in range(args.eval_repeats):  # no warm-up: each run is long
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            robust[name] = float(jobs[name]())
            sync(device)
            times[name].append(time.perf_counter() - t0)
    base = names[-1]
    return [{"implementation": name, "seconds": statistics.median(times[name]),
             "x_autoattack": statistics.median(a / b for a, b in zip(times[name],
                                                                     times[base])),
             "robust_accuracy": robust[name]} for name in names]


# --- 3. training --------------------------------------------------------------------

def hand_loop(X, y, device, batch, n_iter, eps, step, seed):
    """One epoch of adversarial training written out in torch (the reference)."""
    from skrobust.models import LeNet5

    def run():
        torch.manual_seed(seed)
        module = LeNet5().to(device)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
        generator = torch.Generator(device).manual_seed(seed)
        x_all = torch.as_tensor(X, device=device)
        y_all = torch.as_tensor(y, device=device)
        order = torch.randperm(len(X), device=device)
        for idx in order.split(batch):
            x, t = x_all[idx], y_all[idx]
            module.eval()
            u = torch.rand(x.shape, generator=generator, device=device)
            x_adv = (x + (2 * u - 1) * eps).clamp(0, 1)
            for _ in range(n_iter):
                x_adv.requires_grad_(True)
                loss = F.cross_entropy(module(x_adv), t, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = torch.minimum(torch.maximum(x_adv.detach() + step * grad.sign(),
                                                    x - eps), x + eps).clamp(0, 1)
            module.train()
            optimizer.zero_grad()
            F.cross_entropy(module(x_adv), t).backward()
            optimizer.step()
        return module
    return run


def trainer_epoch(X, y, device, batch, n_iter, eps, step, seed):
    from skorch import NeuralNetClassifier

    from skrobust.attacks import PGDTransformer
    from skrobust.defenses import AdversarialTrainer
    from skrobust.models import LeNet5

    def run():
        net = NeuralNetClassifier(LeNet5, criterion=torch.nn.CrossEntropyLoss,
                                  optimizer=torch.optim.SGD, lr=0.01, batch_size=batch,
                                  max_epochs=1, train_split=None,
                                  iterator_train__shuffle=True, verbose=0)
        attack = PGDTransformer(eps=eps, step_size=step, n_iter=n_iter, random_start=True)
        return AdversarialTrainer(net, attack=attack, device=str(device),
                                  random_state=seed).fit(X, y)
    return run


def run_training(X, y, device, args):
    table = []
    setups = {"PGD-10 (random start)": (10, 0.01),
              "FGSM (random start)": (1, 1.25 * EPS)}
    for label, (n_iter, step) in setups.items():
        jobs = {"hand-written loop": hand_loop(X, y, device, args.train_batch, n_iter, EPS,
                                               step, 0),
                "AdversarialTrainer": trainer_epoch(X, y, device, args.train_batch, n_iter,
                                                    EPS, step, 0)}
        times, _ = interleave(jobs, args.repeats, device)
        base = times["hand-written loop"]
        for name in jobs:
            table.append({"training": label, "implementation": name,
                          "epoch_seconds": statistics.median(times[name]),
                          "x_hand_loop": statistics.median(a / b for a, b in
                                                           zip(times[name], base))})
    return table


def print_table(title, rows, columns):
    print(f"\n{title}")
    widths = [max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def fmt(value):
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=10000, help="images attacked (10000)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--victim-epochs", type=int, default=2)
    parser.add_argument("--n-eval", type=int, default=2000,
                        help="images of the evaluation section (2000; 0 skips it)")
    parser.add_argument("--eval-repeats", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=None,
                        help="training images of the training section (all; 0 skips it)")
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--json", default=None, help="write the tables to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: CUDA is not available on this machine; nothing was "
              "measured. Run it where a GPU is, or pass --device cpu for a dry run.")
        return 0
    torch.set_num_threads(args.threads)
    X_train, y_train, X, y, source = load_data(args.n, seed=0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    module = train_victim(X_train, y_train, device, args.victim_epochs)
    info = {"device": f"{device} ({name})", "torch": torch.__version__,
            "python": sys.version.split()[0], "data": source, "n_attacked": len(X),
            "batch_size": args.batch_size, "repeats": args.repeats,
            "clean_accuracy": accuracy(module, X, y, device)}
    print(json.dumps(info))
    report = {"info": info}
    report["attacks"] = run_attacks(module, X, y, device, args)
    print_table(f"1. attacks, {len(X)} images, batch {args.batch_size}, medians of "
                f"{args.repeats} rounds", report["attacks"],
                ["attack", "implementation", "seconds", "x_floor", "adv_accuracy",
                 "max_linf"])
    if args.n_eval:
        n = min(args.n_eval, len(X))
        report["evaluation"] = run_evaluation(module, X[:n], y[:n], device, args)
        print_table(f"2. evaluation, {n} images, eps {EPS}", report["evaluation"],
                    ["implementation", "seconds", "x_autoattack", "robust_accuracy"])
    if args.n_train != 0:
        X_fit, y_fit = X_train[:args.n_train], y_train[:args.n_train]
        report["training"] = run_training(X_fit, y_fit, device, args)
        print_table(f"3. one epoch of adversarial training, {len(X_fit)} images, batch "
                    f"{args.train_batch}", report["training"],
                    ["training", "implementation", "epoch_seconds", "x_hand_loop"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
