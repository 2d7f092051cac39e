"""Dask arrays in, Dask arrays out: attack a larger-than-memory data set block by block.

Dask is optional; nothing here imports it unless the input already is a Dask array.
"""

import numpy as np


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "map_blocks")


def map_row_blocks(func, X, y=None):
    """Apply ``func(X_block[, y_block])`` to each row-chunk of a Dask array, lazily.

    ``X`` is rechunked to hold all its columns in each chunk (rows stay chunked as
    given); ``y`` (a Dask or numpy array of shape (n_samples,)) is chunked like the
    rows of ``X``. The result is a Dask array with the chunks of ``X`` and the
    floating dtype of ``X`` (float64 for other dtypes); nothing is computed.
    """
    import dask.array as da

    if X.ndim != 2:
        raise ValueError(f"Expected a 2-d Dask array, got {X.ndim} dimensions.")
    X = X.rechunk({1: -1})
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if y is None:
        return X.map_blocks(func, dtype=dtype, meta=np.empty((0, 0), dtype))
    if is_dask_array(y):
        y = y.rechunk((X.chunks[0],))
    else:
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"X has {X.shape[0]} samples but y has shape {y.shape}.")
        y = da.from_array(y, chunks=(X.chunks[0],))
    return da.map_blocks(lambda xb, yb: func(xb, yb[:, 0]), X, y[:, None], dtype=dtype,
                         chunks=X.chunks, meta=np.empty((0, 0), dtype))
