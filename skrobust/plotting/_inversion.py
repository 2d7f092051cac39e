from ..utils._docstrings import fill_doc
from ._grid import image_grid


@fill_doc
def plot_inversion_grid(X, inversions, *, image_shape=(28, 28), n_images=10, cmap="gray",
                        vmin=0.0, vmax=1.0):
    """Original images above their reconstructions by one or several inversion attacks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original images, flattened.
    inversions : array-like of shape (n_samples, n_features) or dict of str to array-like
        Reconstructions of ``X``; a dict gives one labelled row per attacked model.
    {image_grid}
    vmin, vmax : float, default=0.0, 1.0
        Pixel range shown.

    {figure_returns}

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.plotting import plot_inversion_grid
    >>> X = np.random.RandomState(0).rand(3, 64)
    >>> fig = plot_inversion_grid(X, {"normal": X, "suppressed": 0 * X}, image_shape=(8, 8),
    ...                           n_images=3)
    >>> [ax.get_ylabel() for ax in fig.axes[::3]]  # one row per image set
    ['original', 'normal', 'suppressed']
    """
    if not isinstance(inversions, dict):
        inversions = {"inverted": inversions}
    rows = {"original": (X, None), **{k: (v, None) for k, v in inversions.items()}}
    return image_grid(rows, image_shape=image_shape, n_images=n_images, cmap=cmap, vmin=vmin,
                      vmax=vmax, cell=(1.1, 1.2), margin=0.8, label_size=8)
