"""Saving a fitted detector safely and the monitoring job behind ``skrobust monitor``.

File format of :func:`save_detector` (``.npz``, read with ``allow_pickle=False``,
so loading a file never runs code):

- ``meta``: a 0-d unicode array holding JSON: ``format`` (``"skrobust.MMDDriftDetector"``),
  ``version`` (2), ``params`` (the detector's parameters except ``estimator``),
  ``layers``, ``gamma`` (per layer), ``seed``, ``n_features_in``, ``has_estimator``;
- ``ref_<i>``: the reference representations of the ``i``-th layer;
- ``mean_<i>``, ``scale_<i>``: the reference moments when ``standardize=True``;
- ``ref_classes``: the predicted reference classes when ``class_matched=True``.

Version 1 differs only in the name of one parameter (``layer``, now ``layers``);
:func:`load_detector` reads both versions and refuses any other with the versions
it reads.

The network of a detector built on layer representations is not stored: save its
weights with ``torch.save(module.state_dict(), path)``, rebuild the module from
trusted code and load them with ``torch.load(path, weights_only=True)``, then pass
it to :func:`load_detector` (the command line does this with ``--model`` and
``--weights``: ``skrobust/cli/_monitor.py``).
"""

import json
import math
import numbers
import os
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._mmd import KERNELS, MMDDriftDetector

FORMAT, VERSION = "skrobust.MMDDriftDetector", 2
#: Versions load_detector reads, and the parameters each one renamed: old -> new.
_READS = {1: {"layer": "layers"}, 2: {}}
_PARAMS = ("layers", "kernel", "gamma", "standardize", "class_matched", "n_permutations",
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
        "gamma": {n: float(g) for n, g in detector.gamma_.items()},
        "seed": int(detector.seed_), "n_features_in": int(detector.n_features_in_),
        "has_estimator": detector.estimator_ is not None,
    }
    arrays = {"meta": np.array(json.dumps(meta, allow_nan=False))}
    for i, name in enumerate(layers):
        arrays[f"ref_{i}"] = detector.X_ref_[name]
        if detector.standardize:
            arrays[f"mean_{i}"] = detector.ref_mean_[name]
            arrays[f"scale_{i}"] = detector.ref_scale_[name]
    if detector.ref_classes_ is not None:
        arrays["ref_classes"] = detector.ref_classes_
    np.savez(path, **arrays)


def _refuse(path, field, problem):
    return ValueError(f"{path}: field {field!r} {problem}; the file is damaged or was not "
                      f"written by skrobust.detection.save_detector.")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_field(path, meta, field, valid, expected):
    if field not in meta:
        raise _refuse(path, field, "is missing")
    if not valid(meta[field]):
        raise _refuse(path, field, f"is {meta[field]!r}; expected {expected}")
    return meta[field]


#: Parameters of a saved detector: (check, what is expected).
_PARAM_CHECKS = {
    "layers": (lambda v: v is None or (isinstance(v, str) and v)
              or (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)),
              "null, a layer name or a list of names"),
    "kernel": (lambda v: v in KERNELS, f"one of {list(KERNELS)}"),
    "gamma": (lambda v: v == "median" or (_is_real(v) and math.isfinite(v) and v > 0),
              '"median" or a positive finite number'),
    "standardize": (lambda v: isinstance(v, bool), "true or false"),
    "class_matched": (lambda v: isinstance(v, bool), "true or false"),
    "n_permutations": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "alpha": (lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "block_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "device": (lambda v: isinstance(v, str) and v, "a device name"),
    "random_state": (lambda v: v is None or (_is_int(v) and 0 <= v < 2**32),
                     "null or an integer in [0, 2**32)"),
}


