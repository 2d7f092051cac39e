"""Parameter checks shared by the estimators of several subpackages."""

import functools

import numpy as np


def refuse_init_params(names, explain):
    """Decorate ``__init__`` so that constructor arguments that are gone raise.

    scikit-learn reads an estimator's parameters from the signature of
    ``__init__``, so a removed or renamed parameter cannot be caught by
    ``**kwargs``; this wrapper catches it before the real ``__init__`` runs, and
    ``functools.wraps`` keeps the signature ``get_params``, ``clone`` and the docs
    read.

    Parameters
    ----------
    names : iterable of str
        The constructor arguments that are gone.
    explain : callable
        ``explain(class_name, given) -> str``: the message of the TypeError, given
        the dict of the gone arguments the caller passed; it should say what to
        write instead.

    Returns
    -------
    decorator : callable

    Examples
    --------
    >>> class Detector:
    ...     @refuse_init_params(["layer"], lambda cls, given: (
    ...         f"{cls}: layer is now layers; pass layers={given['layer']!r}."))
    ...     def __init__(self, layers=None):
    ...         self.layers = layers
    >>> Detector(layer="fc1")
    Traceback (most recent call last):
    ...
    TypeError: Detector: layer is now layers; pass layers='fc1'.
    """
    names = tuple(names)

    def decorate(init):
        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            given = {name: kwargs[name] for name in names if name in kwargs}
            if given:
                raise TypeError(explain(type(self).__name__, given))
            init(self, *args, **kwargs)
        return checked_init
    return decorate


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
