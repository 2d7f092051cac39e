"""PGD adversarial training (Madry et al. 2018) at eps=0.3 on MNIST, with its training time.

Madry et al. train on PGD examples (40 steps of 0.01 from a random start in the
eps-ball) and, re-evaluated by AutoAttack, reach 98.5 % clean / 88.4 % robust at
eps=0.3; fast FGSM training (Wong et al. 2020) reaches 98.5 % / 82.9 %. Both use a
larger CNN (conv 32, conv 64, fc 1024) and many more epochs than a CPU allows.

Here the recipe is one line,
``AdversarialTrainer(net, attack="pgd", eps=0.3, n_iter=k, random_start=True)``
(step ``2.5 * eps / k``), on the MATLAB example's CNN
(:class:`skrobust.models.SmallCNN`) by default. Capacity matters at eps=0.3
(Madry et al.'s capacity study): ``--module lenet5`` is ten times cheaper, but on
10,000 images LeNet5 stayed at chance level (training loss 2.30 = log 10 after 3
PGD-7 epochs, even from the clean net). By default PGD training starts from the
clean net (``FrozenEstimator(clean_net)``: fine-tuned on a copy);
``--from-scratch`` trains from random weights instead. The table shows clean, FGSM
and PGD-40 (random restarts) accuracy and the training times; the figure plots
accuracy against eps for the clean and the PGD-trained net.

Run (PGD-k training costs about k + 1 clean epochs per epoch)::

    SKROBUST_DATA=../shared/data python examples/adversarial_training_pgd.py \\
        --n-train 20000 --epochs 3 --at-epochs 8 --train-steps 7 --output-dir runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
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
from skrobust.defenses import AdversarialTrainer  # noqa: E402
from skrobust.models import LeNet5, SmallCNN  # noqa: E402

EPS = 0.3
ANCHORS = [("Madry et al. PGD-AT, AutoAttack (reported, larger CNN)",
            dict(clean=0.985, pgd=0.884)),
           ("Wong et al. fast FGSM, AutoAttack (reported, larger CNN)",
            dict(clean=0.985, pgd=0.829))]


def main(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=3, n_train=20000, restarts=5)
    p.add_argument("--at-epochs", type=int, default=8, help="PGD training epochs (8)")
    p.add_argument("--train-steps", type=int, default=7,
                   help="PGD steps per training batch (7)")
    p.add_argument("--module", choices=["lenet5", "small_cnn"], default="small_cnn",
                   help="the net (small_cnn)")
    p.add_argument("--from-scratch", action="store_true",
                   help="PGD-train from random weights, not from the clean net")
    args = p.parse_args(argv)
    output, X_train, y_train, X_test, y_test = setup(args)
    module = {"lenet5": LeNet5, "small_cnn": SmallCNN}[args.module]

    def net(epochs):
        return NeuralNetClassifier(
            module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
            batch_size=128, max_epochs=epochs, train_split=None,
            iterator_train__shuffle=True, verbose=0)

    common = dict(random_state=args.seed, device=args.device)
    undefended = AdversarialTrainer(net(args.epochs), replace_ratio=0.0, **common)
    clean_seconds = timed_fit(undefended, X_train, y_train)
    if args.from_scratch:
        start = net(args.at_epochs)
    else:  # fine-tune a copy of the clean net (the frozen net keeps its weights)
        start = FrozenEstimator(undefended.estimator_.set_params(max_epochs=args.at_epochs))
    madry = AdversarialTrainer(start, attack="pgd", eps=EPS, n_iter=args.train_steps,
                               random_start=True, verbose=1, **common)
    print(f"PGD-{args.train_steps} training (step {2.5 * EPS / args.train_steps:.3f}, "
          f"{'from scratch' if args.from_scratch else 'from the clean net'}), epoch log:")
    pgd_seconds = timed_fit(madry, X_train, y_train)
    per_epoch = (pgd_seconds / args.at_epochs) / (clean_seconds / args.epochs)
    print(f"training: clean {clean_seconds:.0f} s ({args.epochs} epochs), "
          f"PGD-{args.train_steps} {pgd_seconds:.0f} s ({args.at_epochs} epochs); per epoch "
          f"{per_epoch:.1f}x clean (floor about {args.train_steps + 1}x)")

    name = module.__name__
    at_name = f"{name}, PGD-{args.train_steps} training, {args.at_epochs} epochs" + (
        "" if args.from_scratch else f" after {args.epochs} clean")
    rows = ANCHORS + [
        (f"{name}, clean training, {args.epochs} epochs",
         {**robustness(undefended, X_test, y_test, EPS, n_attack=args.n_attack,
                       restarts=args.restarts, seed=args.seed), "seconds": clean_seconds}),
        (at_name,
         {**robustness(madry, X_test, y_test, EPS, n_attack=args.n_attack,
                       restarts=args.restarts, seed=args.seed), "seconds": pgd_seconds}),
    ]
    print()
    print(format_table(rows, restarts=args.restarts,
                       title=f"{name} on MNIST ({len(X_train)} training images), "
                             f"Linf eps={EPS}; attacks on {args.n_attack} test images"))
    k = args.n_curve
    plot_accuracy_vs_eps({"clean training": undefended,
                          f"PGD-{args.train_steps} AT": madry},
                         X_test[:k], y_test[:k], output / "adversarial_training_pgd.png",
                         title=f"{name}/MNIST: clean vs PGD adversarial training (eps=0.3)",
                         seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