def _read_npz(path):
    """The arrays of a ``.npz`` file, read without unpickling (ValueError otherwise)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises
        raise ValueError(f"Cannot read a saved detector from {path}: "
                         f"{type(exc).__name__}: {exc}") from None
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a member that is not an .npy array
            raise _refuse(path, key, "is not a numpy array")
    return arrays


def _check_array(path, arrays, key, *, ndim, kinds, rows=None, cols=None, finite=True):
    if key not in arrays:
        raise _refuse(path, key, "is missing")
    a = arrays[key]
    if a.dtype.kind not in kinds or a.dtype.hasobject:
        raise _refuse(path, key, f"has dtype {a.dtype}")
    if a.ndim != ndim:
        raise _refuse(path, key, f"has shape {a.shape}; expected {ndim} dimension(s)")
    if rows is not None and a.shape[0] != rows:
        raise _refuse(path, key, f"has {a.shape[0]} rows; expected {rows}")
    if cols is not None and a.shape[-1] != cols:
        raise _refuse(path, key, f"has {a.shape[-1]} columns; expected {cols}")
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise _refuse(path, key, "contains NaN or infinite values")
    return a


def _validated(path, meta, arrays):
    """Check every field of a saved detector; return its params, layers and gammas."""
    if not isinstance(meta, dict):
        raise _refuse(path, "meta", "is not a JSON object")
    version = _check_field(path, meta, "version", _is_int, "an integer")
    if version not in _READS:
        raise ValueError(f"{path} uses format version {version}; this skrobust reads "
                         f"versions {', '.join(map(str, _READS))}.")
    has_estimator = _check_field(path, meta, "has_estimator",
                                 lambda v: isinstance(v, bool), "true or false")
    params = _check_field(path, meta, "params", lambda v: isinstance(v, dict), "an object")
    for old, new in _READS[version].items():  # an older version's names
        if new in params:
            raise _refuse(path, new, f"is not a parameter of format version {version}")
        if old in params:
            params = {(new if name == old else name): value
                      for name, value in params.items()}
    for name, (valid, expected) in _PARAM_CHECKS.items():
        _check_field(path, params, name, valid, expected)
    if params["class_matched"] and not has_estimator:
        raise _refuse(path, "class_matched", "is true without a network")
    layers = _check_field(
        path, meta, "layers",
        lambda v: (isinstance(v, list) and v and len(set(map(str, v))) == len(v)
                   and all(isinstance(x, str) and x for x in v)),
        "a non-empty list of distinct layer names")
    if not has_estimator and layers != ["input"]:
        raise _refuse(path, "layers", 'is not ["input"] for a detector without a network')
    gammas = _check_field(
        path, meta, "gamma",
        lambda v: (isinstance(v, dict) and set(v) == set(layers)
                   and all(_is_real(g) and math.isfinite(g) and g > 0 for g in v.values())),
        "a positive finite number per layer")
    _check_field(path, meta, "seed", lambda v: _is_int(v) and 0 <= v < 2**32,
                 "an integer in [0, 2**32)")
    n_features = _check_field(path, meta, "n_features_in", lambda v: _is_int(v) and v >= 1,
                              "an integer >= 1")
    expected = {f"ref_{i}" for i in range(len(layers))} | {"meta"}
    n_ref = None
    for i, name in enumerate(layers):
        ref = _check_array(path, arrays, f"ref_{i}", ndim=2, kinds="f", rows=n_ref)
        if name == "input" and ref.shape[1] != n_features:
            raise _refuse(path, "n_features_in", f"is {n_features} but the input layer's "
                                                 f"'ref_{i}' has {ref.shape[1]} columns")
        n_ref = len(ref)
        if n_ref < 2 or ref.shape[1] < 1:
            raise _refuse(path, f"ref_{i}", f"has shape {ref.shape}; expected at least "
                                            "2 rows and 1 column")
        if params["standardize"]:
            expected |= {f"mean_{i}", f"scale_{i}"}
            _check_array(path, arrays, f"mean_{i}", ndim=1, kinds="f", cols=ref.shape[1])
            scale = _check_array(path, arrays, f"scale_{i}", ndim=1, kinds="f",
                                 cols=ref.shape[1])
            if not (scale > 0).all():
                raise _refuse(path, f"scale_{i}", "has values <= 0")
    if params["class_matched"]:
        expected.add("ref_classes")
        classes = _check_array(path, arrays, "ref_classes", ndim=1, kinds="iu", rows=n_ref)
        if len(classes) and classes.min() < 0:
            raise _refuse(path, "ref_classes", "has negative class indices")
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise _refuse(path, unexpected[0], "is not part of this detector")
    return params, layers, gammas


def load_detector(path, estimator=None):
    """Load a detector saved by :func:`save_detector`, without unpickling anything.

    Every field is validated before use (types, shapes, finiteness, positivity of
    ``gamma`` and of the scales, consistency between ``n_features_in``, the layers
    and the reference arrays, the seed's range, the format version); with a
    network, its layer widths are checked against the reference arrays.

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
        If the file is not a saved detector, a field is missing or invalid (the
        message names the file and the field), or the network is missing or does
        not fit.
    """
    arrays = _read_npz(path)
    try:
        meta = json.loads(str(arrays["meta"]))  # NaN/Infinity: refused field by field
        ok = isinstance(meta, dict) and meta.get("format") == FORMAT
    except (KeyError, ValueError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise ValueError(f"{path} is not a detector saved by skrobust.detection.save_detector.")
    params, layers, gammas = _validated(path, meta, arrays)
    if meta["has_estimator"] and estimator is None:
        raise ValueError(
            f"{path} was fitted on layers {layers} of a network; pass the same "
            "trained network as estimator= (on the command line: --module and --weights).")
    if not meta["has_estimator"] and estimator is not None:
        raise ValueError(f"{path} was fitted without a network; do not pass estimator=.")
    detector = MMDDriftDetector(estimator, **{name: params[name] for name in _PARAMS})
    try:
        detector._check_params()
        if detector._resolve_layers() != layers:
            raise ValueError(f"layers {layers} do not follow from layers={params['layers']!r}")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid saved detector: {exc}") from None
    detector.layers_ = layers
    detector.estimator_ = estimator
    detector.seed_ = int(meta["seed"])
    detector.n_features_in_ = int(meta["n_features_in"])
    detector.gamma_ = {n: float(gammas[n]) for n in layers}
    detector.X_ref_ = {n: arrays[f"ref_{i}"] for i, n in enumerate(layers)}
    if detector.standardize:
        detector.ref_mean_ = {n: arrays[f"mean_{i}"] for i, n in enumerate(layers)}
        detector.ref_scale_ = {n: arrays[f"scale_{i}"] for i, n in enumerate(layers)}
    else:
        detector.ref_mean_ = detector.ref_scale_ = None
    detector.ref_classes_ = arrays.get("ref_classes")
    if estimator is not None:
        _check_network(path, detector)
    return detector


def _check_network(path, detector):
    """The network accepts ``n_features_in`` features and gives the stored layer widths."""
    probe = np.zeros((2, detector.n_features_in_), dtype=np.float32)
    try:
        feats, _ = detector._forward(probe, detector.layers_, False)
    except Exception as exc:  # noqa: BLE001 - a network that does not fit, in any way
        raise ValueError(
            f"{path}: the given network does not accept the detector's "
            f"{detector.n_features_in_} input features ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}).") from None
    refs = detector.X_ref_
    for i, name in enumerate(detector.layers_):
        width = int(np.prod(feats[name].shape[1:]))
        if width != refs[name].shape[1]:
            raise ValueError(
                f"{path}: field 'ref_{i}' has {refs[name].shape[1]} columns but layer "
                f"{name!r} of the given network has {width}; pass the network the "
                "detector was fitted with.")


def _npy_header(f, where, n_features, max_bytes, size):
    """Shape and dtype from an .npy header (nothing allocated); ValueError if unusable.

    ``size`` is the number of bytes available after the header's start (the file's
    or the zip member's), to refuse truncated data before reading it.
    """
    fmt = np.lib.format
    start = f.tell()
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format version {version} is not supported")
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{where} is not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (dtype {dtype}); pickled data is "
                         "never loaded: save the batch as a numeric array")
    if dtype.kind not in "iuf":
        raise ValueError(f"{where} has dtype {dtype}; a batch must hold real numbers "
                         "(integers or floats)")
    if len(shape) < 2:
        raise ValueError(f"{where} has shape {shape}; expected (n_samples, {n_features})")
    width = math.prod(shape[1:])
    if width != n_features:
        raise ValueError(f"{where} has shape {shape}; expected (n_samples, {n_features})")
    if shape[0] < 2:
        raise ValueError(f"{where} has {shape[0]} rows; a test needs at least 2")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(f"{where} declares shape {shape} ({nbytes:,} bytes of {dtype}), "
                         f"more than max_batch_bytes={max_bytes:,}; split the batch or "
                         "raise the limit")
    available = size - (f.tell() - start)
    if available < nbytes:
        raise ValueError(f"{where} is truncated: its header declares {nbytes:,} bytes of "
                         f"data, it holds {available:,}")
    return shape


def _load_batch(path, n_features, max_bytes):
    """A 2-D numeric batch from a .npy/.npz file, or a ValueError saying what is wrong.

    The .npy header is read first (shape, dtype, size) and checked without
    allocating anything; pickled data is never loaded.
    """
    fmt = np.lib.format
    path = Path(path)
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            shape = _npy_header(f, "the file", n_features, max_bytes,
                                os.fstat(f.fileno()).st_size)
            f.seek(0)
            X = fmt.read_array(f, allow_pickle=False)
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ValueError(f"the file is not a valid .npz archive ({exc})") from None
        with archive:
            names = archive.namelist()
            if "X.npy" in names:
                member = "X.npy"
            elif len(names) == 1:
                member = names[0]
            else:
                raise ValueError(f"the archive holds {names}; name the batch 'X' "
                                 "(np.savez(path, X=X))")
            where = f"member {member!r}"
            if not member.endswith(".npy"):
                raise ValueError(f"{where} is not an .npy array")
            info = archive.getinfo(member)
            with archive.open(member) as f:
                shape = _npy_header(f, where, n_features, max_bytes, info.file_size)
            with archive.open(member) as f:
                X = fmt.read_array(f, allow_pickle=False)
    if not isinstance(X, np.ndarray) or X.shape != tuple(shape):
        raise ValueError(f"the data does not match its header (shape {shape})")
    return X.reshape(len(X), -1)  # images (n, 28, 28) for a detector on 784 features


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
                    record = json.loads(line)
                except ValueError:
                    continue  # a truncated line from an interrupted run
                if isinstance(record, dict) and isinstance(record.get("batch"), str):
                    records.append(record)
    return records


def _finite_or_none(value):
    """A float for JSON, or None (``null``) when it is not finite: never NaN/Infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ValueError) else f"{type(exc).__name__}: {text}"


