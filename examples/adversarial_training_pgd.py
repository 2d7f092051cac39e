"""PGD adversarial training (Madry et al. 2018) at eps=0.3 on MNIST, with its training time.

Madry et al. train on PGD examples (40 steps of 0.01 from a random start in the
eps-ball) and, re-evaluated by AutoAttack, reach 98.5 % clean / 88.4 % robust at
eps=0.3; fast FGSM training (Wong et al. 2020) reaches 98.5 % / 82.9 %. Both use a
larger CNN (conv 32, conv 64, fc 1024) and many more epochs than a CPU allows.

Here the recipe is one line,
``AdversarialTrainer(net, attack=PGDTransformer(eps=0.3, step_size=2.5 * 0.3 / k,
n_iter=k, random_start=True))`` (Madry's step ``2.5 * eps / k``), by default on :class:`skrobust.models.LeNet5` from random
weights, with Adam and a one-cycle learning rate as Wong et al. (linear up to
5e-3 over the first 40 % of the steps, then down to 0; a skorch ``LRScheduler``
callback on the net). The warm-up is what makes it train: with a constant Adam lr
of 1e-3 PGD training at eps=0.3 stays at chance level (training loss 2.30 =
log 10), from random weights and from a clean net alike. ``--module small_cnn``
uses MATLAB's CNN instead (about 12 times the cost of LeNet5). The table shows
clean, FGSM and PGD-40 (random restarts) accuracy and the training times; the
figure plots accuracy against eps for the clean and the PGD-trained net.

Run (PGD-k training costs about k + 1 clean epochs per epoch)::

    SKROBUST_DATA=../shared/data python examples/adversarial_training_pgd.py \
        --epochs 10 --train-steps 10 --output-dir runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402
from skorch.callbacks import LRScheduler  # noqa: E402
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
from skrobust.models import LeNet5, SmallCNN  # noqa: E402

EPS = 0.3
ANCHORS = [("Madry et al. PGD-AT, AutoAttack (reported, larger CNN)",
            dict(clean=0.985, ensemble=0.884)),
           ("Wong et al. fast FGSM, AutoAttack (reported, larger CNN)",
            dict(clean=0.985, ensemble=0.829))]


def one_cycle(n_samples, batch_size, epochs, lr_max):
    """Wong et al.'s schedule: lr linear up to lr_max over 40 % of the steps, then to ~0."""
    steps = epochs * int(np.ceil(n_samples / batch_size))
    return LRScheduler(policy=torch.optim.lr_scheduler.OneCycleLR, max_lr=lr_max,
                       total_steps=steps, pct_start=0.4, anneal_strategy="linear",
                       cycle_momentum=False, step_every="batch")


def main(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=10, restarts=5)
    p.add_argument("--train-steps", type=int, default=10,
                   help="PGD steps per training batch (10)")
    p.add_argument("--lr-max", type=float, default=5e-3,
                   help="peak of the one-cycle learning rate (5e-3)")
    p.add_argument("--module", choices=["lenet5", "small_cnn"], default="lenet5",
                   help="the net (lenet5)")
    args = p.parse_args(argv)
    output, X_train, y_train, X_test, y_test = setup(args)
    module = {"lenet5": LeNet5, "small_cnn": SmallCNN}[args.module]
    batch_size = 100

    def net():
        # the clean and the PGD-trained net share the recipe, schedule included
        schedule = one_cycle(len(X_train), batch_size, args.epochs, args.lr_max)
        return NeuralNetClassifier(
            module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam,
            lr=args.lr_max, batch_size=batch_size, max_epochs=args.epochs,
            train_split=None, iterator_train__shuffle=True, callbacks=[schedule],
            verbose=0)

    common = dict(random_state=args.seed, device=args.device)
    undefended = AdversarialTrainer(net(), replace_ratio=0.0, **common)
    clean_seconds = timed_fit(undefended, X_train, y_train)
    attack = PGDTransformer(eps=EPS, step_size=2.5 * EPS / args.train_steps,
                            n_iter=args.train_steps, random_start=True)
    madry = AdversarialTrainer(net(), attack=attack, verbose=1, **common)
    print(f"PGD-{args.train_steps} training (step {2.5 * EPS / args.train_steps:.3f}), "
          "epoch log:")
    pgd_seconds = timed_fit(madry, X_train, y_train)
    per_epoch = pgd_seconds / clean_seconds
    print(f"training: clean {clean_seconds:.0f} s, PGD-{args.train_steps} "
          f"{pgd_seconds:.0f} s ({args.epochs} epochs each): {per_epoch:.1f}x clean "
          f"(floor about {args.train_steps + 1}x)")

    name = module.__name__
    at_name = f"{name}, PGD-{args.train_steps} training, {args.epochs} epochs"
    common = dict(n_attack=args.n_attack, restarts=args.restarts,
                  n_ensemble=args.n_ensemble, seed=args.seed)
    rows = ANCHORS + [
        (f"{name}, clean training, {args.epochs} epochs",
         {**robustness(undefended, X_test, y_test, EPS, **common), "seconds": clean_seconds}),
        (at_name, {**robustness(madry, X_test, y_test, EPS, **common), "seconds": pgd_seconds}),
    ]
    print()
    print(format_table(rows, restarts=args.restarts,
                       title=f"{name} on MNIST ({len(X_train)} training images), "
                             f"Linf eps={EPS}; attacks on {args.n_attack} test images, the "
                             f"ensemble on {args.n_ensemble}"))
    k = args.n_curve
    plot_accuracy_vs_eps({"clean training": undefended,
                          f"PGD-{args.train_steps} AT": madry},
                         X_test[:k], y_test[:k], output / "adversarial_training_pgd.png",
                         title=f"{name}/MNIST: clean vs PGD adversarial training (eps=0.3)",
                         seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
