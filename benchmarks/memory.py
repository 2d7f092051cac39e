"""Peak memory of every attack transformer: resident-set growth / input size.

Each case runs in a fresh process: it builds X (uniform in [0, 1], 784 features,
float32 or float64, filled in row chunks so that building it leaves no high-water
mark), fits the attack on 100 rows against a random MLP (784-100-10, the victim of
issue 14), runs one warm-up batch, then measures the resident set size (RSS) while
``generate(X, y)`` runs: a sampling thread reads ``/proc/self/statm`` every
millisecond, and the kernel's own high-water mark (``ru_maxrss``) is used when the
call raised it. The table shows the peak growth over the RSS before the call,
divided by the input size. The output array itself is 1.0x; the target is
<= 1.2x (output + O(batch_size x n_features)).

Usage::

    python benchmarks/memory.py [--rows 6000 60000] [--batch-size 256]

Linux only (``/proc``). 60,000 float64 rows take 376 MB for X and as much again for
the output.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

import numpy as np

CASES = {
    "FGSM Linf": ("FGSMTransformer", dict(eps=0.3)),
    "FGSM Linf immutable=[0]": ("FGSMTransformer", dict(eps=0.3, immutable=[0])),
    "PGD Linf": ("PGDTransformer", dict(eps=0.3, step_size=0.01, n_iter=1)),
    "PGD L2": ("PGDTransformer", dict(eps=2.0, step_size=0.5, n_iter=1, norm=2)),
    "PGD Linf immutable=[0]": ("PGDTransformer", dict(eps=0.3, step_size=0.01, n_iter=1,
                                                      immutable=[0])),
    "PGD L2 immutable=[0]": ("PGDTransformer", dict(eps=2.0, step_size=0.5, n_iter=1,
                                                    norm=2, immutable=[0])),
    "APGD Linf": ("APGDTransformer", dict(eps=0.3, n_iter=1)),
    "Square Linf": ("SquareAttackTransformer", dict(eps=0.3, n_queries=2)),
    "FAB-T Linf": ("FABTransformer", dict(eps=0.3, n_iter=1, n_target_classes=2)),
    "PGDExp L2": ("PGDExpTransformer", dict(eps=2.0, step_size=0.5, n_iter=1)),
}
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def max_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(case, n_rows, dtype, batch_size):
    """Run one case in this process; return the peak RSS growth / X.nbytes."""
    import torch

    import skrobust.attacks as attacks
    from skrobust.models import MLP

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = np.empty((n_rows, 784), dtype=dtype)
    for start in range(0, n_rows, 1000):
        X[start:start + 1000] = rng.random((min(1000, n_rows - start), 784), dtype=dtype)
    y = rng.integers(0, 10, n_rows)
    torch.manual_seed(0)
    name, params = CASES[case]
    attack = getattr(attacks, name)(MLP(), batch_size=batch_size, random_state=0, **params)
    attack.fit(X[:100], y[:100])
    attack.generate(X[:batch_size], y[:batch_size])  # warm-up: lazy torch init

    peak, done = [rss()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    before, high_before = rss(), max_rss()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    X_adv = attack.generate(X, y)
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    high_after = max_rss()
    top = high_after if high_after > high_before else peak[0]
    assert X_adv.shape == X.shape
    return {"growth": (top - before) / X.nbytes, "input_mb": X.nbytes / 2**20,
            "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[6000, 60000])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES),
                        metavar="CASE", help=f"subset of {list(CASES)}")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "ROWS", "DTYPE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case, rows, dtype = args.child
        print(json.dumps(measure(case, int(rows), np.dtype(dtype), args.batch_size)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results = []
    print(f"peak RSS growth during generate / input size; batch_size={args.batch_size}, "
          "784 features, MLP victim, one process per case; target <= 1.2x (output 1.0x)")
    header = f"{'attack':<26} {'rows':>6} {'dtype':>8} {'input MB':>9} {'growth':>7}"
    print(header + "\n" + "-" * len(header), flush=True)
    for case in args.cases:
        for rows in args.rows:
            for dtype in ("float32", "float64"):
                out = subprocess.run(
                    [sys.executable, __file__, "--batch-size", str(args.batch_size),
                     "--child", case, str(rows), dtype],
                    env=env, capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.append({"attack": case, "rows": rows, "dtype": dtype, **result})
                print(f"{case:<26} {rows:>6} {dtype:>8} {result['input_mb']:>9.1f} "
                      f"{result['growth']:>6.2f}x", flush=True)
    worst = max(r["growth"] for r in results)
    print(f"\nworst: {worst:.2f}x (target <= 1.2x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch_size": args.batch_size, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
