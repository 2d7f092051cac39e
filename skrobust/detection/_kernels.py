"""Kernels and the unbiased MMD^2 with a vectorised permutation null.

Plain functions on arrays and tensors; :class:`~skrobust.detection.MMDDriftDetector`
validates, converts and calls them.

The unbiased estimator of the squared maximum mean discrepancy between samples
``x_1..x_n`` and ``y_1..y_m`` (Gretton et al., 2012, Lemma 6) is::

    MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
              - 2/(nm) sum_{i, j} k(x_i, y_j)

For the permutation null, each relabelling of the pooled sample ``z`` (``N = n + m``
rows) is an indicator vector ``u`` of the rows labelled "x". With ``K`` the pooled
kernel matrix, ``r = K 1`` its row sums and ``d`` its diagonal, every term above is
a function of ``u^T K u``, ``u^T r`` and ``u^T d``; the products ``K U`` for all
permutations at once (``U`` of shape ``(N, n_permutations + 1)``) are one matrix
product, accumulated over row blocks of ``K`` so that ``K`` is computed once and
never held whole.
"""

from contextlib import contextmanager

import numpy as np
import torch

#: Pooled samples up to this size run on one thread: for such small matrices the
#: synchronisation of torch's thread pool costs more than it saves (and far more on
#: a loaded machine).
SMALL_PROBLEM = 1024

#: Bandwidth multipliers of the "rbf_mixture" kernel (median heuristic times 2^k).
MIXTURE_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def kernel_gammas(gamma, kernel="rbf"):
    """The RBF precisions ``gamma_k`` of a kernel built on a base ``gamma``.

    ``k(x, y) = exp(-gamma ||x - y||^2)``. A bandwidth ``sigma`` corresponds to
    ``gamma = 1 / (2 sigma^2)``; the mixture multiplies ``sigma`` by ``2^-2 .. 2^2``,
    i.e. ``gamma`` by ``16, 4, 1, 1/4, 1/16``.

    Parameters
    ----------
    gamma : float
        Base precision (for instance from :func:`median_gamma`).
    kernel : {"rbf", "rbf_mixture"}, default="rbf"
        One RBF kernel or the equal-weight mixture of five bandwidths.

    Returns
    -------
    gammas : tuple of float

    Examples
    --------
    >>> from skrobust.detection import kernel_gammas
    >>> kernel_gammas(1.0, "rbf_mixture")
    (16.0, 4.0, 1.0, 0.25, 0.0625)
    """
    if kernel == "rbf":
        return (float(gamma),)
    if kernel == "rbf_mixture":
        return tuple(float(gamma) / scale**2 for scale in MIXTURE_SCALES)
    raise ValueError(f'kernel={kernel!r} is not supported; use "rbf" or "rbf_mixture".')


@contextmanager
def _threads_for(n_rows):
    """Run small problems on one torch thread; restore the thread count after."""
    threads = torch.get_num_threads()
    if n_rows > SMALL_PROBLEM or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sq_distances(A, B):
    """Squared Euclidean distances between the rows of two tensors, in float64.

    Safe for any finite input: the expansion ``|a|^2 + |b|^2 - 2 a.b`` is computed in
    float64, and an entry that is not finite (only possible when a row's squared
    norm overflows float64, i.e. values beyond about 1e154) is ``+inf``, whose kernel
    value is the exact limit 0. Such a row is thus an isolated point, at kernel 0
    from every row (even an identical one, and itself: the diagonal is not part of
    the unbiased statistic): a point far from all the data, which is what it is.
    Never NaN, never negative.
    """
    A, B = A.double(), B.double()
    aa = (A * A).sum(1, keepdim=True)
    bb = (B * B).sum(1, keepdim=True).T
    dist = aa + bb - 2.0 * (A @ B.T)
    return torch.nan_to_num_(dist, nan=float("inf")).clamp_min_(0.0)


def _kernel_block(A, B, gammas):
    """Mixture of RBF kernels between rows of ``A`` and ``B``, in float64."""
    dist = _sq_distances(A, B)
    K = torch.exp(-gammas[0] * dist)
    for gamma in gammas[1:]:
        K += torch.exp(-gamma * dist)
    if len(gammas) > 1:
        K /= len(gammas)
    return K


