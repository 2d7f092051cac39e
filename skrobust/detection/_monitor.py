"""Saving a fitted detector safely and the monitoring job behind ``skrobust monitor``.

File format of :func:`save_detector` (``.npz``, read with ``allow_pickle=False``,
so loading a file never runs code):

- ``meta``: a 0-d unicode array holding JSON: ``format`` (``"skrobust.MMDDriftDetector"``),
  ``version`` (1), ``params`` (the detector's parameters except ``estimator``),
  ``layers``, ``gamma`` (per layer), ``seed``, ``n_features_in``, ``has_estimator``;
- ``ref_<i>``: the reference representations of the ``i``-th layer;
- ``mean_<i>``, ``scale_<i>``: the reference moments when ``standardize=True``;
- ``ref_classes``: the predicted reference classes when ``class_matched=True``.

The network of a detector built on layer representations is not stored: save its
weights with ``torch.save(module.state_dict(), path)``, rebuild the module from
trusted code and load them with ``torch.load(path, weights_only=True)``, then pass
it to :func:`load_detector` (the command line does this with ``--module`` and
``--weights``).
"""

import json
import numbers
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._mmd import MMDDriftDetector

FORMAT, VERSION = "skrobust.MMDDriftDetector", 1
_PARAMS = ("layer", "kernel", "gamma", "standardize", "class_matched", "n_permutations",
           "alpha", "batch_size", "block_size", "device", "random_state")


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def save_detector(detector, path):
    """Save a fitted :class:`MMDDriftDetector` to a ``.npz`` file (no pickle).

    Parameters
    ----------
    detector : MMDDriftDetector
        A fitted detector. Its network, if any, is not saved (see the module notes).
    path : str or path-like
        Destination; ``.npz`` is appended by numpy when missing.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skrobust.detection import MMDDriftDetector, save_detector, load_detector
    >>> X = np.random.RandomState(0).randn(50, 3)
    >>> detector = MMDDriftDetector(random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "detector.npz")
    >>> save_detector(detector, path)
    >>> load_detector(path).score(X[:20]) == detector.score(X[:20])
    True
    """
    if not isinstance(detector, MMDDriftDetector):
        raise TypeError("save_detector expects an MMDDriftDetector, got "
                        f"{type(detector).__name__}.")
    check_is_fitted(detector)
    params = {name: _jsonable(getattr(detector, name)) for name in _PARAMS}
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # a RandomState instance: seed_ is what matters
    params["device"] = str(params["device"])
    layers = detector.layers_
    meta = {
        "format": FORMAT, "version": VERSION, "params": params, "layers": layers,
        "gamma": {n: float(g) for n, g in detector._as_dict(detector.gamma_).items()},
        "seed": int(detector.seed_), "n_features_in": int(detector.n_features_in_),
        "has_estimator": detector.estimator_ is not None,
    }
    arrays = {"meta": np.array(json.dumps(meta))}
    refs = detector._as_dict(detector.X_ref_)
    for i, name in enumerate(layers):
        arrays[f"ref_{i}"] = refs[name]
        if detector.standardize:
            arrays[f"mean_{i}"] = detector._as_dict(detector.feature_mean_)[name]
            arrays[f"scale_{i}"] = detector._as_dict(detector.feature_scale_)[name]
    if detector.ref_classes_ is not None:
        arrays["ref_classes"] = detector.ref_classes_
    np.savez(path, **arrays)


