"""FGSM on handwritten digits: accuracy against the budget, in a few seconds.

Trains a LeNet-5 (a skorch ``NeuralNetClassifier``) for two epochs on 2,000 of
the MNIST test digits that ship with skrobust (no data folder, no network),
attacks 1,000 other digits with FGSM at several budgets ``eps`` (Linf, pixels in
[0, 1]) and saves two figures to ``--output-dir``:

* ``fgsm_digits_grid.png``: clean digits above their adversarial versions at the
  largest budget, predictions in green when right and red when wrong;
* ``fgsm_accuracy_vs_eps.png``: accuracy under attack against ``eps``.

Run::

    python examples/plot_fgsm_digits.py --output-dir runs
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from torch import nn  # noqa: E402

from skrobust.attacks import FGSMTransformer  # noqa: E402
from skrobust.datasets import load_mnist  # noqa: E402
from skrobust.models import LeNet5  # noqa: E402
from skrobust.plotting import plot_adversarial_grid  # noqa: E402

EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs", help="where figures go (runs/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: a shared machine; 0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    X, y = load_mnist(split="test", return_X_y=True)  # the embedded 10k digits
    order = np.random.RandomState(args.seed).permutation(len(X))
    train, test = order[:2000], order[2000:3000]

    torch.manual_seed(args.seed)
    net = NeuralNetClassifier(
        LeNet5, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=2e-3,
        max_epochs=2, batch_size=32, train_split=None, iterator_train__shuffle=True,
        verbose=0,
    )
    net.fit(X[train], y[train])
    X_test, y_test = X[test], y[test]

    # one attack, its budget changed with set_params; the frozen victim is never refitted
    attack = FGSMTransformer(FrozenEstimator(net)).fit(X_test, y_test)
    accuracies = []
    print(f"{'eps':>5}  accuracy under FGSM")
    for eps in EPS:
        X_adv = attack.set_params(eps=eps).generate(X_test, y_test)
        accuracies.append(net.score(X_adv, y_test))
        print(f"{eps:>5.2f}  {100 * accuracies[-1]:6.2f} %")

    fig = plot_adversarial_grid(X_test, X_adv, y_test, net.predict(X_test),
                                net.predict(X_adv), n_images=10)
    fig.suptitle(f"FGSM eps={EPS[-1]}: clean (top) and adversarial (bottom)")
    fig.tight_layout()
    fig.savefig(output / "fgsm_digits_grid.png", dpi=120)

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(EPS, 100 * np.asarray(accuracies), "o-")
    ax.set_xlabel("eps (Linf, pixels in [0, 1])")
    ax.set_ylabel("accuracy under FGSM (%)")
    ax.set_ylim(0, 100)
    ax.set_title("LeNet-5, 2 epochs on 2,000 digits")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output / "fgsm_accuracy_vs_eps.png", dpi=120)
    print(f"figures saved to {output}/fgsm_digits_grid.png and "
          f"{output}/fgsm_accuracy_vs_eps.png ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
