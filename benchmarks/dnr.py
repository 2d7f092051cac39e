"""DNRClassifier costs: fit overhead over its SVM fits, predict throughput, attack cost.

Measured in one run, interleaved and repeated, medians reported. Times are the
CPU time of this single-threaded process (``time.process_time``; torch runs on
``--threads`` threads, 1 by default), so a loaded machine does not distort them:

* fit: ``DNRClassifier.fit`` (frozen LeNet-5) against the same sequence of SVM fits
  alone on precomputed features (cross-validated layer scores, final layer SVMs,
  combiner folds and final combiner); the difference is feature extraction,
  standardisation and bookkeeping, and should stay under 10 %;
* predict: samples per second of ``dnr.predict`` and of the CNN alone;
* attack: seconds per iteration and sample of PGD-L2 with exponential line search
  (and of fixed-step PGD-L2) against DNR and against the CNN alone, with the
  per-sample gradient and forward evaluations per iteration;
* adaptive: CPU seconds per sample of the two-stage
  :class:`~skrobust.attacks.AdaptiveRejectionTransformer` against DNR (same
  iterations per stage, 3 target classes, mimicry pool: DNR's training digits),
  and the accuracy it leaves (rejection = correct) beside PGDExp's.

Run::

    python benchmarks/dnr.py --n-train 1000 --repeats 3
"""

import argparse
import time

import numpy as np
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold
from skorch import NeuralNetClassifier
from torch import nn

from skrobust.attacks import AdaptiveRejectionTransformer, PGDExpTransformer, PGDTransformer
from skrobust.datasets import load_mnist
from skrobust.defenses import DNRClassifier
from skrobust.defenses._dnr import _ovr
from skrobust.metrics import robust_accuracy_with_rejection_score
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net
from skrobust.utils import extract_features


