"""Fast FGSM adversarial training with random start (MATLAB's example) on SmallCNN/MNIST.

MathWorks' "Train Image Classification Network Robust to Adversarial Examples"
trains its small CNN (:class:`skrobust.models.SmallCNN`) with FGSM adversarial
training from a random start (Wong, Rice and Kolter 2020): uniform start in the
eps-ball, one signed-gradient step of ``1.25 * eps``, projected, every sample
adversarial; eps=0.1, 30 epochs. Evaluated with BIM (eps=0.1, step 0.01, 20
iterations) MATLAB reports clean 99.7 % and 75.7 % on its own digit set.

Here the recipe is one line,
``AdversarialTrainer(net, attack=PGDTransformer(eps=0.1, step_size=0.125, n_iter=1,
random_start=True), robust_val_fraction=0.1)``,
where ``robust_val_fraction`` is the guard against catastrophic overfitting (the
sudden collapse of robustness that fast FGSM training is known for): 10 % of the
training data is held out, its PGD-10 accuracy is recorded after every epoch, and
the best epoch's weights are kept. The per-epoch log shows what the guard saw.

The table adds MATLAB's BIM next to FGSM and PGD-40 with random restarts; the
figure plots accuracy against eps for the undefended and the defended model.

Run (SmallCNN on a CPU is slow: use a subset and few epochs there)::

    SKROBUST_DATA=../shared/data python examples/adversarial_training_fast_fgsm.py \\
        --n-train 10000 --epochs 10 --output-dir runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from torch import nn  # noqa: E402

from adversarial_training_common import (  # noqa: E402
    format_table,
    parser,
    plot_accuracy_vs_eps,
    robustness,
    setup,
    timed_fit,
)
from skrobust.attacks import PGDTransformer  # noqa: E402
from skrobust.defenses import AdversarialTrainer  # noqa: E402
from skrobust.evaluation import evaluate_attack  # noqa: E402
from skrobust.models import SmallCNN  # noqa: E402

EPS = 0.1
MATLAB = dict(clean=0.997, bim=0.757)


def main(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=30, n_attack=1000, restarts=5,
               n_ensemble=200)
    args = p.parse_args(argv)
    output, X_train, y_train, X_test, y_test = setup(args)

    def net():
        return NeuralNetClassifier(
            SmallCNN, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
            batch_size=128, max_epochs=args.epochs, train_split=None,
            iterator_train__shuffle=True, verbose=0)

    common = dict(random_state=args.seed, device=args.device)
    undefended = AdversarialTrainer(net(), replace_ratio=0.0, **common)
    clean_seconds = timed_fit(undefended, X_train, y_train)
    fast_fgsm = PGDTransformer(eps=EPS, step_size=1.25 * EPS, n_iter=1, random_start=True)
    fast = AdversarialTrainer(net(), attack=fast_fgsm, robust_val_fraction=0.1, verbose=1,
                              **common)
    print(f"fast FGSM training (eps={EPS}, step 1.25*eps, random start), epoch log:")
    fast_seconds = timed_fit(fast, X_train, y_train)
    history = fast.estimator_.history
    print(f"undefended: {clean_seconds:.0f} s; fast FGSM: {fast_seconds:.0f} s "
          f"({fast_seconds / clean_seconds:.1f}x, includes the guard's PGD-10)")
    print("guard: PGD-10 accuracy on the held-out 10 % per epoch: "
          + ", ".join(f"{a:.3f}" for a in history[:, "valid_robust_acc"])
          + f"; weights of epoch {fast.best_epoch_} of {len(history)} kept")

    n = args.n_attack
    bim = PGDTransformer(eps=EPS, step_size=0.01, n_iter=20)  # MATLAB's evaluation
    rows = []
    for name, model, seconds in (("undefended", undefended, clean_seconds),
                                 ("fast FGSM (random start)", fast, fast_seconds)):
        r = robustness(model, X_test, y_test, EPS, n_attack=n, restarts=args.restarts,
                       n_ensemble=args.n_ensemble, seed=args.seed)
        r["bim"] = evaluate_attack(model, X_test[:n], y_test[:n], bim).adversarial_accuracy
        rows.append((name, {**r, "seconds": seconds}))
    print()
    print(format_table([("MATLAB example (reported, its digit set)", MATLAB)] + rows,
                       restarts=args.restarts,
                       title=f"SmallCNN on MNIST, Linf eps={EPS}; attacks on {n} test "
                             f"images, the ensemble on {args.n_ensemble}"))
    print("BIM (eps=0.1, step 0.01, 20 iterations): "
          + "; ".join(f"{name} {100 * r['bim']:.1f} %" for name, r in rows)
          + f"; MATLAB {100 * MATLAB['bim']:.1f} %")
    k = args.n_curve
    plot_accuracy_vs_eps({"undefended": undefended, "fast FGSM": fast},
                         X_test[:k], y_test[:k], output / "adversarial_training_fast_fgsm.png",
                         title="SmallCNN/MNIST: undefended vs fast FGSM (eps=0.1)",
                         seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
