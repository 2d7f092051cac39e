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
   gradients only, one SGD step per batch on the adversarial batch; the trainer also
   with ``mixed_precision=True`` (bfloat16 autocast). And one epoch
   of ``SuppressPrivacyClassifier`` (LeNet5, SGD lr 0.05, the tutorial's mask
   layers and rate of suppress operations, as ``benchmarks/privacy.py``; the epoch
   is the whole suppress window) against a hand-written torch loop doing the same
   work: the same masking of gradients and weights around every step and the same
   suppress operations (magnitude masks, clipping, noise) after the same batches.
   Both start from the same seed, so they should train the same model: the
   ``sparsity``, ``masks_differ`` (mask entries that differ) and
   ``max_weight_diff`` columns check it.

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
from sklearn.utils import check_random_state

EPS, STEP, N_ITER = 0.3, 0.01, 40
SPARSE_START, SPARSE_END = 0.0, 0.95  # SuppressPrivacyClassifier's defaults


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


def trainer_epoch(X, y, device, batch, n_iter, eps, step, seed, mixed_precision=False):
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
                                  mixed_precision=mixed_precision,
                                  random_state=seed).fit(X, y)
    return run


def suppress_hand_loop(X, y, device, batch, mask_times, seed):
    """One epoch of suppress-privacy training written out in torch (the reference).

    The same work as one epoch of ``SuppressPrivacyClassifier`` with the tutorial's
    ``LAYERS`` and the epoch as its whole window: LeNet5 and SGD as
    ``privacy.lenet``, one step per batch of ``batch`` on the mean cross-entropy.
    ``min(mask_times, n_batches)`` suppress operations run after the optimiser step
    of evenly spaced batches (the first and the last batch included), the k-th
    of n targeting the sparsity ``SPARSE_END + (SPARSE_START - SPARSE_END) *
    (1 - k / (n - 1))**3``. Each one, layer by layer: suppresses the
    smallest-magnitude weights up to the target (sparing ``min_kept``; suppressed
    weights stay suppressed), pushes kept weights below ``lower_clip`` to
    ``+-lower_clip``, clips to ``+-upper_bound``, adds uniform noise to the kept
    weights above ``0.75 * max|w|`` (clipped to [0.1, 0.5]) and zeroes the
    suppressed ones. From the first operation on, the gradients of suppressed
    weights are zeroed before every step and the masks re-applied after it.
    Plain SGD keeps no optimiser state, so there is none to clear.

    Module initialisation, batch order and noise draw from ``seed`` as the
    classifier's ``seed_`` does, so both train the same weights.

    Returns
    -------
    run : callable
        Runs the epoch; returns the module and the masks (True = kept) by
        parameter name.
    """
    from privacy import LAYERS, lenet

    from skrobust.models import LeNet5

    lr = lenet().lr

    n_batches = -(-len(X) // batch)
    n_ops = min(mask_times, n_batches)
    progress = np.arange(n_ops) / (n_ops - 1) if n_ops > 1 else np.ones(1)
    targets = SPARSE_END + (SPARSE_START - SPARSE_END) * (1 - progress) ** 3
    steps = np.round(np.linspace(0, n_batches - 1, n_ops)) if n_ops > 1 else [n_batches - 1]
    operations = dict(zip(np.asarray(steps, dtype=int).tolist(), targets.tolist()))

    def suppress(weight, keep, n_suppressed, layer, generator):
        score = weight.abs().flatten()
        if keep is not None:
            score = score.masked_fill(~keep.flatten(), -1.0)  # suppressed: first in line
        keep = torch.ones_like(score, dtype=torch.bool)
        keep[score.topk(n_suppressed, largest=False, sorted=False).indices] = False
        keep = keep.view_as(weight)
        if layer.lower_clip is not None:
            floor = torch.where(weight >= 0, layer.lower_clip, -layer.lower_clip)
            small = keep & (weight.abs() < layer.lower_clip)
            weight.copy_(torch.where(small, floor, weight))
        if layer.upper_bound is not None:
            weight.clamp_(-layer.upper_bound, layer.upper_bound)
        if layer.noise is not None:
            bound = (0.75 * weight.abs().max()).clamp(0.1, 0.5)
            noise = torch.rand(weight.shape, generator=generator, device=weight.device)
            weight.add_((noise * (2 * layer.noise) - layer.noise)
                        * (keep & (weight.abs() > bound)))
        weight.mul_(keep)
        return keep

    def run():
        torch.manual_seed(seed)
        module = LeNet5().to(device)
        optimizer = torch.optim.SGD(module.parameters(), lr=lr)
        # a shuffled DataLoader draws its base seed, then its sampler's seed, from
        # torch's global generator: drawn alike, the batches are the skorch net's
        torch.empty((), dtype=torch.int64).random_()
        sampler_seed = int(torch.empty((), dtype=torch.int64).random_())
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(sampler_seed))
        order = order.to(device)
        generator = torch.Generator(device).manual_seed(seed)
        x_all = torch.as_tensor(X, device=device)
        y_all = torch.as_tensor(y, dtype=torch.int64, device=device)
        params = dict(module.named_parameters())
        weights = [params[layer.name] for layer in LAYERS]
        masks, factors = [None] * len(LAYERS), []
        n_suppressed = [0] * len(LAYERS)
        module.train()
        for i, idx in enumerate(order.split(batch)):
            optimizer.zero_grad()
            F.cross_entropy(module(x_all[idx]), y_all[idx]).backward()
            if factors:
                torch._foreach_mul_([w.grad for w in weights], factors)
            optimizer.step()
            with torch.no_grad():
                if factors:
                    torch._foreach_mul_(weights, factors)
                if i in operations:
                    for j, (w, layer) in enumerate(zip(weights, LAYERS)):
                        n = w.numel()
                        n_suppressed[j] = max(n_suppressed[j], min(
                            int(np.floor(operations[i] * n + 1e-9)), n - layer.min_kept))
                        masks[j] = suppress(w, masks[j], n_suppressed[j], layer, generator)
                    factors = [keep.to(w.dtype) for keep, w in zip(masks, weights)]
        return module, {layer.name: keep for layer, keep in zip(LAYERS, masks)}
    return run


