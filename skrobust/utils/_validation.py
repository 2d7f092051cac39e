"""Parameter checks shared by the estimators of several subpackages."""

import numpy as np


def check_bound(value, name, n_features):
    """Validate a ``clip_min``/``clip_max`` bound.

    Parameters
    ----------
    value : None, float or array-like of shape (n_features,)
        The bound as the caller gave it.
    name : str
        The parameter's name, used in the error messages.
    n_features : int
        The width of X; a per-feature bound needs one value per feature.

    Returns
    -------
    bound : None, float or ndarray of shape (n_features,)
        None, a Python float, or a float64 array (a new array when ``value`` is not
        already one; the caller's array is never modified here).

    Raises
    ------
    ValueError
        If ``value`` is a string, NaN, contains NaN or has the wrong shape.
    """
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(f"{name}={value!r} is not supported; use a float, an array of "
                         'shape (n_features,), None, or "data" (transformers with '
                         "feature constraints).")
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        if np.isnan(array):
            raise ValueError(f"{name} is NaN; use a float, an array or None.")
        return float(array)
    if array.shape != (n_features,):
        raise ValueError(
            f"{name} has shape {array.shape}; a per-feature bound needs shape "
            f"({n_features},), one value per feature of X."
        )
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; use finite bounds or +-inf.")
    return array
