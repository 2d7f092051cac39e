"""Robust accuracy you can trust: evaluate_robustness against torchattacks, model by model.

A panel of LeNet5 models on MNIST at Linf eps=0.3:

- a plain CNN (SGD with momentum, MindArmour's recipe);
- PGD adversarial training (Madry et al.) and fast FGSM training (Wong et al.),
  both fine-tuning the plain CNN (a CPU-sized budget from scratch collapses);
- NAD: the plain CNN fine-tuned on half-FGSM batches (it masks gradients);
- the plain CNN wrapped three ways, same argmax, broken gradients: logits x 1000,
  ``log(clamp(softmax(1000 z), 1e-6))`` and inputs rounded to 16 grey levels.
  The last two declare their wrapper non-differentiable (the attribute
  ``skrobust_non_differentiable = True``), as a user would.

On the same images each model is attacked three times:

1. ``evaluate_robustness`` with its defaults (the ensemble, the sanity checks and,
   when they detect masking, the escalation);
2. torchattacks' AutoAttack components at 100 steps in AutoAttack's order (APGD-CE,
   APGD-T with 9 targets, FAB-T, Square with 5000 queries), each on the images
   still standing;
3. ``torchattacks.AutoAttack(version="standard")``;
4. skrobust's FAB-T at AutoAttack's 100 steps on the images ours leaves standing:
   the default ensemble runs FAB-T at 10 steps only, and this column says whether
   it needed the long run (the images it would fool on top).

Printed per model: clean and robust accuracy of each, seconds, and the per-image
disagreements: images ours leaves standing that a reference fooled (ours weaker)
and the reverse. Target: ours never more than 1 image in 500 above the best
reference, in no more wall time than AutoAttack standard. With ``--repeats r`` ours
and AutoAttack standard each run ``r`` times, interleaved (the order alternates),
and their seconds are medians (a shared machine's load drifts). A JSON file holds
it all.

Small CPU configuration (minutes on 1 thread)::

    SKROBUST_DATA=../shared/data python benchmarks/evaluation.py --n-images 200 \\
        --n-train 10000 --epochs 2 --at-epochs 1 --output evaluation_panel.json
"""

import argparse
import copy
import json
import time
import warnings
from collections import OrderedDict

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from torch import nn

from skrobust._demo import load_demo_data
from skrobust.attacks import FABTransformer
from skrobust.evaluation import RobustnessWarning, evaluate_robustness
from skrobust.models import LeNet5
from skrobust.models._skorch import fit_net

EPS = 0.3


class Scaled(nn.Module):
    """Logits times 1000: same argmax, saturated softmax (not declared)."""

    def forward(self, z):
        return 1000 * z


class LogClamp(nn.Module):
    """A clamped log-softmax of the logits times 1000: flat scores."""

    skrobust_non_differentiable = True

    def forward(self, z):
        return torch.log(torch.clamp(torch.softmax(1000 * z, dim=1), min=1e-6))


class Quantise(nn.Module):
    """Inputs rounded to 16 grey levels: zero input gradients."""

    skrobust_non_differentiable = True

    def forward(self, x):
        return torch.round(x * 15) / 15


class FromImage(nn.Module):
    """torchattacks works on (n, 1, 28, 28) images; our models take flat rows."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x.flatten(1))


def lenet(epochs):
    """MindArmour's LeNet5 recipe: SGD with momentum 0.9, batches of 32."""
    return NeuralNetClassifier(LeNet5, criterion=nn.CrossEntropyLoss,
                               optimizer=torch.optim.SGD, lr=0.01, optimizer__momentum=0.9,
                               batch_size=32, max_epochs=epochs, train_split=None,
                               iterator_train__shuffle=True, verbose=0)


def train_panel(X, y, args, names=None):
    """The panel's modules (eval mode); only ``names`` are trained (all if None).

    The adversarially trained models fine-tune (a copy of) the plain CNN for
    ``--at-epochs`` epochs, as NAD does: from scratch at eps=0.3 a CPU-sized budget
    collapses to a constant prediction.
    """
    from skrobust.attacks import FGSMTransformer, PGDTransformer
    from skrobust.defenses import AdversarialTrainer

    plain = fit_net(lenet(args.epochs), X, y, args.seed)
    cnn = plain.module_.eval()

    def from_plain(lr=0.01):
        net = copy.deepcopy(plain).set_params(max_epochs=args.at_epochs, lr=lr)
        return FrozenEstimator(net)

    k = args.train_steps
    pgd_at = PGDTransformer(eps=EPS, step_size=2.5 * EPS / k, n_iter=k, random_start=True)
    fast_fgsm = PGDTransformer(eps=EPS, step_size=1.25 * EPS, n_iter=1, random_start=True)
    seed = args.seed
    recipes = OrderedDict([
        # PGD and fast FGSM at eps=0.3 collapse at lr=0.01 within an epoch
        ("PGD-AT", lambda: AdversarialTrainer(from_plain(1e-3), attack=pgd_at,
                                              random_state=seed)),
        ("fast FGSM AT", lambda: AdversarialTrainer(from_plain(1e-3), attack=fast_fgsm,
                                                    random_state=seed)),
        ("NAD", lambda: AdversarialTrainer(from_plain(), attack=FGSMTransformer(eps=EPS),
                                           replace_ratio=0.5, random_state=seed)),
    ])
    panel = OrderedDict(plain=cnn)
    for name, recipe in recipes.items():
        if names is not None and name not in names:
            continue
        start = time.perf_counter()
        trainer = recipe().fit(X, y)
        print(f"trained {name} in {time.perf_counter() - start:.0f} s", flush=True)
        panel[name] = trainer.estimator_.module_.eval()
    panel["plain x1000 logits"] = nn.Sequential(OrderedDict(net=cnn, scale=Scaled())).eval()
    panel["plain log-clamp"] = nn.Sequential(
        OrderedDict(net=cnn, log_clamp=LogClamp())).eval()
    panel["plain 16-level input"] = nn.Sequential(
        OrderedDict(quantise=Quantise(), net=cnn)).eval()
    if names is not None:
        panel = OrderedDict((k, v) for k, v in panel.items() if k in names)
    return panel


