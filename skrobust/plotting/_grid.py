import numpy as np


def plot_adversarial_grid(X, X_adv, y_true, y_pred, y_pred_adv, *, image_shape=(28, 28),
                          n_images=10, cmap="gray"):
    """Clean images above their adversarial versions, with predictions.

    Titles show the prediction, green when right and red when wrong.

    Parameters
    ----------
    X, X_adv : array-like of shape (n_samples, n_features)
        Clean and adversarial images, flattened.
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred, y_pred_adv : array-like of shape (n_samples,)
        Predictions on the clean and on the adversarial images.
    image_shape : tuple of int, default=(28, 28)
        Shape of one image.
    n_images : int, default=10
        Number of columns (the first ``n_images`` samples).
    cmap : str, default="gray"
        Matplotlib colour map.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.plotting import plot_adversarial_grid
    >>> X = np.zeros((3, 784))
    >>> fig = plot_adversarial_grid(X, X, [0, 1, 2], [0, 1, 2], [0, 2, 1], n_images=3)
    >>> len(fig.axes)
    6
    """
    import matplotlib.pyplot as plt

    n = min(n_images, len(X))
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.0), squeeze=False)
    rows = ((np.asarray(X), y_pred, "clean"), (np.asarray(X_adv), y_pred_adv, "adversarial"))
    for r, (images, preds, label) in enumerate(rows):
        for c in range(n):
            ax_ = axes[r, c]
            ax_.imshow(images[c].reshape(image_shape), cmap=cmap, vmin=0, vmax=1)
            right = preds[c] == y_true[c]
            ax_.set_title(f"pred {preds[c]}", color="green" if right else "red", fontsize=9)
            ax_.set_xticks([])
            ax_.set_yticks([])
        axes[r, 0].set_ylabel(label)
    fig.tight_layout()
    return fig
