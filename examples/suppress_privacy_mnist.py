"""Suppress-privacy training of LeNet5 on MNIST, judged by image inversion and
membership inference (MindArmour's Suppress-Privacy tutorial).

Protocol (the tutorial's, on the 60,000 MNIST training images):

1. a normal LeNet5: ``--epochs`` epochs of SGD, lr 0.05, batch 32, cross-entropy;
2. the same net trained by :class:`skrobust.privacy.SuppressPrivacyClassifier`
   (suppress operations from ``--start-epoch`` to the last epoch, 1000 of them,
   sparsity 0 -> 0.95 on the cubic ramp, the tutorial's per-layer settings);
3. a judge: an independently trained LeNet5 (another seed, ``--judge-epochs``);
4. an image inversion attack on the fc1 features of 30 test images, 100 Adam
   iterations, against both models, scored by :func:`skrobust.privacy.inversion_report`
   (relative L2, SSIM, the judge's true-label confidence);
5. loss- and confidence-threshold membership inference (Yeom et al. 2018) with
   10,000 training members against the 10,000 test images.

Tutorial figures: accuracy 99 % (normal) vs 97.45 % (suppress); inversion L2
0.83 / 0.86, SSIM 0.24 / 0.26, judge confidence 0.95 / 0.56.

Run (LeNet5 at about 1-2 min per epoch on a shared 2-core CPU; about 35 min in all)::

    SKROBUST_DATA=/path/to/data nice -n 10 python examples/suppress_privacy_mnist.py \\
        --output-dir runs/privacy

Trained models are cached under ``--output-dir`` as ``<name>.pt`` (the LeNet5's
``state_dict``, read back with ``torch.load(weights_only=True)``, which cannot run
code) and ``<name>.json`` (training time, sparsity); ``--retrain`` ignores the cache.
The suppress-privacy model is evaluated through its trained net
(``SuppressPrivacyClassifier.estimator_``): on MNIST's labels 0-9 both predict alike.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetClassifier
from sklearn.frozen import FrozenEstimator

from skrobust.datasets import load_mnist
from skrobust.models import LeNet5
from skrobust.privacy import (
    ImageInversionAttack,
    MaskLayer,
    SuppressPrivacyClassifier,
    inversion_report,
    membership_inference,
)
from skrobust.utils import extract_features
from skrobust.utils._torch import torch_seed

# the tutorial's MaskLayerDes list: conv kernels keep a minimum of weights with a
# lower clip, fully connected weights get noise; MindArmour's upper bound is 1.2
TUTORIAL_LAYERS = [
    MaskLayer("conv1.weight", min_kept=10, lower_clip=0.005, upper_bound=1.2),
    MaskLayer("conv2.weight", min_kept=150, lower_clip=0.005, upper_bound=1.2),
    MaskLayer("fc1.weight", noise=0.01, upper_bound=1.2),
    MaskLayer("fc2.weight", noise=0.01, upper_bound=1.2),
    MaskLayer("fc3.weight", min_kept=50, noise=0.01, upper_bound=1.2),
]


def lenet(epochs, lr):
    return NeuralNetClassifier(
        LeNet5, max_epochs=epochs, lr=lr, batch_size=32, optimizer=torch.optim.SGD,
        criterion=torch.nn.CrossEntropyLoss, train_split=None,
        iterator_train__shuffle=True, verbose=0)


def train_or_load(name, make, X, y, out, retrain, config, info=lambda model: {}):
    """Fit ``make()`` on (X, y), or load the cached weights of its net from ``out``.

    Returns the trained skorch net (the inner net of a meta-estimator) and a record
    with the training time and ``info(model)``. The cache holds only tensors and
    JSON: never a pickle, whose loading could run arbitrary code. It is used only
    when it was trained with the same ``config`` (sizes, epochs, learning rate), so a
    smaller run in the same folder is never mistaken for the full one.
    """
    weights, meta = out / f"{name}.pt", out / f"{name}.json"
    if weights.exists() and meta.exists() and not retrain:
        record = json.loads(meta.read_text())
        if record.get("config") == config:
            net = lenet(1, 0.0).initialize()
            net.module_.load_state_dict(torch.load(weights, map_location="cpu",
                                                   weights_only=True))
            return net, record
        print(f"{weights} was trained with other settings: training again")
    model = make()
    start = time.perf_counter()
    model.fit(X, y)
    record = {"seconds": time.perf_counter() - start, **info(model), "config": config}
    net = getattr(model, "estimator_", model)
    torch.save(net.module_.state_dict(), weights)
    meta.write_text(json.dumps(record, default=float))
    return net, record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="runs/privacy")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--start-epoch", type=int, default=3)
    parser.add_argument("--judge-epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--n-inversions", type=int, default=30)
    parser.add_argument("--n-iter", type=int, default=100)
    parser.add_argument("--n-membership", type=int, default=10000)
    parser.add_argument("--n-train", type=int, default=None,
                        help="use only the first n training images (smoke tests)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    X_train, y_train = load_mnist(split="train", data_home=args.data_home, return_X_y=True)
    X_test, y_test = load_mnist(split="test", data_home=args.data_home, return_X_y=True)
    X_train, y_train = X_train[:args.n_train], y_train[:args.n_train].astype(np.int64)
    y_test = y_test.astype(np.int64)

    def normal():
        return lenet(args.epochs, args.lr)

    def suppressed():
        return SuppressPrivacyClassifier(
            lenet(args.epochs, args.lr), start_epoch=args.start_epoch,
            end_epoch=args.epochs, mask_times=1000, sparse_start=0.0, sparse_end=0.95,
            mask_layers=TUTORIAL_LAYERS, random_state=0, verbose=1)

    def judge():
        return lenet(args.judge_epochs, args.lr)

    def suppress_info(clf):
        return {"sparsity": clf.sparsity_, "layer_sparsity": clf.layer_sparsity_,
                "n_suppress_ops": int(len(clf.schedule_.batch))}

    config = {key: getattr(args, key) for key in
              ("n_train", "epochs", "start_epoch", "judge_epochs", "lr")}
    with torch_seed(0):
        normal_net, normal_record = train_or_load("normal", normal, X_train, y_train, out,
                                                  args.retrain, config)
    print(f"normal trained in {normal_record['seconds']:.0f} s", flush=True)
    suppress_net, suppress = train_or_load("suppress", suppressed, X_train, y_train, out,
                                           args.retrain, config, suppress_info)
    print(f"suppress trained in {suppress['seconds']:.0f} s, sparsity "
          f"{suppress['sparsity']:.4f}", flush=True)
    with torch_seed(12345):
        judge_net, _ = train_or_load("judge", judge, X_train, y_train, out, args.retrain,
                                     config)

    models = {"normal": normal_net, "suppress": suppress_net}
    X_inv_orig, y_inv = X_test[:args.n_inversions], y_test[:args.n_inversions]
    rng = np.random.RandomState(0)
    members = rng.choice(len(X_train), min(args.n_membership, len(X_train)), replace=False)
    nonmembers = rng.choice(len(X_test), min(args.n_membership, len(X_test)), replace=False)
    rows, inversions = {}, {}
    for name, model in models.items():
        row = {"accuracy": float(np.mean(model.predict(X_test) == y_test))}
        attack = ImageInversionAttack(FrozenEstimator(model), layer="fc1", n_iter=args.n_iter,
                                      loss_weights=(1.0, 0.1, 5.0), random_state=0)
        start = time.perf_counter()
        features = extract_features(model, X_inv_orig, "fc1")  # the leaked features
        X_inv, history = attack.fit(X_inv_orig).invert(features, return_loss=True)
        row["inversion_seconds"] = time.perf_counter() - start
        inversions[name] = X_inv
        report = inversion_report(X_inv_orig, X_inv, y_inv, FrozenEstimator(judge_net))
        row.update(inversion_l2=report.l2, inversion_ssim=report.ssim,
                   judge_confidence=report.confidence,
                   inversion_loss_start=float(history[:, 0].mean()),
                   inversion_loss_end=float(history[:, -1].mean()))
        for signal in ("loss", "confidence"):
            mi = membership_inference(model, X_train[members], y_train[members],
                                      X_test[nonmembers], y_test[nonmembers], signal=signal)
            row[f"mi_{signal}_auc"], row[f"mi_{signal}_advantage"] = mi.auc, mi.advantage
        rows[name] = row
    for key in ("sparsity", "layer_sparsity", "n_suppress_ops"):
        rows["suppress"][key] = suppress[key]
    rows["normal"]["train_seconds"] = normal_record["seconds"]
    rows["suppress"]["train_seconds"] = suppress["seconds"]
    rows["judge_accuracy"] = float(np.mean(judge_net.predict(X_test) == y_test))
    rows["config"] = vars(args)

    tutorial = {"normal": (99.0, 0.83, 0.24, 0.95), "suppress": (97.45, 0.86, 0.26, 0.56)}
    print(f"\nLeNet5/MNIST, {args.epochs} epochs (suppress from epoch {args.start_epoch}), "
          f"{args.n_inversions} inversions at fc1 x {args.n_iter} iterations; "
          f"judge accuracy {rows['judge_accuracy']:.4f}")
    header = (f"{'model':<9} {'acc %':>7} {'(tut.)':>7} {'L2':>6} {'(tut.)':>6} {'SSIM':>6} "
              f"{'(tut.)':>6} {'judge':>6} {'(tut.)':>6} {'MI-loss AUC/adv':>16} "
              f"{'MI-conf AUC/adv':>16}")
    print(header)
    print("-" * len(header))
    for name in models:
        r, t = rows[name], tutorial[name]
        print(f"{name:<9} {100 * r['accuracy']:7.2f} {t[0]:7.2f} {r['inversion_l2']:6.3f} "
              f"{t[1]:6.2f} {r['inversion_ssim']:6.3f} {t[2]:6.2f} {r['judge_confidence']:6.3f} "
              f"{t[3]:6.2f} {r['mi_loss_auc']:8.3f}/{r['mi_loss_advantage']:.3f} "
              f"{r['mi_confidence_auc']:8.3f}/{r['mi_confidence_advantage']:.3f}")
    print(f"suppress sparsity {suppress['sparsity']:.4f} "
          f"({', '.join(f'{k} {v:.3f}' for k, v in suppress['layer_sparsity'].items())}); "
          f"{rows['suppress']['n_suppress_ops']} suppress operations")
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=float))

    from skrobust.plotting import plot_inversion_grid

    fig = plot_inversion_grid(X_inv_orig, inversions, n_images=min(10, args.n_inversions))
    fig.savefig(out / "inversions.png", dpi=120)
    print(f"figure and results saved under {out}/")


if __name__ == "__main__":
    main()
