"""Permutation MMD test: skrobust against per-permutation loops, measured in one run.

Jobs, all on the same data (n = m samples of 84-d Gaussian features, the second
sample shifted by 0.05 so that p-values are not trivial), the same RBF bandwidth
(median heuristic of the reference) and the same number of permutations:

- ``skrobust``: ``MMDDriftDetector.test`` (kernel matrix once, in row blocks; all
  permutations as one matrix product);
- ``loop, kernel reused``: the algorithm of alibi-detect's ``MMDDrift`` (pooled
  kernel matrix once, then a Python loop over permutations that gathers the
  permuted blocks and recomputes the unbiased MMD^2), written here in torch;
- ``naive``: a Python loop that recomputes the kernel matrix for every permutation,
  timed on at most ``--naive-cap`` permutations and scaled linearly (marked ``*``);
- ``alibi-detect``: ``alibi_detect.cd.MMDDrift(backend="pytorch")`` when it can be
  imported (not installable beside numpy 2: alibi-detect 0.13 pins numpy<2).

Jobs are interleaved (the order rotates every round) and repeated; the table shows
medians and the ratio of each job's time to skrobust's. The p-value columns show
that the tests agree within Monte-Carlo error (their permutations differ).

skrobust runs pooled samples of up to 1024 rows on one torch thread (thread-pool
synchronisation costs more than it saves there); ``--threads 1`` gives every job
the same single thread, the fair setting on a small or loaded machine.

``--reference-order`` runs another measurement instead (the user guide's "Choosing
the reference" table): on the MNIST test digits (pixels, no network), the fraction
of clean batches of 100 flagged at alpha = 0.05 with a reference of the first 1000
digits or of 1000 random ones, for contiguous and for random batches. The test set
is in writer order, so only random references and random batches are i.i.d.

Usage::

    python benchmarks/mmd.py [--sizes 100 1000] [--permutations 100 1000] [--repeats 3]
                             [--threads 1]
    SKROBUST_DATA=/path/to/data python benchmarks/mmd.py --reference-order
"""

import argparse
import statistics
import time

import numpy as np
import torch

from skrobust.detection import MMDDriftDetector, median_gamma

N_FEATURES = 84


def unbiased_from_kernel(K, n):
    Kxx, Kyy, Kxy = K[:n, :n], K[n:, n:], K[:n, n:]
    m = len(K) - n
    return ((Kxx.sum() - Kxx.diagonal().sum()) / (n * (n - 1))
            + (Kyy.sum() - Kyy.diagonal().sum()) / (m * (m - 1)) - 2 * Kxy.mean())


def rbf(A, B, gamma):
    return torch.exp(-gamma * torch.cdist(A, B).square())


def loop_reusing_kernel(X, Y, gamma, n_permutations, seed):
    """alibi-detect's algorithm: kernel once, a Python loop over permutations."""
    Z = torch.as_tensor(np.concatenate([X, Y]))
    n = len(X)
    K = rbf(Z, Z, gamma)
    observed = unbiased_from_kernel(K, n)
    generator = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n_permutations):
        perm = torch.randperm(len(Z), generator=generator)
        null.append(unbiased_from_kernel(K[perm][:, perm], n))
    null = torch.stack(null)
    return float((1 + (null >= observed).sum()) / (1 + n_permutations))


def naive(X, Y, gamma, n_permutations, seed):
    """A loop that recomputes the kernel matrix for every permutation."""
    Z = torch.as_tensor(np.concatenate([X, Y]))
    n = len(X)
    observed = unbiased_from_kernel(rbf(Z, Z, gamma), n)
    generator = torch.Generator().manual_seed(seed)
    count = 0
    for _ in range(n_permutations):
        Zp = Z[torch.randperm(len(Z), generator=generator)]
        count += bool(unbiased_from_kernel(rbf(Zp, Zp, gamma), n) >= observed)
    return (1 + count) / (1 + n_permutations)


def alibi_job(X, Y, gamma, n_permutations):
    from alibi_detect.cd import MMDDrift
    from alibi_detect.utils.pytorch.kernels import GaussianRBF

    sigma = np.array([np.sqrt(1 / (2 * gamma))], dtype=np.float32)
    detector = MMDDrift(X.astype(np.float32), backend="pytorch", p_val=0.05,
                        n_permutations=n_permutations,
                        kernel=GaussianRBF(sigma=torch.as_tensor(sigma)), device="cpu")
    return float(detector.predict(Y.astype(np.float32))["data"]["p_val"])