def predict(module, X, batch_size=500):
    with torch.no_grad():
        return np.concatenate([module(torch.as_tensor(X[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(X), batch_size)])


def torchattacks_components(module, X, y, seed, steps=100):
    """AutoAttack's four attacks, in order, each on the images standing; ``steps=10``
    is torchattacks' ``AutoAttack(version="standard")`` attack by attack."""
    import torchattacks

    model = FromImage(module).eval()
    images = torch.as_tensor(X).view(-1, 1, 28, 28)
    labels = torch.as_tensor(y)
    attacks = [
        ("APGD-CE", torchattacks.APGD(model, eps=EPS, steps=steps, loss="ce", seed=seed)),
        ("APGD-T", torchattacks.APGDT(model, eps=EPS, steps=steps, n_classes=10, seed=seed)),
        ("FAB-T", torchattacks.FAB(model, eps=EPS, steps=steps, multi_targeted=True,
                                   n_classes=10, seed=seed)),
        ("Square", torchattacks.Square(model, eps=EPS, n_queries=5000, seed=seed)),
    ]
    standing = predict(module, X) == y
    per_attack = {}
    for name, attack in attacks:
        index = np.flatnonzero(standing)
        start = time.perf_counter()
        if len(index):
            adv = attack(images[index], labels[index]).detach()
            adv = adv.reshape(len(index), -1).numpy()
            adv = np.clip(adv, np.maximum(X[index] - EPS, 0), np.minimum(X[index] + EPS, 1))
            standing[index[predict(module, adv) != y[index]]] = False
        per_attack[name] = dict(robust_accuracy=float(standing.mean()),
                                seconds=time.perf_counter() - start)
    return standing, per_attack


def autoattack_standard(module, X, y, seed):
    import torchattacks

    model = FromImage(module).eval()
    attack = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard",
                                     n_classes=10, seed=seed)
    adv = attack(torch.as_tensor(X).view(-1, 1, 28, 28), torch.as_tensor(y))
    adv = adv.detach().reshape(len(X), -1).numpy()
    adv = np.clip(adv, np.maximum(X - EPS, 0), np.minimum(X + EPS, 1))
    return (predict(module, X) == y) & (predict(module, adv) == y)


def fab_after(module, X, y, standing, seed):
    """How many of the images ours leaves standing AutoAttack's FAB-T (100 steps, 9
    targets) fools on top."""
    index = np.flatnonzero(standing)
    if len(index) == 0:
        return 0
    fab = FABTransformer(module, eps=EPS, n_iter=100, random_state=seed)
    adv = fab.fit(X[index], y[index]).transform(X[index])
    return int(np.sum(predict(module, adv) != y[index]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def interleaved(jobs, repeats):
    """Run each of ``jobs`` (name -> callable) ``repeats`` times, the order rotating
    every round; return the first round's outputs and the median seconds of each."""
    names = list(jobs)
    outputs, seconds = {}, {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out, t = timed(jobs[name])
            outputs.setdefault(name, out)
            seconds[name].append(t)
    return outputs, {name: float(np.median(t)) for name, t in seconds.items()}


def compare(name, module, X, y, args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RobustnessWarning)
        outputs, medians = interleaved({
            "ours": lambda: evaluate_robustness(module, X, y, eps=EPS, random_state=args.seed),
            "standard": lambda: autoattack_standard(module, X, y, args.seed)}, args.repeats)
    ours, standard = outputs["ours"], outputs["standard"]
    t_ours, t_aa = medians["ours"], medians["standard"]
    caught = [w for w in caught if issubclass(w.category, RobustnessWarning)]
    (components, per_attack), t_comp = timed(
        lambda: torchattacks_components(module, X, y, args.seed))
    standard_per_attack = None
    if args.standard_per_attack:  # where AutoAttack standard's time goes
        standard_per_attack = torchattacks_components(module, X, y, args.seed, steps=10)[1]
    fab_extra, t_fab = timed(lambda: fab_after(module, X, y, ours.robust, args.seed))
    best = components & standard  # the best reference, image by image
    row = {
        "model": name,
        "n_images": len(X),
        "clean_accuracy": ours.clean_accuracy,
        "ours": {"robust_accuracy": ours.robust_accuracy, "seconds": t_ours,
                 "plain_robust_accuracy": ours.plain_robust_accuracy,
                 "per_attack": {k: {"robust_accuracy": ours.accuracy[k],
                                    "n_attacked": ours.n_attacked[k],
                                    "seconds": ours.seconds_per_attack[k]}
                                for k in ours.attacks},
                 "escalations": ours.escalations,
                 "failed_checks": [c.name for c in ours.sanity_checks if c.passed is False],
                 "warnings": len(caught) // args.repeats},
        "torchattacks_components_100": {"robust_accuracy": float(components.mean()),
                                        "seconds": t_comp, "per_attack": per_attack},
        "autoattack_standard": {"robust_accuracy": float(standard.mean()), "seconds": t_aa,
                                "per_attack": standard_per_attack},
        "best_reference_robust_accuracy": float(best.mean()),
        # does the ensemble need AutoAttack's 100-step FAB-T? (its 10-step run is in it)
        "fab_t_100_after_ours": {"fooled": fab_extra, "seconds": t_fab},
        "ours_standing_reference_fooled": {
            "components_100": int(np.sum(ours.robust & ~components)),
            "autoattack_standard": int(np.sum(ours.robust & ~standard)),
            "best": int(np.sum(ours.robust & ~best))},
        "reference_standing_ours_fooled": {
            "components_100": int(np.sum(~ours.robust & components)),
            "autoattack_standard": int(np.sum(~ours.robust & standard))},
    }
    excess = ours.robust.sum() - best.sum()
    row["target_met"] = bool(excess <= len(X) / 500 and t_ours <= t_aa)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=200, help="test images attacked (200)")
    p.add_argument("--n-train", type=int, default=10000, help="training images (10000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the plain CNN (2)")
    p.add_argument("--at-epochs", type=int, default=1,
                   help="epochs of PGD-AT, fast FGSM AT and NAD fine-tuning (1)")
    p.add_argument("--train-steps", type=int, default=7, help="PGD-AT steps (7)")
    p.add_argument("--models", default=None,
                   help="comma-separated subset of the panel (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--standard-per-attack", action="store_true",
                   help="also time AutoAttack standard's four attacks one by one (its "
                        "10 steps), each on the images standing: per_attack in the JSON")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed runs of ours and AutoAttack standard, interleaved (the "
                        "median is reported; 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--output", default="evaluation_panel.json", help="JSON file")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give 1 or more timed runs")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    X_train, y_train, X_test, y_test, source = load_demo_data(args.data_home, args.n_train,
                                                              None, args.seed)
    X = np.ascontiguousarray(X_test[:args.n_images], dtype=np.float32)
    y = np.asarray(y_test[:args.n_images], dtype=np.int64)
    print(f"data: {source}; {len(X_train)} training images; {len(X)} test images; "
          f"eps={EPS}; torch threads {args.threads}", flush=True)
    names = None if not args.models else [m.strip() for m in args.models.split(",")]
    panel = train_panel(X_train, y_train, args, names)
    rows = []
    header = (f"{'model':<26} {'clean':>6} {'ours':>6} {'comp100':>7} {'AA-std':>6} "
              f"{'best':>6} {'ours>best':>9} {'+FAB100':>7} {'t ours':>7} {'t comp':>7} {'t AA':>6}")
    print(header, flush=True)
    for name, module in panel.items():
        row = compare(name, module, X, y, args)
        rows.append(row)
        print(f"{name:<26} {100 * row['clean_accuracy']:6.1f} "
              f"{100 * row['ours']['robust_accuracy']:6.1f} "
              f"{100 * row['torchattacks_components_100']['robust_accuracy']:7.1f} "
              f"{100 * row['autoattack_standard']['robust_accuracy']:6.1f} "
              f"{100 * row['best_reference_robust_accuracy']:6.1f} "
              f"{row['ours_standing_reference_fooled']['best']:9d} "
              f"{row['fab_t_100_after_ours']['fooled']:7d} "
              f"{row['ours']['seconds']:7.1f} "
              f"{row['torchattacks_components_100']['seconds']:7.1f} "
              f"{row['autoattack_standard']['seconds']:6.1f}", flush=True)
        if row["ours"]["escalations"]:
            print(f"{'':<26} escalated: " + ", ".join(
                e["attack"] for e in row["ours"]["escalations"]), flush=True)
        with open(args.output, "w") as f:  # after every model: a partial run is kept
            json.dump({"config": vars(args), "data": source, "eps": EPS, "rows": rows}, f,
                      indent=2)
    print(f"\nJSON: {args.output}; targets met on "
          f"{sum(r['target_met'] for r in rows)} of {len(rows)} models")


if __name__ == "__main__":
    main()
