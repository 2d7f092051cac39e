"""Every example and benchmark runs to the end with its smallest arguments.

Neither folder is collected by the suite, so an API change that breaks a script
would otherwise go unnoticed until someone runs it. Each script's ``main(argv)`` runs
in this process (no second start-up of torch) with tiny sizes, output to a temporary
folder and matplotlib's Agg backend; a test checks that it returns cleanly, prints
its table and writes the files it announces. The figures are not checked: these are
smoke tests, the scripts' numbers at their real sizes are in their docstrings.

Scripts that train on the 60,000 MNIST training images skip when no data root holds
them (``SKROBUST_DATA``; ``make test`` sets it when ``../shared/data/mnist`` exists):
tests never download. The slower ones carry ``@pytest.mark.slow``.
"""

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from skrobust.datasets import _mnist

ROOT = Path(__file__).resolve().parent.parent


def _has_mnist_train():
    try:
        _mnist._locate("train", None, False)
    except FileNotFoundError:
        return False
    return True


FULL_MNIST = pytest.mark.skipif(
    not _has_mnist_train(),
    reason="needs the MNIST training set: set SKROBUST_DATA to a folder holding mnist/")
SLOW = pytest.mark.slow

AT_TINY = ["--epochs", "1", "--n-train", "200", "--n-test", "100", "--n-attack", "8",
           "--n-ensemble", "0", "--restarts", "1", "--n-curve", "8"]

# (script, arguments ({out}: the output folder), files it writes there, marks)
SCRIPTS = [
    ("examples/plot_fgsm_digits.py", ["--output-dir", "{out}"],
     ["fgsm_digits_grid.png", "fgsm_accuracy_vs_eps.png"], []),
    ("examples/tabular_breast_cancer.py",
     ["--output-dir", "{out}", "--n-queries", "20", "--epochs", "5"],
     ["tabular_breast_cancer.png", "tabular_breast_cancer.csv"], []),
    ("examples/adversarial_training_fast_fgsm.py", ["--output-dir", "{out}", *AT_TINY],
     ["adversarial_training_fast_fgsm.png"], [SLOW]),
    ("examples/adversarial_training_nad.py",
     ["--output-dir", "{out}", *AT_TINY, "--defense-epochs", "1"],
     ["adversarial_training_nad.png"], []),
    ("examples/adversarial_training_pgd.py",
     ["--output-dir", "{out}", *AT_TINY, "--train-steps", "2"],
     ["adversarial_training_pgd.png"], []),
    ("examples/matlab_bim_smallcnn.py",
     ["--output-dir", "{out}", "--epochs", "1", "--n-train", "200", "--n-test", "100",
      "--n-check", "20"],
     ["matlab_bim_smallcnn.png"], [FULL_MNIST, SLOW]),
    ("examples/robustness_evaluation_mnist.py",
     ["--output-dir", "{out}", "--n-train", "200", "--epochs", "1", "--at-epochs", "1",
      "--train-steps", "2", "--n-eval", "8", "--n-curve", "8", "--n-iter", "5"],
     ["robustness_evaluation_mnist.png"], []),
    ("examples/mmd_detection_mnist.py",
     ["--output-dir", "{out}", "--epochs", "1", "--n-train", "200", "--eps", "0.1",
      "--n-iter", "2", "--n-ref", "100", "--n-pool", "100", "--n-repeats", "2",
      "--sample-size", "20", "--n-permutations", "20"],
     ["mmd_detection_rates.png", "mmd_tsne.png", "mmd_detection_results.json"],
     [FULL_MNIST, SLOW]),
    ("examples/suppress_privacy_mnist.py",
     ["--output-dir", "{out}", "--epochs", "1", "--start-epoch", "1", "--judge-epochs", "1",
      "--n-inversions", "2", "--n-iter", "2", "--n-membership", "100", "--n-train", "200"],
     ["results.json", "inversions.png"], [FULL_MNIST]),
    ("examples/dnr_mnist.py",
     ["--output-dir", "{out}", "--n-train", "200", "--n-threshold", "100", "--n-eval", "6",
      "--eps", "0", "1", "--n-iter", "2", "--adaptive-iter", "2", "--n-targets", "1",
      "--cnn-epochs", "1", "--n-cnn-train", "500", "--cv", "2"],
     ["dnr_attack.png", "dnr_security_curve.png"], [FULL_MNIST]),
    ("benchmarks/adversarial_training.py", ["--n", "128", "--k", "2", "--repeats", "1"],
     [], []),
    ("benchmarks/apgd_parity.py",
     ["--n", "8", "--n-train", "200", "--n-iter", "5", "--rounds", "1",
      "--json", "{out}/apgd.json"],
     ["apgd.json"], [FULL_MNIST]),
    ("benchmarks/fab_parity.py",
     ["--n", "8", "--n-train", "200", "--n-iter", "5", "--rounds", "1", "--vs-apgd",
      "--json", "{out}/fab.json"],
     ["fab.json"], [FULL_MNIST]),
    ("benchmarks/attacks.py", ["--n", "20", "--repeats", "1", "--n-train", "500"], [], []),
    ("benchmarks/demo_seed_spread.py",
     ["--seeds", "0", "--epochs", "1", "--n-train", "200", "--n-test", "200"], [], []),
    ("benchmarks/dnr.py",
     ["--n-train", "100", "--n-attack", "4", "--n-iter", "2", "--repeats", "1"], [], []),
    ("benchmarks/gpu.py",
     ["--device", "cpu", "--n", "40", "--batch-size", "20", "--repeats", "1",
      "--victim-epochs", "1", "--n-eval", "8", "--n-train", "100", "--train-batch", "50",
      "--json", "{out}/gpu.json"],
     ["gpu.json"], [SLOW]),
    ("benchmarks/memory.py",
     ["--rows", "200", "--cases", "FGSM Linf", "--json", "{out}/memory.json"],
     ["memory.json"], [SLOW]),
    ("benchmarks/mixed_precision.py",
     ["--n", "64", "--k", "1", "--repeats", "1", "--accuracy-epochs", "1", "--n-train", "64",
      "--n-test", "16", "--json", "{out}/mixed_precision.json"],
     ["mixed_precision.json"], [SLOW]),
    ("benchmarks/mmd.py",
     ["--sizes", "50", "--permutations", "20", "--repeats", "1", "--threads", "1"], [], []),
    ("benchmarks/privacy.py", ["--n", "200", "--repeats", "1", "--n-iter", "2"], [], []),
    ("benchmarks/square.py",
     ["--n", "8", "--queries", "20", "--epochs", "1", "--n-train", "200",
      "--json", "{out}/square.json"],
     ["square.json"], []),
    ("benchmarks/scale.py", ["--repeats", "1"], [], [SLOW]),
    ("benchmarks/target_runs.py",
     ["--sizes", "2", "--n-iter", "3", "--repeats", "1", "--n-train", "200",
      "--output", "{out}/target_runs.json"],
     ["target_runs.json"], []),
    # a victim that gets some images right, and a declared non-differentiable one
    ("benchmarks/evaluation.py",
     ["--n-images", "8", "--n-train", "1000", "--epochs", "2", "--at-epochs", "1",
      "--train-steps", "2", "--models", "plain,plain 16-level input", "--threads", "1",
      "--repeats", "2", "--standard-per-attack", "--output", "{out}/evaluation.json"],
     ["evaluation.json"], [SLOW]),
]