def reference_order(seed):
    """Clean MNIST batches flagged with contiguous or random references and batches."""
    from skrobust.datasets import load_mnist

    X, _ = load_mnist(split="test", return_X_y=True)
    X = X.reshape(len(X), -1).astype(np.float32)
    order = np.random.RandomState(seed).permutation(len(X))
    contiguous = [X[i:i + 100] for i in range(2000, len(X), 100)]
    shuffled = [X[order[i:i + 100]] for i in range(1000, len(X), 100)]
    rows = [("first 1000 digits", X[:1000], "contiguous", contiguous),
            ("random 1000 digits", X[order[:1000]], "random", shuffled),
            ("random 1000 digits", X[order[:1000]], "contiguous", contiguous)]
    print(f"{'reference':<20}{'batches of 100':<16}flagged at alpha=0.05")
    for ref_name, reference, batch_name, batches in rows:
        detector = MMDDriftDetector(random_state=seed).fit(reference)
        flagged = np.mean([detector.test(batch).is_drift for batch in batches])
        print(f"{ref_name:<20}{batch_name:<16}{flagged:.1%} of {len(batches)}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--permutations", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-cap", type=int, default=20,
                        help="permutations actually run by the naive loop (then scaled)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every job (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-order", action="store_true",
                        help="measure the effect of a non-i.i.d. reference instead")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reference_order:
        return reference_order(args.seed)
    try:
        import alibi_detect  # noqa: F401
        have_alibi = True
    except ImportError:
        have_alibi = False
        print("alibi-detect is not importable: its column is left out.")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{N_FEATURES}-d features, medians of {args.repeats} interleaved repeats\n")
    header = (f"{'n=m':>6}{'perms':>7}{'skrobust s':>12}{'loop s':>10}{'ratio':>8}"
              f"{'naive s':>10}{'ratio':>9}"
              + (f"{'alibi s':>10}{'ratio':>8}" if have_alibi else "")
              + f"{'p skrobust':>12}{'p loop':>8}" + (f"{'p alibi':>9}" if have_alibi else ""))
    print(header)
    print("-" * len(header))
    rng = np.random.RandomState(args.seed)
    for size in args.sizes:
        X_ref = rng.randn(size, N_FEATURES)
        X = rng.randn(size, N_FEATURES) + 0.05
        gamma = median_gamma(X_ref)
        for n_perm in args.permutations:
            detector = MMDDriftDetector(gamma=gamma, n_permutations=n_perm,
                                        random_state=args.seed).fit(X_ref)
            cap = min(n_perm, args.naive_cap)
            jobs = {
                "skrobust": lambda: detector.score(X),
                "loop": lambda: loop_reusing_kernel(X, X_ref, gamma, n_perm, args.seed),
                "naive": lambda: naive(X, X_ref, gamma, cap, args.seed),
            }
            if have_alibi:
                jobs["alibi"] = lambda: alibi_job(X_ref, X, gamma, n_perm)
            times = {name: [] for name in jobs}
            p_values = {}
            names = list(jobs)
            for r in range(args.repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    start = time.perf_counter()
                    p_values[name] = jobs[name]()
                    times[name].append(time.perf_counter() - start)
            med = {name: statistics.median(t) for name, t in times.items()}
            med["naive"] *= n_perm / cap
            ours = med["skrobust"]
            row = (f"{size:>6}{n_perm:>7}{ours:>12.4f}{med['loop']:>10.3f}"
                   f"{med['loop'] / ours:>7.0f}x{med['naive']:>9.2f}{'*' if cap < n_perm else ' '}"
                   f"{med['naive'] / ours:>8.0f}x")
            if have_alibi:
                row += f"{med['alibi']:>10.3f}{med['alibi'] / ours:>7.0f}x"
            row += f"{p_values['skrobust']:>12.3f}{p_values['loop']:>8.3f}"
            if have_alibi:
                row += f"{p_values['alibi']:>9.3f}"
            print(row, flush=True)
    print("\n* naive loop timed on at most --naive-cap permutations, scaled linearly.")


if __name__ == "__main__":
    main()