def load_detector(path, estimator=None):
    """Load a detector saved by :func:`save_detector`, without unpickling anything.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.
    estimator : torch.nn.Module, fitted skorch net or FrozenEstimator, default=None
        The network the detector was fitted with; required when it had one.

    Returns
    -------
    detector : MMDDriftDetector
        A fitted detector.

    Raises
    ------
    ValueError
        If the file is not a saved detector, or the network is missing.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError,
            TypeError) as exc:
        raise ValueError(f"Cannot read a saved detector from {path}: {exc}") from exc
    try:
        meta = json.loads(str(arrays["meta"]))
        ok = meta.get("format") == FORMAT and {"version", "has_estimator"} <= set(meta)
    except (KeyError, ValueError, AttributeError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is not a detector saved by skrobust.detection.save_detector.")
    if meta["version"] != VERSION:
        raise ValueError(f"{path} uses format version {meta['version']}; this skrobust "
                         f"reads version {VERSION}.")
    if meta["has_estimator"] and estimator is None:
        raise ValueError(
            f"{path} was fitted on layers {meta['layers']} of a network; pass the same "
            "trained network as estimator= (on the command line: --module and --weights).")
    if not meta["has_estimator"] and estimator is not None:
        raise ValueError(f"{path} was fitted without a network; do not pass estimator=.")
    try:
        return _build_detector(meta, arrays, estimator)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid saved detector: {exc!r}") from exc


def _build_detector(meta, arrays, estimator):
    params = {name: meta["params"][name] for name in _PARAMS}
    detector = MMDDriftDetector(estimator, **params)
    detector._check_params()
    layers = [str(name) for name in meta["layers"]]
    detector.layers_ = layers
    detector.estimator_ = estimator
    detector.seed_ = int(meta["seed"])
    detector.n_features_in_ = int(meta["n_features_in"])
    detector.gamma_ = detector._from_dict({n: float(meta["gamma"][n]) for n in layers})
    detector.X_ref_ = detector._from_dict(
        {n: arrays[f"ref_{i}"] for i, n in enumerate(layers)})
    if detector.standardize:
        detector.feature_mean_ = detector._from_dict(
            {n: arrays[f"mean_{i}"] for i, n in enumerate(layers)})
        detector.feature_scale_ = detector._from_dict(
            {n: arrays[f"scale_{i}"] for i, n in enumerate(layers)})
    else:
        detector.feature_mean_ = detector.feature_scale_ = None
    detector.ref_classes_ = arrays.get("ref_classes")
    return detector


def _load_batch(path, n_features):
    """A 2-D float batch from a .npy/.npz file, or a ValueError saying what is wrong."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "X" in data.files:
                    X = data["X"]
                elif len(data.files) == 1:
                    X = data[data.files[0]]
                else:
                    raise ValueError(f"holds arrays {data.files}; name the batch 'X'")
        else:
            X = np.asarray(data)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable batch (not a valid .npy/.npz array file; pickled "
                         f"data is never loaded): {exc}") from exc
    if X.ndim >= 2 and X.ndim != 2 and int(np.prod(X.shape[1:])) == n_features:
        X = X.reshape(len(X), -1)  # images (n, 28, 28) for a detector on 784 features
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"batch of shape {X.shape}; expected (n_samples, {n_features})")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"batch of dtype {X.dtype}; expected numbers")
    return X