def svm_fits_alone(dnr, features, y):
    """The SVM fits DNR.fit performs, on precomputed standardised features."""
    folds = list(StratifiedKFold(dnr.cv, shuffle=True, random_state=dnr.seed_).split(
        features[dnr.layers_[0]], y))
    oof = []
    for name in dnr.layers_:
        Z = features[name]
        template = _ovr(clone(dnr.layer_clfs_[name].estimator), Z)
        scores = np.empty((len(Z), len(dnr.classes_)))
        for train, test in folds:
            scores[test] = clone(template).fit(Z[train], y[train]).decision_function(Z[test])
        clone(template).fit(Z, y)
        oof.append(scores)
    Z = np.hstack(oof)
    template = _ovr(clone(dnr.combiner_.estimator), Z)
    for train, test in folds:
        clone(template).fit(Z[train], y[train]).decision_function(Z[test])
    clone(template).fit(Z, y)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-attack", type=int, default=50)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y = load_mnist(split="test", return_X_y=True)  # embedded: always available
    net = NeuralNetClassifier(LeNet5, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, max_epochs=2,
                              batch_size=128, train_split=None, verbose=0)
    fit_net(net, X[:4000], y[:4000], seed=0)
    X_dnr, y_dnr = X[4000:4000 + args.n_train], y[4000:4000 + args.n_train]
    X_eval, y_eval = X[8000:8000 + args.n_attack], y[8000:8000 + args.n_attack]
    dnr = DNRClassifier(FrozenEstimator(net), cv=3, random_state=0)

    # ---- fit overhead (interleaved: DNR fit, then the SVM fits alone, repeated)
    fit_times, svm_times = [], []
    for _ in range(args.repeats):
        start = time.process_time()
        dnr.fit(X_dnr, y_dnr)
        fit_times.append(time.process_time() - start)
        features = extract_features(dnr.estimator_, X_dnr, dnr.layers_)
        features = {name: dnr.layer_scalers_[name].transform(f.astype(np.float64))
                    for name, f in features.items()}
        start = time.process_time()
        svm_fits_alone(dnr, features, y_dnr)
        svm_times.append(time.process_time() - start)
    fit_s, svm_s = np.median(fit_times), np.median(svm_times)
    n_sv = {name: sum(len(e.support_) for e in clf.estimators_)
            for name, clf in dnr.layer_clfs_.items()}
    print(f"DNR on {args.n_train} samples, layers {dnr.layers_}, support vectors {n_sv}")
    print(f"fit: DNR {fit_s:.2f} s, SVM fits alone {svm_s:.2f} s, overhead "
          f"{100 * (fit_s / svm_s - 1):.1f} %")

    # ---- predict throughput (interleaved)
    X_pred = X[:2000]
    t_dnr, t_cnn = [], []
    for _ in range(args.repeats):
        t_dnr.append(median_time(lambda: dnr.predict(X_pred), 1))
        t_cnn.append(median_time(lambda: net.predict(X_pred), 1))
    print(f"predict: DNR {len(X_pred) / np.median(t_dnr):.0f} samples/s, CNN "
          f"{len(X_pred) / np.median(t_cnn):.0f} samples/s, ratio "
          f"{np.median(t_dnr) / np.median(t_cnn):.1f}x")

    # ---- attack cost per iteration (interleaved over victims and attacks)
    kwargs = dict(eps=2.0, n_iter=args.n_iter, batch_size=args.n_attack)
    rows = {}
    for _ in range(args.repeats):
        for victim_name, victim in (("DNR", dnr), ("CNN", net)):
            for attack_name, attack in (
                    ("PGDExp", PGDExpTransformer(FrozenEstimator(victim), step_size=0.1,
                                                 **kwargs)),
                    ("PGD-L2", PGDTransformer(FrozenEstimator(victim), norm=2,
                                              step_size=0.1, **kwargs))):
                attack.fit(X_eval, y_eval)
                start = time.process_time()
                if attack_name == "PGDExp":
                    _, history = attack.generate_with_history(X_eval, y_eval)
                    evals = (history.n_gradients, history.n_forwards)
                else:
                    attack.generate(X_eval, y_eval)
                    evals = (args.n_iter * args.n_attack, 0)
                seconds = time.process_time() - start
                rows.setdefault((victim_name, attack_name), []).append((seconds, *evals))
    print(f"attack ({args.n_attack} samples, {args.n_iter} iterations, eps=2):")
    for (victim_name, attack_name), values in rows.items():
        seconds, grads, fwds = np.median(np.array(values), axis=0)
        per = seconds / (args.n_iter * args.n_attack)
        print(f"  {attack_name:7s} vs {victim_name}: {1e3 * per:.2f} ms per iteration and "
              f"sample; {grads / (args.n_iter * args.n_attack):.2f} gradients and "
              f"{fwds / (args.n_iter * args.n_attack):.2f} forward passes per iteration "
              "and sample")
    dnr_exp = np.median([v[0] for v in rows[("DNR", "PGDExp")]])
    cnn_exp = np.median([v[0] for v in rows[("CNN", "PGDExp")]])
    print(f"  attacking DNR costs {dnr_exp / cnn_exp:.1f}x attacking the CNN (PGDExp)")

    # ---- the adaptive attack: cost per sample and what it leaves, beside PGDExp
    pgd_exp = PGDExpTransformer(FrozenEstimator(dnr), step_size=0.1, early_stop=True, **kwargs)
    adaptive = AdaptiveRejectionTransformer(FrozenEstimator(dnr), norm=2, n_target_classes=3,
                                            random_state=0, **kwargs)
    accuracy, seconds = {}, {}
    for name, attack, pool in (("PGDExp", pgd_exp, (X_eval, y_eval)),
                               ("adaptive", adaptive, (X_dnr, y_dnr))):
        attack.fit(*pool)
        start = time.process_time()
        X_adv = attack.generate(X_eval, y_eval)
        seconds[name] = time.process_time() - start
        accuracy[name] = robust_accuracy_with_rejection_score(y_eval, dnr.predict(X_adv))
    print(f"adaptive attack vs DNR ({args.n_iter} iterations per stage, 3 targets): "
          f"{seconds['adaptive'] / args.n_attack:.2f} s per sample "
          f"(PGDExp with early stop {seconds['PGDExp'] / args.n_attack:.2f} s); accuracy "
          f"(rejection = correct) {accuracy['adaptive']:.3f} (PGDExp {accuracy['PGDExp']:.3f})")


if __name__ == "__main__":
    main()