#: Default of ``max_batch_bytes``: 1 GiB of data per batch file.
MAX_BATCH_BYTES = 2**30


def run_monitor(detector, batch_dir, output_dir, *, top_k=100, rescan=False,
                max_batch_bytes=MAX_BATCH_BYTES, verbose=0):
    """Score every new batch file of a folder and keep a history and a figure.

    For each ``.npy`` / ``.npz`` file of ``batch_dir`` (sorted by name; an ``.npz``
    holds the batch as ``X`` or as its only array; images are flattened), the
    detector's :meth:`~MMDDriftDetector.test` and
    :meth:`~MMDDriftDetector.top_k_suspicious` are run and a JSON report is written
    to ``output_dir/reports/<file name>.json``: ``batch``, ``timestamp`` (UTC, ISO
    8601), ``status`` (``"ok"`` or ``"error"``), ``n_samples``, ``statistic``,
    ``p_value``, ``threshold`` (``null`` when too few permutations to ever reject),
    ``alpha``, ``is_drift``, ``layer_p_values`` and ``top_suspicious`` (row
    indices, most suspicious first). The same record is appended as one line to
    ``output_dir/history.jsonl``, and ``output_dir/detection_rate.png`` shows the
    p-values and the running detection rate over all batches of the history. The
    JSON never contains NaN or Infinity.

    Each batch is processed in isolation: any failure to read or test it (a file
    that is not a numeric .npy/.npz array, pickled or object data, a header that
    declares more than ``max_batch_bytes``, a truncated file, the wrong width,
    fewer than 2 rows, NaN or infinite values, or any other exception) gives an
    ``"error"`` record with the reason, and the run goes on. Headers are read and
    checked before any data is allocated. A file is recorded once: later runs skip
    it (unless ``rescan``), so they never stall on an old bad file; a batch during
    which an earlier run was killed is recorded as an error at the start of the
    next run.

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
    max_batch_bytes : int, default=2**30
        Largest batch (its data, as its header declares it) that is read; larger
        ones are recorded as errors without being loaded.
    verbose : int, default=0
        Progress bar over files when > 0.

    Returns
    -------
    records : list of dict
        The records written in this run, in order (``status`` tells the failed ones).
    """
    from tqdm.auto import tqdm

    check_is_fitted(detector)
    if not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} must be a positive integer.")
    if (not isinstance(max_batch_bytes, numbers.Integral) or isinstance(max_batch_bytes, bool)
            or max_batch_bytes < 1):
        raise ValueError(f"max_batch_bytes={max_batch_bytes!r} must be a positive integer.")
    batch_dir, output_dir = Path(batch_dir), Path(output_dir)
    if not batch_dir.is_dir():
        raise ValueError(f"batch_dir={str(batch_dir)!r} is not a folder.")
    reports = output_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    history_path = output_dir / "history.jsonl"
    marker = output_dir / "in_progress.json"
    history = _read_history(history_path)
    records = []

    def write(record):
        with open(reports / f"{record['batch']}.json", "w") as f:
            json.dump(record, f, indent=1, allow_nan=False)
        with open(history_path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        records.append(record)
        history.append(record)

    def now():
        return datetime.now(timezone.utc).isoformat(timespec="seconds")

    if marker.exists():  # an earlier run died on this batch: record it, do not retry
        try:
            name = json.loads(marker.read_text())["batch"]
        except Exception:  # noqa: BLE001 - a marker torn by the crash itself
            name = None
        if isinstance(name, str) and name and Path(name).name == name:
            write({"batch": name, "timestamp": now(), "status": "error",
                   "error": "an earlier run stopped while testing this batch (killed or "
                            "crashed); it is not retried (use rescan to retry)"})
        marker.unlink()
    seen = {r["batch"] for r in history}
    files = sorted(p for p in batch_dir.iterdir()
                   if p.suffix in (".npy", ".npz") and (rescan or p.name not in seen))
    for path in tqdm(files, disable=verbose <= 0, desc="batches", unit="batch"):
        record = {"batch": path.name, "timestamp": now()}
        marker.write_text(json.dumps({"batch": path.name}))
        try:
            if not path.is_file():  # never open a pipe or a device: it could block
                raise ValueError("not a regular file (a folder, pipe, device or broken "
                                 "link); it is not opened")
            X = _load_batch(path, detector.n_features_in_, max_batch_bytes)
            result = detector.test(X)
            top = detector.top_k_suspicious(X, k=top_k)
        except Exception as exc:  # noqa: BLE001 - each batch in isolation, nothing lost
            record.update(status="error", error=_one_line(exc))
        else:
            record.update(
                status="ok", n_samples=int(len(X)),
                statistic=_finite_or_none(result.statistic),
                p_value=_finite_or_none(result.p_value),
                threshold=_finite_or_none(result.threshold),
                alpha=float(detector.alpha), is_drift=bool(result.is_drift),
                layer_p_values={n: _finite_or_none(r.p_value)
                                for n, r in result.per_layer.items()},
                top_suspicious=[int(i) for i in top])
        write(record)
        marker.unlink()
    if records and any(r.get("status") == "ok" for r in history):
        try:
            _plot_history(history, output_dir / "detection_rate.png", float(detector.alpha))
        except Exception as exc:  # noqa: BLE001 - the records are written; say why
            warnings.warn(f"detection_rate.png was not drawn: {_one_line(exc)}",
                          RuntimeWarning, stacklevel=2)
    return records