def _plot_history(records, path, alpha):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ok = [r for r in records if r["status"] == "ok"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    index = np.arange(len(ok))
    p = np.array([r["p_value"] for r in ok])
    drift = np.array([r["is_drift"] for r in ok], dtype=bool)
    ax1.scatter(index[~drift], p[~drift], c="tab:blue", s=15, label="no drift")
    ax1.scatter(index[drift], p[drift], c="tab:red", s=15, label="drift")
    ax1.axhline(alpha, color="grey", ls="--", lw=1, label=f"alpha={alpha:g}")
    ax1.set_yscale("log")
    ax1.set_ylabel("p-value")
    ax1.legend(fontsize=7)
    rate = np.cumsum(drift) / np.maximum(index + 1, 1)
    ax2.plot(index, rate, color="tab:red")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("detection rate (running)")
    ax2.set_xlabel("batch")
    if len(ok) <= 20:
        ax2.set_xticks(index, [r["batch"] for r in ok], rotation=45, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _read_history(path):
    if not path.exists():
        return []
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a truncated line from an interrupted run
    return records


def run_monitor(detector, batch_dir, output_dir, *, top_k=100, rescan=False, verbose=0):
    """Score every new batch file of a folder and keep a history and a figure.

    For each ``.npy`` / ``.npz`` file of ``batch_dir`` (sorted by name; an ``.npz``
    holds the batch as ``X`` or as its only array; images are flattened), the
    detector's :meth:`~MMDDriftDetector.test` and
    :meth:`~MMDDriftDetector.top_k_suspicious` are run and a JSON report is written
    to ``output_dir/reports/<file name>.json``: ``batch``, ``timestamp`` (UTC, ISO
    8601), ``status`` (``"ok"`` or ``"error"``), ``n_samples``, ``statistic``,
    ``p_value``, ``threshold``, ``alpha``, ``is_drift``, ``layer_p_values`` and
    ``top_suspicious`` (row indices, most suspicious first). The same record is
    appended as one line to ``output_dir/history.jsonl``, and
    ``output_dir/detection_rate.png`` shows the p-values and the running detection
    rate over all batches of the history. A batch that cannot be read or has the
    wrong shape gets an ``"error"`` record with the reason and is skipped; the
    others are still processed.

    Parameters
    ----------
    detector : MMDDriftDetector
        A fitted detector (see :func:`load_detector`).
    batch_dir : str or path-like
        Folder of incoming batches.
    output_dir : str or path-like
        Where reports, history and figure go (created if needed).
    top_k : int, default=100
        Suspicious indices kept per batch.
    rescan : bool, default=False
        Also score files already in the history (else only new files).
    verbose : int, default=0
        Progress bar over files when > 0.

    Returns
    -------
    records : list of dict
        The records of the files processed in this run.
    """
    from tqdm.auto import tqdm

    check_is_fitted(detector)
    if not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} must be a positive integer.")
    batch_dir, output_dir = Path(batch_dir), Path(output_dir)
    if not batch_dir.is_dir():
        raise ValueError(f"batch_dir={str(batch_dir)!r} is not a folder.")
    reports = output_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    history_path = output_dir / "history.jsonl"
    history = _read_history(history_path)
    seen = {r["batch"] for r in history}
    files = sorted(p for p in batch_dir.iterdir()
                   if p.is_file() and p.suffix in (".npy", ".npz")
                   and (rescan or p.name not in seen))
    records = []
    for path in tqdm(files, disable=verbose <= 0, desc="batches", unit="batch"):
        record = {"batch": path.name,
                  "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            X = _load_batch(path, detector.n_features_in_)
            result = detector.test(X)
            top = detector.top_k_suspicious(X, k=top_k)
        except ValueError as exc:
            record.update(status="error", error=str(exc))
        else:
            record.update(
                status="ok", n_samples=int(len(X)), statistic=result.statistic,
                p_value=result.p_value, threshold=result.threshold,
                alpha=float(detector.alpha), is_drift=result.is_drift,
                layer_p_values={n: r.p_value for n, r in result.per_layer.items()},
                top_suspicious=top.tolist())
        with open(reports / f"{path.name}.json", "w") as f:
            json.dump(record, f, indent=1)
        with open(history_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
        history.append(record)
    if records and any(r["status"] == "ok" for r in history):
        _plot_history(history, output_dir / "detection_rate.png", float(detector.alpha))
    return records


def _build_module(spec, kwargs_json, weights):
    """A torch module from a trusted command-line spec ``package.module:Class``."""
    import importlib

    import torch

    if spec is None:
        if weights is not None:
            raise ValueError("--weights needs --module (the network class).")
        return None
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"--module {spec!r} must look like package.module:Class.")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--module {spec!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"--module {spec!r} is not a torch.nn.Module class.")
    try:
        kwargs = json.loads(kwargs_json or "{}")
    except ValueError as exc:
        raise ValueError(f"--module-kwargs is not valid JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise ValueError("--module-kwargs must be a JSON object.")
    module = cls(**kwargs)
    if weights is not None:
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return module.eval()


def monitor_command(detector_path, batch_dir, output_dir, *, module=None,
                    module_kwargs="{}", weights=None, top_k=100, rescan=False, verbose=1):
    """What ``skrobust monitor`` runs; returns the exit status (0, or 1 on errors).

    Errors with the detector or the folder end the run with a message; errors with
    single batches are reported on stderr and skipped (exit status 1 at the end).
    """
    import sys

    try:
        estimator = _build_module(module, module_kwargs, weights)
        detector = load_detector(detector_path, estimator=estimator)
        records = run_monitor(detector, batch_dir, output_dir, top_k=top_k,
                              rescan=rescan, verbose=verbose)
    except ValueError as exc:
        print(f"skrobust monitor: error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in records if r["status"] == "error"]
    ok = [r for r in records if r["status"] == "ok"]
    for r in failed:
        print(f"skipped {r['batch']}: {r['error']}", file=sys.stderr)
    if verbose > 0:
        drifts = sum(r["is_drift"] for r in ok)
        print(f"{len(ok)} batches tested, {drifts} with drift, {len(failed)} skipped; "
              f"reports in {output_dir}")
    return 1 if failed else 0
