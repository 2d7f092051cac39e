"""How much the demo's FGSM figure depends on the training seed and on LeNet5's init.

``skrobust demo`` trains one LeNet5 (seed 0) and attacks it with FGSM eps=0.3;
MindArmour's tutorial reports 5.2 % adversarial accuracy for the same recipe. This
script trains the demo's net for several seeds, with PyTorch's default
initialisation and with MindArmour's (weights and biases drawn from a normal of
standard deviation 0.02 truncated at two deviations, bias-free convolutions), and
prints clean and FGSM accuracy on the 10k test images for each. Usage::

    SKROBUST_DATA=../shared/data python benchmarks/demo_seed_spread.py --seeds 0 1 2
"""

import argparse
import statistics

import torch
from torch import nn

from skrobust._demo import demo_net, load_demo_data
from skrobust.attacks import FGSMTransformer
from skrobust.evaluation import evaluate_attack
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net


class MindArmourLeNet5(LeNet5):
    """LeNet5 initialised as MindArmour's ``lenet5_net.py`` (TruncatedNormal(0.02))."""

    def __init__(self, n_classes=10):
        super().__init__(n_classes)
        for name in ("conv1", "conv2"):
            old = getattr(self, name)
            setattr(self, name, nn.Conv2d(old.in_channels, old.out_channels,
                                          old.kernel_size, padding=old.padding, bias=False))
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                for p in (layer.weight, layer.bias):
                    if p is not None:
                        nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=None, help="first N training images (all)")
    p.add_argument("--n-test", type=int, default=None, help="first N test images (all)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test, source = load_demo_data(n_train=args.n_train,
                                                              n_test=args.n_test)
    print(f"data: {source}; {len(X_train)} training and {len(X_test)} test images; "
          f"LeNet5, {args.epochs} epochs, FGSM eps={args.eps}")
    print(f"{'init':<12} {'seed':>4} {'clean':>8} {'FGSM':>8}")
    for init, module in (("pytorch", LeNet5), ("mindarmour", MindArmourLeNet5)):
        adversarial = []
        for seed in args.seeds:
            net = fit_net(demo_net(module, epochs=args.epochs), X_train, y_train, seed)
            r = evaluate_attack(net, X_test, y_test, FGSMTransformer(eps=args.eps))
            adversarial.append(r.adversarial_accuracy)
            print(f"{init:<12} {seed:>4} {100 * r.clean_accuracy:7.2f}% "
                  f"{100 * r.adversarial_accuracy:7.2f}%", flush=True)
        print(f"{init:<12} {'med':>4} {'':>8} {100 * statistics.median(adversarial):7.2f}%")


if __name__ == "__main__":
    main()
