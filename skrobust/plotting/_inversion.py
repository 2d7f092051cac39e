import numpy as np


def plot_inversion_grid(X, inversions, *, image_shape=(28, 28), n_images=10, cmap="gray",
                        vmin=0.0, vmax=1.0):
    """Original images above their reconstructions by one or several inversion attacks.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original images, flattened.
    inversions : array-like of shape (n_samples, n_features) or dict of str to array-like
        Reconstructions of ``X``; a dict gives one labelled row per attacked model.
    image_shape : tuple of int, default=(28, 28)
        Shape of one image.
    n_images : int, default=10
        Number of columns (the first ``n_images`` samples).
    cmap : str, default="gray"
        Matplotlib colour map.
    vmin, vmax : float, default=0.0, 1.0
        Pixel range shown.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.plotting import plot_inversion_grid
    >>> X = np.zeros((3, 784))
    >>> fig = plot_inversion_grid(X, {"normal": X, "suppressed": X}, n_images=3)
    >>> len(fig.axes)
    9
    """
    import matplotlib.pyplot as plt

    if not isinstance(inversions, dict):
        inversions = {"inverted": inversions}
    rows = {"original": np.asarray(X), **{k: np.asarray(v) for k, v in inversions.items()}}
    n = min(n_images, len(X))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 0.8, 1.2 * len(rows)),
                             squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        if images.shape[0] < n:
            raise ValueError(f"{label!r} has {images.shape[0]} images; {n} are shown.")
        for c in range(n):
            ax_ = axes[r, c]
            ax_.imshow(images[c].reshape(image_shape), cmap=cmap, vmin=vmin, vmax=vmax)
            ax_.set_xticks([])
            ax_.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return fig
