"""Adversarial training with and without bfloat16 mixed precision, side by side.

For each net, one epoch of PGD-k adversarial training
(:class:`skrobust.defenses.AdversarialTrainer`, ``k`` steps of ``2.5 * eps / k``
from a random start, every sample) runs with ``mixed_precision=False`` and
``mixed_precision=True`` on the same images, interleaved (the order rotates every
round) and repeated after a warm-up; the table shows median seconds per epoch
and their ratio. Then a LeNet5 is trained for ``--accuracy-epochs`` epochs both
ways from the same seed (for each of ``--seeds``) at ``--accuracy-eps`` (0.1) and
attacked there in float32 by PGD-20 on ``--n-test`` test images: the mean robust
accuracies should agree within 0.5 points; the spread of float32 alone from seed
to seed says how much of a difference is noise.

The nets: LeNet5 and a ResNet-18 (torchvision's, one input channel, on the 28x28
digits; timing only, as training it on a CPU for accuracy takes long). bfloat16
pays on devices with fast bfloat16 products (NVIDIA Ampere and later, CPUs with
AVX512-BF16 or AMX); on others autocast only adds casts.

Usage::

    SKROBUST_DATA=../shared/data python benchmarks/mixed_precision.py [--n 1024] \
        [--k 5] [--repeats 3] [--accuracy-epochs 3] [--seeds 0] [--n-train 10000] \
        [--n-test 1000] [--device cpu] [--threads 1] [--json out.json]

Data: full MNIST under the data root when there, else the embedded test set split
in two (as ``benchmarks/attacks.py`` loads it).
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from attacks import load_data  # benchmarks/attacks.py: full MNIST, else the embedded set
from skorch import NeuralNetClassifier
from torch import nn

from skrobust.attacks import PGDTransformer
from skrobust.defenses import AdversarialTrainer
from skrobust.models import LeNet5
from skrobust.models._layers import ToImage

EPS = 0.3


def resnet18():
    """torchvision's ResNet-18 for flat 28x28 single-channel rows."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return nn.Sequential(ToImage(1, 28), net)


NETS = {"LeNet5": LeNet5, "ResNet-18": resnet18}


def trainer(module, k, epochs, mixed_precision, device, seed=0, eps=EPS):
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, batch_size=128,
                              max_epochs=epochs,
                              train_split=None, iterator_train__shuffle=True, verbose=0)
    attack = PGDTransformer(eps=eps, step_size=2.5 * eps / k, n_iter=k, random_start=True)
    return AdversarialTrainer(net, attack=attack, mixed_precision=mixed_precision,
                              device=device, random_state=seed)


def clock(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="images of the timed epoch")
    parser.add_argument("--k", type=int, default=5, help="PGD steps in training (5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (3)")
    parser.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS),
                        help="nets timed (default: all; none: only the accuracy)")
    parser.add_argument("--accuracy-epochs", type=int, default=3,
                        help="epochs of the LeNet5 trained for accuracy (3; 0: skip)")
    parser.add_argument("--accuracy-eps", type=float, default=0.1,
                        help="eps of that training and attack (0.1: at 0.3 a LeNet5 "
                             "trained from scratch for a few epochs collapses)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds of the accuracy runs (0); both precisions per seed")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    for name in ("n", "k", "repeats", "n_train", "n_test", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    torch.set_num_threads(args.threads)
    X, y, X_test, y_test, _ = load_data(args.n_test, seed=0,
                                        n_train=max(args.n_train, args.n))
    result = {"device": args.device, "threads": args.threads, "k": args.k, "timing": [],
              "accuracy": []}

    print(f"one epoch of PGD-{args.k} adversarial training on {args.n} images, "
          f"{args.device}, {args.threads} thread(s), medians of {args.repeats} rounds")
    warm = min(128, args.n)
    for name in args.nets:
        seconds = {False: [], True: []}
        for mixed in (False, True):  # warm-up: first calls pay one-off costs
            trainer(NETS[name], args.k, 1, mixed, args.device).fit(X[:warm], y[:warm])
        for r in range(args.repeats):
            for mixed in (False, True)[r % 2:] + (False, True)[:r % 2]:
                start = clock(args.device)
                trainer(NETS[name], args.k, 1, mixed, args.device).fit(X[:args.n],
                                                                        y[:args.n])
                seconds[mixed].append(clock(args.device) - start)
        f32, bf16 = (statistics.median(seconds[m]) for m in (False, True))
        ratio = statistics.median(b / a for a, b in zip(seconds[False], seconds[True]))
        result["timing"].append({"net": name, "float32_s": f32, "bfloat16_s": bf16,
                                 "ratio": ratio})
        print(f"  {name:10s} float32 {f32:7.2f} s  bfloat16 {bf16:7.2f} s  "
              f"ratio {ratio:.2f}", flush=True)

    if args.accuracy_epochs:
        eps = args.accuracy_eps
        print(f"\nLeNet5 trained {args.accuracy_epochs} epoch(s) on {len(X)} images, "
              f"PGD-20 (float32) on {len(X_test)} test images, eps {eps}")
        attack = PGDTransformer(eps=eps, step_size=2.5 * eps / 20, n_iter=20,
                                random_start=True, random_state=0, device=args.device)
        robust = {False: [], True: []}
        for seed in args.seeds:
            for mixed in (False, True):
                model = trainer(LeNet5, args.k, args.accuracy_epochs, mixed, args.device,
                                seed=seed, eps=eps)
                model.fit(X, y)
                X_adv = attack.set_params(estimator=model).fit(X, y).generate(X_test,
                                                                              y_test)
                row = {"seed": seed, "mixed_precision": mixed,
                       "clean": model.score(X_test, y_test),
                       "robust": model.score(X_adv, y_test)}
                result["accuracy"].append(row)
                robust[mixed].append(row["robust"])
                print(f"  seed {seed} mixed_precision={mixed!s:5s} clean {row['clean']:.4f}"
                      f"  robust {row['robust']:.4f}", flush=True)
        diff = 100 * (np.mean(robust[True]) - np.mean(robust[False]))
        spread = 100 * (max(robust[False]) - min(robust[False]))
        result["robust_difference_points"] = diff
        result["float32_seed_spread_points"] = spread
        print(f"  bfloat16 - float32 robust accuracy, mean over seeds: {diff:+.2f} points "
              f"(float32 alone, seed to seed: {spread:.2f} points apart)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