def rbf_kernel(X, Y=None, *, gamma=1.0, kernel="rbf"):
    """RBF kernel matrix ``exp(-gamma ||x - y||^2)`` (or the five-bandwidth mixture).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
    Y : array-like of shape (n_samples_Y, n_features), default=None
        If None, ``Y = X``.
    gamma : float, default=1.0
        Precision of the (base) RBF kernel.
    kernel : {"rbf", "rbf_mixture"}, default="rbf"
        See :func:`kernel_gammas`.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        float64 kernel matrix, computed in float64 for any finite input. A pair
        whose squared distance overflows float64 (values beyond about 1e154) has
        the limit value 0; so has a row with such values with itself.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.detection import rbf_kernel
    >>> rbf_kernel(np.array([[0.0], [1.0]]), gamma=1.0).round(3)
    array([[1.   , 0.368],
           [0.368, 1.   ]])
    """
    X = torch.from_numpy(np.array(X, dtype=np.float64))
    Y = X if Y is None else torch.from_numpy(np.array(Y, dtype=np.float64))
    return _kernel_block(X, Y, kernel_gammas(gamma, kernel)).numpy()


def median_gamma(X, *, max_samples=1000, random_state=0):
    """The median heuristic: ``gamma = 1 / (2 median ||x_i - x_j||^2)``.

    Equivalently, the RBF bandwidth ``sigma`` is the median pairwise distance
    (Gretton et al., 2012). Computed on at most ``max_samples`` random rows.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        At least two rows.
    max_samples : int, default=1000
        Rows used (a random subset when there are more).
    random_state : int, RandomState instance or None, default=0
        Draws the subset.

    Returns
    -------
    gamma : float
        Falls back to the mean of the non-zero squared distances when more than
        half of them are zero, and to 1.0 when all rows are equal. 0.0 when the
        median squared distance overflows float64 (values beyond about 1e154):
        :class:`MMDDriftDetector` refuses such a bandwidth.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.detection import median_gamma
    >>> median_gamma(np.array([[0.0], [1.0], [3.0]]))  # median squared distance 4
    0.125
    """
    from sklearn.utils import check_random_state

    X = np.asarray(X)
    if len(X) < 2:
        raise ValueError(f"median_gamma needs at least 2 samples, got {len(X)}.")
    if len(X) > max_samples:
        rows = check_random_state(random_state).choice(len(X), max_samples, replace=False)
        X = X[np.sort(rows)]
    Xt = torch.from_numpy(np.array(X, dtype=np.float64))
    dist = _sq_distances(Xt, Xt)
    upper = dist[torch.triu_indices(len(Xt), len(Xt), offset=1).unbind()]
    median = float(upper.median()) if len(upper) % 2 else float(upper.quantile(0.5))
    if median <= 0:
        positive = upper[upper > 0]
        median = float(positive.mean()) if len(positive) else 0.5
    return 1.0 / (2.0 * median)


def permutation_matrix(N, n, n_permutations, generator, device="cpu", strata=None):
    """Indicator matrix of the "x" rows: column 0 the observed split, then permutations.

    Parameters
    ----------
    N : int
        Rows of the pooled sample (``n + m``).
    n : int
        Size of the first sample (its rows come first in the pooled sample).
    n_permutations : int
        Random relabellings.
    generator : torch.Generator
        Source of the permutations (on the CPU).
    device : torch.device, default="cpu"
    strata : array-like of shape (N,), default=None
        Labels of strata (e.g. predicted classes): when given, labels are permuted
        within each stratum only, so every permutation keeps the observed number of
        "x" rows per stratum (the exact null of a stratified, class-matched design).

    Returns
    -------
    U : tensor of shape (N, n_permutations + 1)
        float64 0/1 matrix with ``n`` ones per column.
    """
    keys = torch.rand(n_permutations, N, generator=generator, dtype=torch.float64)
    if strata is None:
        chosen = keys.argsort(dim=1)[:, :n]
    else:
        _, codes = np.unique(np.asarray(strata), return_inverse=True)
        codes = codes.ravel()
        # rows sorted by stratum, in random order within each stratum
        order = (keys + 2.0 * torch.as_tensor(codes, dtype=torch.float64)).argsort(dim=1)
        sorted_codes = np.sort(codes)
        starts = np.searchsorted(sorted_codes, np.arange(codes.max() + 1))
        rank = np.arange(N) - starts[sorted_codes]
        n_x = np.bincount(codes[:n], minlength=codes.max() + 1)
        chosen = order[:, torch.as_tensor(rank < n_x[sorted_codes])]
    U = torch.zeros(n_permutations + 1, N, dtype=torch.float64)
    U[0, :n] = 1.0
    U[1:].scatter_(1, chosen, 1.0)
    return U.T.contiguous().to(device)


