import numpy as np

from ..utils._docstrings import fill_doc


def image_grid(rows, *, image_shape, n_images, cmap, vmin=0.0, vmax=1.0, cell=(1.3, 1.5),
               margin=0.0, label_size=None):
    """Rows of images, the first ``n_images`` of each, under one label per row.

    The drawing of :func:`plot_adversarial_grid` and :func:`plot_inversion_grid`.

    Parameters
    ----------
    rows : dict of str to (array-like, list or None)
        Row label -> ``(images, titles)``: flattened images of shape ``(n_samples,
        n_features)``, and None or one ``(text, colour)`` title per shown image.
        The first row sets the number of columns, ``min(n_images, len(images))``;
        every other row must hold that many images.
    image_shape : tuple of int
        Shape of one image.
    n_images : int
        Most columns.
    cmap : str
        Matplotlib colour map.
    vmin, vmax : float, default=0.0, 1.0
        Pixel range shown.
    cell : (float, float), default=(1.3, 1.5)
        Width and height in inches of one image.
    margin : float, default=0.0
        Extra width in inches (for long row labels).
    label_size : float, default=None
        Font size of the row labels; Matplotlib's default when None.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    rows = {label: (np.asarray(images), titles) for label, (images, titles) in rows.items()}
    n = min(n_images, len(next(iter(rows.values()))[0]))
    for label, (images, _) in rows.items():
        if images.shape[0] < n:
            raise ValueError(f"{label!r} has {images.shape[0]} images; {n} are shown.")
    fig, axes = plt.subplots(len(rows), n, figsize=(cell[0] * n + margin, cell[1] * len(rows)),
                             squeeze=False)
    for r, (label, (images, titles)) in enumerate(rows.items()):
        for c in range(n):
            ax_ = axes[r, c]
            ax_.imshow(images[c].reshape(image_shape), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                text, colour = titles[c]
                ax_.set_title(text, color=colour, fontsize=9)
            ax_.set_xticks([])
            ax_.set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=label_size)
    fig.tight_layout()
    return fig


@fill_doc
def plot_adversarial_grid(X, X_adv, y_true, y_pred, y_pred_adv, *, image_shape=(28, 28),
                          n_images=10, cmap="gray"):
    """Clean images above their adversarial versions, with predictions.

    Titles show the prediction, green when right and red when wrong.

    Parameters
    ----------
    X, X_adv : array-like of shape (n_samples, n_features)
        Clean and adversarial images, flattened.
    {y_true}
    y_pred, y_pred_adv : array-like of shape (n_samples,)
        Predictions on the clean and on the adversarial images.
    {image_grid}

    {figure_returns}

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.plotting import plot_adversarial_grid
    >>> X = np.zeros((3, 784))
    >>> fig = plot_adversarial_grid(X, X, [0, 1, 2], [0, 1, 2], [0, 2, 1], n_images=3)
    >>> [ax.get_title() for ax in fig.axes[3:]]  # the adversarial row
    ['pred 0', 'pred 2', 'pred 1']
    """
    n = min(n_images, len(X))

    def titles(preds):
        return [(f"pred {preds[c]}", "green" if preds[c] == y_true[c] else "red")
                for c in range(n)]

    return image_grid({"clean": (X, titles(y_pred)), "adversarial": (X_adv, titles(y_pred_adv))},
                      image_shape=image_shape, n_images=n, cmap=cmap)
