"""When suppress-privacy training suppresses weights, and how many: the cubic schedule.

Plain array functions: :func:`cubic_sparsity` is the ramp of target sparsities,
:func:`suppress_schedule` places the suppress operations on the training batches.
"""

import numpy as np


def cubic_sparsity(t, sparse_start, sparse_end):
    """MindArmour's cubic ramp: ``sparse_end + (sparse_start - sparse_end) * (1 - t)**3``.

    Parameters
    ----------
    t : float or ndarray
        Progress in [0, 1] between the first and the last suppress operation.
    sparse_start, sparse_end : float
        Sparsity at ``t=0`` and at ``t=1``.

    Returns
    -------
    float or ndarray
        Target fraction of suppressed weights.

    Examples
    --------
    >>> from skrobust.privacy._schedule import cubic_sparsity
    >>> round(float(cubic_sparsity(0.5, 0.0, 0.8)), 6)
    0.7
    """
    t = np.clip(t, 0.0, 1.0)
    return sparse_end + (sparse_start - sparse_end) * (1.0 - t) ** 3


def suppress_schedule(batches_per_epoch, start_epoch, end_epoch, mask_times,
                      sparse_start, sparse_end):
    """When the suppress operations run and the sparsity each one targets.

    The window holds every batch of epochs ``start_epoch`` to ``end_epoch`` (1-based,
    inclusive). ``min(mask_times, n_window_batches)`` operations are spread evenly
    over it, the first on its first batch and the last on its last batch; the k-th
    of n targets ``cubic_sparsity(k / (n - 1))`` (a single one targets ``sparse_end``).

    Parameters
    ----------
    batches_per_epoch : int
        Number of training batches in one epoch, ``>= 1``.
    start_epoch, end_epoch : int
        First and last epoch of the window, ``1 <= start_epoch <= end_epoch``.
    mask_times : int
        Number of operations asked for, ``>= 1``.
    sparse_start, sparse_end : float
        Sparsity targeted by the first and by the last operation.

    Returns
    -------
    steps : ndarray of int
        Global 0-based batch index after whose optimiser step each operation runs,
        strictly increasing.
    targets : ndarray of float
        Target sparsity of each operation, non-decreasing, ending at ``sparse_end``.

    Examples
    --------
    >>> from skrobust.privacy._schedule import suppress_schedule
    >>> steps, targets = suppress_schedule(4, 2, 3, 3, 0.0, 0.8)
    >>> steps.tolist(), targets.round(2).tolist()
    ([4, 8, 11], [0.0, 0.7, 0.8])
    """
    first = (start_epoch - 1) * batches_per_epoch
    n_window = (end_epoch - start_epoch + 1) * batches_per_epoch
    n_ops = int(min(mask_times, n_window))
    if n_ops == 1:
        return np.array([first + n_window - 1]), np.array([float(sparse_end)])
    offsets = np.round(np.linspace(0, n_window - 1, n_ops)).astype(np.int64)
    targets = cubic_sparsity(np.arange(n_ops) / (n_ops - 1), sparse_start, sparse_end)
    return first + offsets, targets
