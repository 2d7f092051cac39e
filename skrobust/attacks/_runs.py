"""Several runs of an attack side by side, with the result of running them in turn.

APGD-T and FAB-T are untargeted attacks made of a sequence of runs per sample
(one per target class and restart), each on the samples no earlier run fooled.
Run one after another on the few samples still standing, every step is a pass at
a batch of a handful of rows, paid mostly in per-call overhead (on a GPU, in
kernel launches). Here the next runs go into one batch, as many as fit in
``max_rows`` rows, and three rules keep the outcome that of the sequential order:

- a row leaves its batch when it reaches the goal, and so does every row of the
  same sample with a later rank (:func:`superseded`): the sequential order would
  never have run it;
- the rows ranked before a success keep running, as they would have run first;
- the results are folded in rank order, so a sample keeps the first run (by rank)
  that fooled it, and draws come from per-row keys
  (:func:`~skrobust.attacks.functional.start_noise`), so a
  run starts where it would have started alone.

So the fooled samples, and every output, are those of the sequential order: only
the cost changes (a few extra steps for the rows ranked after a success, which
run until the success is seen). The transformers run this way; the functional
``apgd`` and ``fab`` do only when given ``max_rows``, and otherwise draw their
random starts from a generator in AutoAttack's order (for parity with it).
"""

import hashlib

import numpy as np
import torch


CPU_ROWS = 32


def max_rows_for(device, batch_size):
    """Rows of runs side by side: ``batch_size`` on an accelerator, where a pass over
    more rows costs about the same; at most ``CPU_ROWS`` on a CPU, where the time
    per row stops falling beyond a few dozen rows (LeNet5 on one thread: 260 us a
    row at 4 rows, 176 at 16, 210-225 from 32 to 256) and larger chunks would only
    add runs that an earlier success makes unnecessary."""
    if torch.device(device).type == "cpu":
        return min(batch_size, CPU_ROWS)
    return batch_size


def run_chunks(n_runs, success, max_rows):
    """Split ``n_runs`` runs (in rank order) into consecutive chunks run side by side.

    Yields ``(first, count, active)``: the runs ``first .. first + count - 1`` are to
    run together on the samples ``active`` (those not in ``success``), at most
    ``max_rows`` rows in all (at least one run per chunk). ``success`` is read again
    before every chunk, so the caller updates it in place with each chunk's result.
    """
    first = 0
    while first < n_runs:
        active = (~success).nonzero().flatten()
        if len(active) == 0:
            return
        count = max(1, min(n_runs - first, max_rows // len(active)))
        yield first, count, active
        first += count


def chunk_rows(n_active, count, device):
    """Sample (0 .. n_active - 1) and rank (0 .. count - 1) of each row of a chunk:
    run-major, so that run ``j`` holds rows ``j * n_active .. (j + 1) * n_active - 1``."""
    sample = torch.arange(n_active, device=device).repeat(count)
    rank = torch.arange(count, device=device).repeat_interleave(n_active)
    return sample, rank


def superseded(hit, sample, rank, n_samples):
    """Rows ranked after a row of the same sample that is in ``hit`` (``sample`` in
    ``0 .. n_samples - 1``); no host synchronisation."""
    first = torch.full((n_samples,), torch.iinfo(rank.dtype).max, dtype=rank.dtype,
                       device=rank.device)
    first = first.scatter_reduce(0, sample[hit], rank[hit], "amin")
    return rank > first[sample]


def row_keys(seed, X):
    """One 32-bit random key per row, a hash of ``seed`` and the row's values."""
    keys = np.empty(len(X), dtype=np.int64)
    prefix = int(seed).to_bytes(8, "little", signed=False)
    for i, row in enumerate(X):  # row by row: no full-size float64 copy of X
        row = np.ascontiguousarray(row, dtype=np.float64)
        digest = hashlib.blake2b(prefix + row.tobytes(), digest_size=4).digest()
        keys[i] = int.from_bytes(digest, "little")
    return keys


def draw_keys(n, generator, device):
    """One key per sample for :func:`~skrobust.attacks.functional.start_noise`, from
    ``generator``."""
    return torch.randint(0, 2**32, (n,), generator=generator, device=device,
                         dtype=torch.int64)


def run_keys(keys, random, max_rows, n, generator, device):
    """The per-sample keys of the runs' random starts, or None.

    None when no start is ``random``, or when the runs go one after the other
    (``max_rows`` None, no ``keys``) drawing from ``generator`` in turn; else the
    given ``keys``, or ``n`` keys drawn from ``generator``.
    """
    if not random:
        return None
    if keys is None and max_rows is not None:
        return draw_keys(n, generator, device)
    return keys


def chunk_targets(targets, chunk, active):
    """The target class of every row of a chunk of (target index, restart) runs on
    the samples ``active``, run-major; None for runs without a target."""
    if targets[0] is None:
        return None
    return torch.cat([targets[i][active] for i, _ in chunk])