def _load(path):
    """Import a script by path, as a fresh module (its folder first on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"_smoke_{path.parent.name}_{path.stem}",
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_script_is_listed():
    """A new example or benchmark gets a smoke test here."""
    listed = {script for script, *_ in SCRIPTS}
    found = {str(p.relative_to(ROOT)) for folder in ("examples", "benchmarks")
             for p in (ROOT / folder).glob("*.py")}
    assert found - listed == {"examples/adversarial_training_common.py"}
    assert listed <= found


# tiny models trained for one epoch: the sanity checks' warnings are expected
@pytest.mark.filterwarnings("ignore::skrobust.evaluation.RobustnessWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("script, argv, files", [
    pytest.param(script, argv, files, marks=marks, id=script)
    for script, argv, files, marks in SCRIPTS])
def test_script_runs(script, argv, files, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    import torch

    path = ROOT / script
    monkeypatch.chdir(tmp_path)  # anything written to the working folder lands here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(path.parent))
    threads = torch.get_num_threads()
    before = set(sys.modules)
    module = _load(path)
    out = tmp_path / "out"
    out.mkdir()
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            status = module.main([arg.format(out=out) for arg in argv])
    finally:
        plt.close("all")
        torch.set_num_threads(threads)
        # the script's own imports from its folder (adversarial_training_common,
        # benchmarks/attacks.py as "attacks") do not outlive the test
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if Path(origin).parent == path.parent:
                del sys.modules[name]
    # main() returns its results, or an exit status (benchmarks/gpu.py)
    assert not isinstance(status, int) or status == 0, output.getvalue()[-2000:]
    assert output.getvalue().strip(), f"{script} printed nothing"
    for name in files:
        written = out / name
        assert written.is_file() and written.stat().st_size > 0, (
            f"{script} did not write {name}; printed:\n{output.getvalue()[-2000:]}")
