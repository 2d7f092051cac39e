"""What ``skrobust monitor`` runs: load the network and the detector, run, exit status."""

import sys
from pathlib import Path

from ..detection import load_detector, run_monitor
from ..detection._monitor import MAX_BATCH_BYTES
from ._model import load_model


def monitor_command(detector_path, batch_dir, output_dir, *, model=None, module_kwargs=None,
                    weights=None, top_k=100, rescan=False, max_batch_bytes=MAX_BATCH_BYTES,
                    verbose=1):
    """What ``skrobust monitor`` runs; returns the exit status.

    The network of a layer detector comes from :func:`~skrobust.cli._model.load_model`
    (``model``, ``module_kwargs``, ``weights``), as in ``skrobust report``; without
    ``model`` the detector is loaded without a network. Returns 0 when every batch
    was tested, 1 when some could not be (each is recorded in the history with its
    reason and listed on stderr, and the summary counts them), 2 when the run could
    not start (detector, network, weights or folder: one ``error:`` line on stderr).
    """
    try:
        if model is None:
            if weights is not None:
                raise ValueError("--weights needs --model (the network's class, also "
                                 "spelled --module).")
            estimator = None
        else:
            estimator = load_model(weights, model, module_kwargs=module_kwargs)
        detector = load_detector(detector_path, estimator=estimator)
        records = run_monitor(detector, batch_dir, output_dir, top_k=top_k, rescan=rescan,
                              max_batch_bytes=max_batch_bytes, verbose=verbose)
    except ValueError as exc:
        print(f"skrobust monitor: error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in records if r["status"] == "error"]
    ok = [r for r in records if r["status"] == "ok"]
    for r in failed:
        print(f"failed {r['batch']}: {r['error']}", file=sys.stderr)
    drifts = sum(r["is_drift"] for r in ok)
    summary = (f"{len(ok)} batches tested, {drifts} with drift, {len(failed)} failed "
               f"(recorded with their reason in {Path(output_dir) / 'history.jsonl'})")
    if failed or verbose > 0:
        print(summary, file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
