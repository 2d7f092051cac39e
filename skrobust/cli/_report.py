"""What ``skrobust report`` runs: read the model and the data, evaluate, write, exit status."""

import sys
import time

import numpy as np

from ..evaluation import default_attacks, write_report
from ..utils import as_torch_model
from ._model import load_model


def load_data(data, *, n=None, data_home=None):
    """Evaluation data: ``"mnist"`` (the MNIST test split) or a ``.npz`` file with ``X`` and ``y``.

    ``.npz`` files are read with ``allow_pickle=False``.
    """
    if str(data).lower() == "mnist":
        from ..datasets import load_mnist

        X, y = load_mnist(split="test", data_home=data_home, download=False,
                          return_X_y=True)
    else:
        with np.load(data, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise ValueError(f"{data} lacks the arrays {sorted(missing)}; save it with "
                                 "np.savez(path, X=X, y=y).")
            X, y = archive["X"], archive["y"]
        X = X.reshape(len(X), -1).astype(np.float32)
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y


def resolve_bound(bound, X, side):
    """A command-line bound: a number, None, or "data" for the per-feature range of X."""
    if isinstance(bound, str) and bound.lower() == "data":
        return X.min(axis=0) if side == "min" else X.max(axis=0)
    return bound


def report_command(weights, model, *, module_kwargs=None, data="mnist", data_home=None,
                   n=500, eps=0.3, norm="inf", eps_values=None, n_iter=100, n_queries=1000,
                   clip_min=0.0, clip_max=1.0, output_dir="report", device="cpu",
                   random_state=0, verbose=1):
    """What ``skrobust report`` runs: load, evaluate, write the HTML and JSON files.

    The network comes from :func:`~skrobust.cli._model.load_model` (``model``,
    ``module_kwargs``, ``weights``), as in ``skrobust monitor``. ``clip_min`` and
    ``clip_max`` are numbers, None (no bound) or ``"data"`` (the per-feature minimum
    or maximum of the evaluated samples). ``verbose`` shows a progress bar per attack
    run and the summary. Returns the exit status: 0, 1 when a sanity check failed
    (the report is written either way, and the failure is printed to stderr even
    when ``verbose=0``), 2 when the network cannot be loaded (one ``error:`` line on
    stderr).
    """
    start = time.perf_counter()
    try:
        module = load_model(weights, model, module_kwargs=module_kwargs, device=device)
    except ValueError as exc:  # damaged or hostile weights: one line, like argparse
        print(f"skrobust report: error: {exc}", file=sys.stderr)
        return 2
    X, y = load_data(data, n=n, data_home=data_home)
    load_seconds = time.perf_counter() - start
    n_classes = as_torch_model(module).n_classes(X.shape[1])
    attacks = default_attacks(n_classes, n_iter=n_iter, norm=norm, n_queries=n_queries)
    for _, attack in attacks:
        attack.set_params(verbose=int(bool(verbose)))
    if eps_values is not None:
        eps_values = [float(e) for e in str(eps_values).split(",") if e.strip()]
    if verbose:
        print(f"{model} on {len(X)} samples: {len(attacks)} attacks "
              f"({', '.join(name for name, _ in attacks)}) at each budget > 0, "
              "each on the samples still standing", flush=True)
    report = write_report(module, X, y, output_dir, eps=eps, norm=norm, attacks=attacks,
                          eps_values=eps_values, clip_min=resolve_bound(clip_min, X, "min"),
                          clip_max=resolve_bound(clip_max, X, "max"),
                          model_name=str(model), random_state=random_state)
    d = report.data
    failed = d["sanity_checks_failed"]
    if verbose:
        robust = ("n/a" if d["robust_accuracy"] is None
                  else f"{100 * d['robust_accuracy']:.2f} %")
        print(f"{model} on {len(X)} samples, {d['norm']} eps={d['eps']:g}: clean "
              f"{100 * d['clean_accuracy']:.2f} %, robust {robust}"
              + (f" (sanity checks FAILED: {', '.join(failed)})" if failed else ""))
        timing = {"loading": load_seconds, **d["timing"]}
        print("time: " + ", ".join(f"{step.replace('_', ' ')} {seconds:.1f} s"
                                   for step, seconds in timing.items()))
        print(f"wrote {report.html} and {report.json}")
    if failed:
        print(f"skrobust report: sanity check(s) failed: {', '.join(failed)}; the robust "
              f"accuracy is probably too optimistic (details in {report.html})",
              file=sys.stderr)
        return 1
    return 0
