"""The ``skrobust`` command."""

import argparse
import sys


def _demo(args):
    from ._demo import run_demo

    run_demo(epochs=args.epochs, eps=args.eps, data_home=args.data_home,
             n_train=args.n_train, n_test=args.n_test, output=args.output,
             device=args.device, random_state=args.seed, verbose=0 if args.quiet else 1)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="skrobust", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train LeNet5 on MNIST and break it with FGSM",
        description="Train LeNet5 on MNIST (the full set when a data root holds it, "
                    "else the embedded 10k test set split 8k/2k), attack the test set "
                    "with FGSM, print MindArmour's table and save a figure.")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    demo.add_argument("--eps", type=float, default=0.3, help="FGSM budget (0.3)")
    demo.add_argument("--data-home", default=None,
                      help="data root holding mnist/ (default: $SKROBUST_DATA)")
    demo.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    demo.add_argument("--n-test", type=int, default=None, help="attack only the first N test images")
    demo.add_argument("--output", default="skrobust_demo.png", help="figure path ('' for none)")
    demo.add_argument("--device", default="cpu", help="torch device (cpu)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
