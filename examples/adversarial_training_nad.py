"""MindArmour's Natural Adversarial Defense (NAD) on LeNet5/MNIST: tutorial vs honest protocol.

MindArmour's NAD tutorial trains LeNet5 for 10 epochs on MNIST (FGSM eps=0.3 then
leaves 5.2 % accuracy), then fine-tunes it with ``NaturalAdversarialDefense``
(eps=0.3, half of every batch replaced by its FGSM example, 10 epochs) and reports
clean 97.4 %, 85.6 % on adversarial examples, ACAC 0.62 and ACTC 0.18. In that
tutorial the defense is trained *on the test images*, and the adversarial
examples are crafted against the *undefended* model (a transfer attack).

Here the same recipe is one line,
``AdversarialTrainer(FrozenEstimator(trained_net), attack=FGSMTransformer(eps=0.3),
replace_ratio=0.5)``
(the frozen net is fine-tuned on a copy), run twice:

1. MindArmour's protocol: fine-tuned on the test images, scored on FGSM examples
   of the undefended model;
2. the honest protocol: fine-tuned on the training set, scored on the test set with
   white-box FGSM and PGD-40 (random restarts) against the defended model itself.

The table puts both next to the tutorial's figures; the figure plots accuracy
against eps for the undefended and the (honest) NAD model.

Run (LeNet5 on a CPU: minutes per epoch on a shared machine)::

    SKROBUST_DATA=../shared/data python examples/adversarial_training_nad.py \\
        --epochs 10 --defense-epochs 10 --output-dir runs
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sklearn.frozen import FrozenEstimator  # noqa: E402

from adversarial_training_common import (  # noqa: E402
    format_table,
    parser,
    plot_accuracy_vs_eps,
    robustness,
    setup,
    sgd_net,
    timed_fit,
    transfer_robustness,
)
from skrobust.attacks import FGSMTransformer  # noqa: E402
from skrobust.defenses import AdversarialTrainer  # noqa: E402
from skrobust.models import LeNet5  # noqa: E402

EPS = 0.3
TUTORIAL = dict(clean=0.974, fgsm=0.856, acac=0.62, actc=0.18)
TUTORIAL_UNDEFENDED = dict(clean=0.989, fgsm=0.052)


def main(argv=None):
    p = parser(__doc__.splitlines()[0], epochs=10)
    p.add_argument("--defense-epochs", type=int, default=10,
                   help="NAD fine-tuning epochs (10, as the tutorial)")
    args = p.parse_args(argv)
    output, X_train, y_train, X_test, y_test = setup(args)
    common = dict(n_attack=args.n_attack, restarts=args.restarts,
                  n_ensemble=args.n_ensemble, seed=args.seed)

    # MindArmour's LeNet5 training: SGD with momentum, batches of 32
    net = sgd_net(LeNet5, epochs=args.epochs, batch_size=32, device=args.device)
    undefended = AdversarialTrainer(net, replace_ratio=0.0, random_state=args.seed,
                                    device=args.device)
    seconds = timed_fit(undefended, X_train, y_train)
    print(f"undefended LeNet5: {args.epochs} epochs in {seconds:.0f} s")

    # NAD fine-tunes a copy of the trained net; the frozen net keeps its settings
    undefended.estimator_.set_params(max_epochs=args.defense_epochs)
    frozen = FrozenEstimator(undefended.estimator_)
    nad = dict(attack=FGSMTransformer(eps=EPS), replace_ratio=0.5, random_state=args.seed,
               device=args.device)
    nad_tutorial = AdversarialTrainer(frozen, **nad)
    tutorial_seconds = timed_fit(nad_tutorial, X_test, y_test)   # on the test images
    nad_honest = AdversarialTrainer(frozen, **nad)
    honest_seconds = timed_fit(nad_honest, X_train, y_train)    # on the training set
    print(f"NAD fine-tuning ({args.defense_epochs} epochs): {tutorial_seconds:.0f} s on "
          f"the {len(X_test)} test images, {honest_seconds:.0f} s on the training set")

    rows = [
        ("MindArmour tutorial: undefended (reported)", TUTORIAL_UNDEFENDED),
        ("MindArmour tutorial: NAD (reported)", TUTORIAL),
        ("undefended, white-box",
         {**robustness(undefended, X_test, y_test, EPS, **common), "seconds": seconds}),
        ("NAD, tutorial protocol: trained on test set, FGSM of undefended",
         {**transfer_robustness(nad_tutorial, undefended, X_test, y_test, EPS,
                                n_attack=args.n_attack), "seconds": tutorial_seconds}),
        ("NAD, tutorial protocol, white-box (test set seen in training)",
         robustness(nad_tutorial, X_test, y_test, EPS, **common)),
        ("NAD, honest: trained on train set, FGSM of undefended",
         transfer_robustness(nad_honest, undefended, X_test, y_test, EPS,
                             n_attack=args.n_attack)),
        ("NAD, honest: trained on train set, white-box",
         {**robustness(nad_honest, X_test, y_test, EPS, **common),
          "seconds": honest_seconds}),
    ]
    print()
    print(format_table(rows, restarts=args.restarts,
                       title=f"LeNet5 on MNIST, Linf eps={EPS}; attacks on "
                             f"{args.n_attack} test images, the ensemble on {args.n_ensemble}"))
    n = args.n_curve
    plot_accuracy_vs_eps({"undefended": undefended, "NAD (honest)": nad_honest},
                         X_test[:n], y_test[:n], output / "adversarial_training_nad.png",
                         title="LeNet5/MNIST: undefended vs NAD (eps=0.3)",
                         seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
