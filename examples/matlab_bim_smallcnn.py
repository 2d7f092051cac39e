"""BIM against a small CNN on MNIST: the attack half of MATLAB's adversarial example.

Reproduces the attack part of MathWorks' "Train Image Classification Network
Robust to Adversarial Examples" (Deep Learning Toolbox) on MNIST:

1. train the example's small CNN (conv 32@3x3 pad 1, ReLU, conv 64@3x3 pad 1,
   ReLU, max-pool 2, fc 10; :class:`skrobust.models.SmallCNN`) as a skorch
   ``NeuralNetClassifier`` with cross-entropy and Adam on the full training set;
2. attack the test set with the Basic Iterative Method, i.e.
   ``PGDTransformer(eps=0.1, step_size=0.01, n_iter=20, random_start=False)``
   (Linf, pixels in [0, 1]) on the true labels;
3. print clean and adversarial accuracy next to MATLAB's (98.6 % and 1.1 %), with
   MindArmour's table of the attack and, on ``--n-check`` images, the accuracy left
   by the stronger APGD-CE (100 steps) at the same budget (is BIM a weak attack
   here?), and save a figure of clean digits above their adversarial versions to
   ``--output-dir``.

Run (minutes on a CPU; needs the MNIST training set in a data root)::

    SKROBUST_DATA=../shared/data python examples/matlab_bim_smallcnn.py --output-dir runs
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from torch import nn  # noqa: E402

from skrobust.attacks import APGDTransformer, PGDTransformer  # noqa: E402
from skrobust.datasets import load_mnist  # noqa: E402
from skrobust.evaluation import evaluate_attack, format_attack_table  # noqa: E402
from skrobust.models import SmallCNN  # noqa: E402
from skrobust.plotting import plot_adversarial_grid  # noqa: E402

MATLAB = {"clean": 0.986, "adversarial": 0.011}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs", help="where the figure goes (runs/)")
    parser.add_argument("--data-home", default=None,
                        help="data root holding mnist/ (default: $SKROBUST_DATA)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (3)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="train on the first N training images (all 60,000)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="attack the first N test images (all 10,000)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--n-check", type=int, default=1000,
                        help="test images on which APGD-CE (100 steps) checks that BIM is "
                             "not a weak attack (1000; 0 skips)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a shared machine; 0: torch's default)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    X_train, y_train = load_mnist(split="train", data_home=args.data_home, download=False,
                                  return_X_y=True)
    X_test, y_test = load_mnist(split="test", data_home=args.data_home, return_X_y=True)
    X_train, y_train = X_train[:args.n_train], y_train[:args.n_train]
    X_test, y_test = X_test[:args.n_test], y_test[:args.n_test]

    torch.manual_seed(args.seed)
    net = NeuralNetClassifier(
        SmallCNN, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        batch_size=128, max_epochs=args.epochs, train_split=None,
        iterator_train__shuffle=True, device=args.device, verbose=1,
    )
    start = time.perf_counter()
    net.fit(X_train, y_train)
    train_seconds = time.perf_counter() - start
    clean = net.score(X_test, y_test)
    print(f"SmallCNN trained on {len(X_train)} images for {args.epochs} epochs in "
          f"{train_seconds:.0f} s; clean accuracy on {len(X_test)} test images "
          f"{100 * clean:.2f} %")

    bim = PGDTransformer(eps=0.1, step_size=0.01, n_iter=20, random_start=False,
                         batch_size=256, verbose=1)
    # evaluate_attack points a clone of bim at FrozenEstimator(net) and attacks the true labels
    result = evaluate_attack(net, X_test, y_test, bim)
    print()
    print(format_attack_table(
        result, title=f"BIM (Linf eps=0.1, step 0.01, 20 iterations) on {len(X_test)} "
                      "MNIST test images"))
    print()
    print(f"{'':<22}{'skrobust':>10}{'MATLAB':>10}")
    print(f"{'clean accuracy':<22}{100 * result.clean_accuracy:>9.1f}%"
          f"{100 * MATLAB['clean']:>9.1f}%")
    print(f"{'adversarial accuracy':<22}{100 * result.adversarial_accuracy:>9.1f}%"
          f"{100 * MATLAB['adversarial']:>9.1f}%")

    if args.n_check:
        k = args.n_check
        apgd = APGDTransformer(eps=0.1, n_iter=100, random_state=args.seed)
        bim_k = result.y_pred_adv[:k] == y_test[:k]
        apgd_k = evaluate_attack(net, X_test[:k], y_test[:k], apgd).adversarial_accuracy
        print(f"{'on the first ' + str(k) + ': BIM':<22}{100 * bim_k.mean():>9.1f}%   "
              f"APGD-CE (100 steps) {100 * apgd_k:.1f}%")
    X_adv = result.X_adv
    assert np.abs(X_adv - X_test).max() <= 0.1 + 1e-6
    fig = plot_adversarial_grid(X_test, X_adv, y_test, result.y_pred, result.y_pred_adv,
                                n_images=12)
    fig.suptitle("BIM eps=0.1 on SmallCNN: clean (top) and adversarial (bottom)")
    fig.tight_layout()
    path = output / "matlab_bim_smallcnn.png"
    fig.savefig(path, dpi=120)
    print(f"\nfigure saved to {path}")
    return result


if __name__ == "__main__":
    main()
