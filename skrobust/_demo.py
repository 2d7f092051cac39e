"""The main job: LeNet5 on MNIST broken by FGSM, as in MindArmour's NAD tutorial."""

import time

import numpy as np
import torch
from torch import nn

from .attacks import FGSMTransformer
from .datasets import load_mnist
from .evaluation import evaluate_attack, format_attack_table
from .models import LeNet5
from .models._skorch import fit_net

# the tutorial's figures on full MNIST after 10 epochs
TUTORIAL = dict(clean_accuracy=0.989, adversarial_accuracy=0.052, misclassification_rate=0.948,
                acac=0.80, actc=0.04, linf=0.30, ssim=0.33)


def load_demo_data(data_home=None, n_train=None, n_test=None, random_state=0):
    """Full MNIST when a data root has the training set, else the embedded 10k split 8k/2k."""
    try:
        X_train, y_train = load_mnist(split="train", data_home=data_home, download=False,
                                      return_X_y=True)
        X_test, y_test = load_mnist(split="test", data_home=data_home, return_X_y=True)
        source = "full MNIST (60k train / 10k test)"
    except FileNotFoundError:
        X, y = load_mnist(split="test", return_X_y=True)
        order = np.random.RandomState(random_state).permutation(len(X))
        X_train, y_train = X[order[:8000]], y[order[:8000]]
        X_test, y_test = X[order[8000:]], y[order[8000:]]
        source = "embedded MNIST test set split 8k train / 2k test"
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    if n_test is not None:
        X_test, y_test = X_test[:n_test], y_test[:n_test]
    return X_train, y_train, X_test, y_test, source


def demo_net(module=LeNet5, *, epochs=10, device="cpu", verbose=0):
    """The tutorial's training recipe: SGD lr 0.01, momentum 0.9, batch 32, logits."""
    from skorch import NeuralNetClassifier

    return NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.01,
        optimizer__momentum=0.9, batch_size=32, max_epochs=epochs, train_split=None,
        iterator_train__shuffle=True, device=device, verbose=verbose,
    )


def run_demo(*, epochs=10, eps=0.3, data_home=None, n_train=None, n_test=None,
             output="skrobust_demo.png", save_model=None, save_detector=None,
             save_batches=None, device="cpu", random_state=0, verbose=1):
    """Train LeNet5, attack it with FGSM, print the table and save the figure.

    Results (data source, training time, the table, saved paths) are always
    printed; ``verbose`` controls progress only (skorch's epoch table, the FGSM
    progress bar).

    Parameters
    ----------
    save_model : str, path-like or None, default=None
        Where to save the trained network's ``state_dict`` (``torch.save``), the file
        ``skrobust report --model lenet5`` and ``skrobust monitor --module`` load.
    save_detector : str, path-like or None, default=None
        Where to save an :class:`~skrobust.detection.MMDDriftDetector` on the
        network's ``relu3`` layer (:func:`~skrobust.detection.save_detector`), fitted
        on a random half of the test images (an i.i.d. sample: MNIST's test set is in
        writer order), at most 1,000 of them.
    save_batches : str, path-like or None, default=None
        A folder that receives two batches of 200 images from the other half of the
        test set for ``skrobust monitor``: ``clean.npy`` and ``fgsm.npy`` (their FGSM
        examples).

    Returns
    -------
    result : Bunch
        The :func:`~skrobust.evaluation.evaluate_attack` result, plus ``source``,
        ``train_seconds``, and the saved paths (or None) ``figure``, ``model``,
        ``detector`` and ``batches``.
    """
    X_train, y_train, X_test, y_test, source = load_demo_data(data_home, n_train, n_test,
                                                              random_state)
    print(f"data: {source}")
    net = demo_net(epochs=epochs, device=device, verbose=verbose)
    start = time.perf_counter()
    fit_net(net, X_train, y_train, random_state)
    train_seconds = time.perf_counter() - start
    print(f"training: {epochs} epochs on {len(X_train)} images in {train_seconds:.1f} s "
          f"({torch.get_num_threads()} torch thread(s))")
    attack = FGSMTransformer(eps=eps, batch_size=256, verbose=verbose)
    result = evaluate_attack(net, X_test, y_test, attack)
    result.source, result.train_seconds = source, train_seconds
    print(format_attack_table(result, title=f"\nLeNet5 on MNIST, FGSM eps={eps}, "
                                            f"{len(X_test)} test images"))
    print("\nMindArmour's tutorial: clean 98.9 %, adversarial 5.2 %, misclassification "
          "94.8 %, ACAC 0.80, ACTC 0.04, linf 0.30, SSIM 0.33")
    result.model = None
    if save_model:
        torch.save(net.module_.state_dict(), save_model)
        result.model = str(save_model)
        print(f"model saved to {save_model} (state_dict; skrobust report {save_model} "
              "--model lenet5)")
    result.detector = result.batches = None
    if save_detector or save_batches:
        order = np.random.RandomState(random_state).permutation(len(X_test))
        reference, incoming = order[:min(len(order) // 2, 1000)], order[len(order) // 2:]
        if save_detector:
            from sklearn.frozen import FrozenEstimator

            from .detection import MMDDriftDetector, save_detector as save

            detector = MMDDriftDetector(FrozenEstimator(net), layers="relu3",
                                        random_state=random_state).fit(X_test[reference])
            save(detector, save_detector)
            result.detector = str(save_detector)
            print(f"drift detector saved to {save_detector} (layer relu3, "
                  f"{len(reference)} reference images)")
        if save_batches:
            from pathlib import Path

            folder = Path(save_batches)
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / "clean.npy", X_test[incoming[:200]])
            np.save(folder / "fgsm.npy", result.X_adv[incoming[:200]])
            result.batches = str(folder)
            print(f"batches clean.npy and fgsm.npy ({min(200, len(incoming))} images "
                  f"each) saved to {folder}")
    result.figure = None
    if output:
        from .plotting import plot_adversarial_grid

        fig = plot_adversarial_grid(X_test, result.X_adv, y_test, result.y_pred,
                                    result.y_pred_adv, n_images=10)
        fig.suptitle(f"FGSM eps={eps}: clean (top) vs adversarial (bottom)")
        fig.tight_layout()
        fig.savefig(output, dpi=120)
        import matplotlib.pyplot as plt

        plt.close(fig)
        result.figure = str(output)
        print(f"figure saved to {output}")
    return result