def kernel_products(Z, U, gammas, *, block_size=1024):
    """``K U``, ``K 1`` and ``diag(K)`` for the pooled kernel matrix ``K = k(Z, Z)``.

    ``K`` is computed once, ``block_size`` rows at a time, and never stored whole:
    memory is ``O(block_size * N + N * n_columns)``.

    Parameters
    ----------
    Z : tensor of shape (N, n_features)
    U : tensor of shape (N, n_columns)
    gammas : sequence of float
    block_size : int, default=1024

    Returns
    -------
    KU : tensor of shape (N, n_columns)
    row_sums : tensor of shape (N,)
    diag : tensor of shape (N,)
    """
    N = len(Z)
    KU = torch.empty(N, U.shape[1], dtype=torch.float64, device=Z.device)
    row_sums = torch.empty(N, dtype=torch.float64, device=Z.device)
    diag = torch.empty(N, dtype=torch.float64, device=Z.device)
    for start in range(0, N, block_size):
        stop = min(start + block_size, N)
        K = _kernel_block(Z[start:stop], Z, gammas)
        KU[start:stop] = K @ U
        row_sums[start:stop] = K.sum(1)
        diag[start:stop] = K[torch.arange(stop - start), torch.arange(start, stop)]
    return KU, row_sums, diag


def mmd2_from_products(KU, row_sums, diag, U, n):
    """Unbiased MMD^2 of each column split of ``U`` from :func:`kernel_products`.

    Returns
    -------
    statistics : tensor of shape (n_columns,)
    """
    N = len(row_sums)
    m = N - n
    uKu = (U * KU).sum(0)
    uK1 = U.T @ row_sums
    total = row_sums.sum()
    vKv = total - 2.0 * uK1 + uKu
    uKv = uK1 - uKu
    ud = U.T @ diag
    vd = diag.sum() - ud
    return ((uKu - ud) / (n * (n - 1)) + (vKv - vd) / (m * (m - 1))
            - 2.0 * uKv / (n * m))