def suppress_epoch(X, y, device, batch, mask_times, seed):
    """One epoch of ``SuppressPrivacyClassifier``, the epoch as its whole window."""
    from privacy import LAYERS, lenet

    from skrobust.privacy import SuppressPrivacyClassifier

    def run():
        return SuppressPrivacyClassifier(
            lenet().set_params(batch_size=batch), start_epoch=1, end_epoch=1,
            mask_times=mask_times, sparse_start=SPARSE_START, sparse_end=SPARSE_END,
            mask_layers=LAYERS, device=str(device), random_state=seed).fit(X, y)
    return run


def run_suppress(X, y, device, args):
    """Table rows of the suppress-privacy epoch, and how far the two trained models differ.

    ``mask_times`` follows the tutorial's rate (``privacy.TUTORIAL_RATE``).
    """
    from privacy import TUTORIAL_RATE

    mask_times = max(1, round(TUTORIAL_RATE * -(-len(X) // args.train_batch)))
    # the classifier seeds torch and its noise with seed_, drawn from random_state
    seed = check_random_state(0).randint(2**31 - 1)
    jobs = {"hand-written loop": suppress_hand_loop(X, y, device, args.train_batch,
                                                    mask_times, seed),
            "SuppressPrivacyClassifier": suppress_epoch(X, y, device, args.train_batch,
                                                        mask_times, 0)}
    times, results = interleave(jobs, args.repeats, device)
    module, masks = results["hand-written loop"]
    clf = results["SuppressPrivacyClassifier"]
    hand_params = dict(module.named_parameters())
    ours_params = dict(clf.estimator_.module_.named_parameters())
    base = times["hand-written loop"]
    rows = [{"training": f"suppress-privacy ({mask_times} ops)", "implementation": name,
             "epoch_seconds": statistics.median(times[name]),
             "x_hand_loop": statistics.median(a / b for a, b in zip(times[name], base))}
            for name in jobs]
    zeros = sum(int((hand_params[name] == 0).sum()) for name in masks)
    rows[0]["sparsity"] = zeros / sum(keep.numel() for keep in masks.values())
    rows[1].update(sparsity=clf.sparsity_,
                   masks_differ=sum(int((keep.cpu().numpy() != clf.masks_[name]).sum())
                                    for name, keep in masks.items()),
                   max_weight_diff=max(float((p - ours_params[name]).detach().abs().max())
                                       for name, p in hand_params.items()))
    return rows


def run_training(X, y, device, args):
    table = []
    setups = {"PGD-10 (random start)": (10, 0.01),
              "FGSM (random start)": (1, 1.25 * EPS)}
    for label, (n_iter, step) in setups.items():
        jobs = {"hand-written loop": hand_loop(X, y, device, args.train_batch, n_iter, EPS,
                                               step, 0),
                "AdversarialTrainer": trainer_epoch(X, y, device, args.train_batch, n_iter,
                                                    EPS, step, 0),
                "AdversarialTrainer, bfloat16": trainer_epoch(
                    X, y, device, args.train_batch, n_iter, EPS, step, 0,
                    mixed_precision=True)}
        times, _ = interleave(jobs, args.repeats, device)
        base = times["hand-written loop"]
        for name in jobs:
            table.append({"training": label, "implementation": name,
                          "epoch_seconds": statistics.median(times[name]),
                          "x_hand_loop": statistics.median(a / b for a, b in
                                                           zip(times[name], base))})
    return table + run_suppress(X, y, device, args)


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
        print_table(f"3. one epoch of training, {len(X_fit)} images, batch "
                    f"{args.train_batch}", report["training"],
                    ["training", "implementation", "epoch_seconds", "x_hand_loop",
                     "sparsity", "masks_differ", "max_weight_diff"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
