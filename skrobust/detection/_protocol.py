"""What a permutation test decides, and the power protocol of repeated tests.

:class:`DriftResult` turns the observed statistic and its permutation null into a
p-value, a critical value and a decision; :func:`detection_rates` repeats a test on
random subsets and counts the rejections (the false-positive rate on clean data,
the power on shifted data). :class:`~skrobust.detection.MMDDriftDetector` validates
its input and wires its own test into them.
"""

from dataclasses import dataclass, field

import numpy as np

from ._kernels import permutation_p_values


@dataclass(frozen=True)
class DriftResult:
    """Outcome of one two-sample test.

    Attributes
    ----------
    statistic : float
        Unbiased MMD^2 (one layer) or Fisher's statistic ``-2 sum log p_l`` (several
        layers).
    p_value : float
        Permutation p-value ``(1 + #{null >= statistic}) / (1 + n_permutations)``.
    threshold : float
        Critical value: the ``k``-th largest null statistic with
        ``k = floor(alpha (n_permutations + 1))``; ``statistic > threshold`` exactly
        when ``p_value <= alpha`` (``inf`` when too few permutations to ever reject).
    is_drift : bool
        ``p_value <= alpha``.
    null_statistics : ndarray of shape (n_permutations,)
        The permutation null of ``statistic``.
    per_layer : dict of str to DriftResult or None
        The result of each layer (with several layers, or the single layer itself).
    """

    statistic: float
    p_value: float
    threshold: float
    is_drift: bool
    null_statistics: np.ndarray = field(default=None, repr=False, compare=False)
    per_layer: dict = field(default=None, repr=False, compare=False)


def critical_value(null, alpha):
    """The ``k``-th largest null statistic, ``k = floor(alpha (len(null) + 1))``.

    ``inf`` when ``k < 1``: too few permutations to ever reject at ``alpha``.
    """
    k = int(np.floor(alpha * (len(null) + 1) + 1e-9))
    if k < 1:
        return float("inf")
    return float(np.sort(null)[::-1][k - 1])


def drift_result(statistics, alpha, per_layer=None):
    """The :class:`DriftResult` of statistics ``[observed, *null]`` at level ``alpha``.

    Fails closed: a statistic that is not finite raises ``ValueError`` rather than
    giving a p-value.
    """
    statistics = np.asarray(statistics, dtype=np.float64)
    if not np.isfinite(statistics).all():  # fail closed: never a p-value from NaN
        raise ValueError(
            "The MMD statistic is not finite; the batch cannot be tested (no p-value "
            "is reported rather than a meaningless one).")
    p_value = float(permutation_p_values(statistics)[0])
    return DriftResult(
        statistic=float(statistics[0]), p_value=p_value,
        threshold=critical_value(statistics[1:], alpha), is_drift=bool(p_value <= alpha),
        null_statistics=statistics[1:], per_layer=per_layer,
    )


def detection_rates(test_rows, n_samples, layers, *, n_repeats, sample_size, rng):
    """Fraction of repeated tests on random subsets that reject, per layer and combined.

    Parameters
    ----------
    test_rows : callable
        ``test_rows(rows)`` tests the samples ``rows`` (sorted indices) and returns a
        :class:`DriftResult` whose ``per_layer`` holds every layer's result. It may
        draw from ``rng`` too (the reference rows), after the subset is drawn.
    n_samples : int
        Size of the pool the subsets are drawn from.
    layers : list of str
        The tested layers.
    n_repeats : int
        Number of tests.
    sample_size : int
        Rows per subset, drawn without replacement.
    rng : numpy.random.RandomState
        Draws the subsets.

    Returns
    -------
    rates : dict of str to float
        The rejection rate of every layer and of the whole test (``"combined"``).
    """
    hits = dict.fromkeys([*layers, "combined"], 0)
    for _ in range(n_repeats):
        rows = np.sort(rng.choice(n_samples, sample_size, replace=False))
        result = test_rows(rows)
        hits["combined"] += result.is_drift
        for name, layer_result in result.per_layer.items():
            hits[name] += layer_result.is_drift
    return {name: count / n_repeats for name, count in hits.items()}