def mmd2_permutation(Z, n, gammas, U, *, block_size=1024, max_elements=2**24):
    """Observed unbiased MMD^2 and its permutation null for a pooled sample.

    Parameters
    ----------
    Z : tensor of shape (N, n_features)
        The first ``n`` rows are one sample, the others the second.
    n : int
    gammas : sequence of float
    U : tensor of shape (N, n_permutations + 1)
        From :func:`permutation_matrix`.
    block_size : int, default=1024
        Kernel rows computed at once.
    max_elements : int, default=2**24
        When ``N * n_columns`` exceeds it, permutations are processed in chunks (the
        kernel is then recomputed per chunk, trading time for memory).

    Returns
    -------
    statistics : tensor of shape (n_permutations + 1,)
        Entry 0 is the observed statistic, the others the null.
    """
    N = len(Z)
    chunk = max(1, min(U.shape[1], max_elements // max(N, 1)))
    parts = []
    with _threads_for(N):
        for start in range(0, U.shape[1], chunk):
            Uc = U[:, start:start + chunk]
            KU, row_sums, diag = kernel_products(Z, Uc, gammas, block_size=block_size)
            parts.append(mmd2_from_products(KU, row_sums, diag, Uc, n))
    return torch.cat(parts)


def witness_scores(F, R, gammas, *, block_size=1024):
    """Empirical MMD witness of each row of a batch ``F`` against a reference ``R``.

    ``f(x) = mean_r k(x, r) - mean_{x' != x} k(x, x')`` over the reference rows ``r``
    and the other rows ``x'`` of the batch: high where the reference is denser than
    the batch, low where the batch concentrates away from the reference. A row's
    score does not depend on the order of the batch.

    Parameters
    ----------
    F : tensor of shape (n, n_features)
        The batch (at least 2 rows).
    R : tensor of shape (n_ref, n_features)
        The reference, on the same device.
    gammas : sequence of float
        RBF precisions of the kernel (:func:`kernel_gammas`).
    block_size : int, default=1024
        Batch rows whose kernel rows are computed at once.

    Returns
    -------
    scores : tensor of shape (n,)
        float64, on the device of ``F``.
    """
    n = len(F)
    scores = torch.empty(n, dtype=torch.float64, device=F.device)
    for start in range(0, n, block_size):
        block = F[start:start + block_size]
        to_ref = _kernel_block(block, R, gammas).mean(1)
        K = _kernel_block(block, F, gammas)
        rows = torch.arange(len(block), device=K.device)
        to_batch = (K.sum(1) - K[rows, rows + start]) / (n - 1)
        scores[start:start + len(block)] = to_ref - to_batch
    return scores


def mmd2_unbiased(X, Y, *, gamma=1.0, kernel="rbf"):
    """Unbiased estimate of the squared MMD between two samples.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        At least two rows.
    Y : array-like of shape (n_samples_Y, n_features)
        At least two rows.
    gamma : float, default=1.0
    kernel : {"rbf", "rbf_mixture"}, default="rbf"

    Returns
    -------
    mmd2 : float
        Can be slightly negative when the distributions are equal.

    References
    ----------
    A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf and A. Smola, "A kernel
    two-sample test", JMLR 13, 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.detection import mmd2_unbiased
    >>> rng = np.random.RandomState(0)
    >>> mmd2_unbiased(rng.randn(50, 2), rng.randn(50, 2) + 3) > 0.1
    True
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if len(X) < 2 or len(Y) < 2:
        raise ValueError("mmd2_unbiased needs at least 2 samples in X and in Y.")
    Z = torch.as_tensor(np.concatenate([X, Y]))
    U = torch.zeros(len(Z), 1, dtype=torch.float64)
    U[: len(X)] = 1.0
    return float(mmd2_permutation(Z, len(X), kernel_gammas(gamma, kernel), U)[0])


def permutation_p_values(statistics):
    """p-value of each entry among all entries: ``#{j : t_j >= t_i} / n``.

    For entry 0 (the observed statistic) this is ``(1 + #{null >= observed}) /
    (1 + n_permutations)``, never 0 and valid in finite samples.

    Parameters
    ----------
    statistics : tensor or ndarray of shape (..., n_permutations + 1)

    Returns
    -------
    p_values : ndarray of the same shape
    """
    t = np.asarray(statistics, dtype=np.float64)
    n = t.shape[-1]
    flat = t.reshape(-1, n)
    ordered = np.sort(flat, axis=-1)
    count_ge = np.stack([n - np.searchsorted(row_sorted, row, side="left")
                         for row_sorted, row in zip(ordered, flat)])
    return (count_ge / n).reshape(t.shape)


def fisher_combination(statistics):
    """Combine per-layer permutation tests with Fisher's method on the joint null.

    Every layer's statistics come from the same permutations, so the Fisher
    statistic ``-2 sum_l log p_l`` can be computed for the observed split and for
    each permutation; its p-value against that null (non-parametric combination,
    Pesarin 2001) stays valid however dependent the layers are.

    Parameters
    ----------
    statistics : array of shape (n_layers, n_permutations + 1)
        Column 0 observed.

    Returns
    -------
    fisher : ndarray of shape (n_permutations + 1,)
        The Fisher statistic of every column (0 observed).
    """
    p = permutation_p_values(statistics)
    return -2.0 * np.log(p).sum(0)
