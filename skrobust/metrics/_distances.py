"""How far adversarial examples are from the originals."""

import numpy as np
from sklearn.utils.validation import check_array


def _pair(X, X_adv):
    X = check_array(X, dtype=np.float64)
    X_adv = check_array(X_adv, dtype=np.float64)
    if X.shape != X_adv.shape:
        raise ValueError(f"X has shape {X.shape} but X_adv has shape {X_adv.shape}.")
    return X, X_adv


def _lp(rows, p):
    if p == 0:
        return np.count_nonzero(rows, axis=1).astype(np.float64)
    if p == 2:
        return np.linalg.norm(rows, axis=1)
    return np.abs(rows).max(axis=1, initial=0.0)


def avg_lp_distance(X, X_adv, *, p=2, relative=False):
    """Average Lp distance between original and adversarial rows.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original inputs.
    X_adv : array-like of shape (n_samples, n_features)
        Adversarial inputs.
    p : {0, 2, "inf"}, default=2
        The norm: L0 counts changed features, L2 is Euclidean, Linf the largest
        change.
    relative : bool, default=False
        If False, the absolute distance ``||x_adv - x||_p``. If True, MindArmour's
        relative form ``||x_adv - x||_p / ||x||_p`` (rows with ``||x||_p = 0`` count
        as 0). For images in [0, 1] whose brightest pixel is 1, both Linf forms agree.

    Returns
    -------
    float
        Mean over rows (lower means less visible perturbations).

    Examples
    --------
    >>> from skrobust.metrics import avg_lp_distance
    >>> avg_lp_distance([[0.0, 1.0]], [[0.3, 1.0]], p="inf")
    0.3
    """
    X, X_adv = _pair(X, X_adv)
    if p in ("inf", np.inf):
        p = np.inf
    elif p not in (0, 2):
        raise ValueError(f'p={p!r} is not supported; use 0, 2 or "inf".')
    distance = _lp(X_adv - X, p)
    if relative:
        scale = _lp(X, p)
        distance = np.divide(distance, scale, out=np.zeros_like(distance), where=scale > 0)
    return float(distance.mean()) if len(distance) else 0.0


def avg_ssim(X, X_adv, *, image_shape=(28, 28), data_range=1.0):
    """Average structural similarity (SSIM) between original and adversarial images.

    Computed per image with :func:`skimage.metrics.structural_similarity`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Original images, flattened.
    X_adv : array-like of shape (n_samples, n_features)
        Adversarial images, flattened.
    image_shape : tuple of int, default=(28, 28)
        Shape of one image: ``(height, width)`` or ``(height, width, channels)``.
    data_range : float, default=1.0
        Dynamic range of the pixel values.

    Returns
    -------
    float
        Mean SSIM in [-1, 1] (1 = identical; higher means less visible changes).

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP 2004.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.metrics import avg_ssim
    >>> X = np.random.RandomState(0).rand(2, 784)
    >>> avg_ssim(X, X)
    1.0
    """
    from skimage.metrics import structural_similarity

    X, X_adv = _pair(X, X_adv)
    if int(np.prod(image_shape)) != X.shape[1]:
        raise ValueError(
            f"image_shape={tuple(image_shape)} holds {int(np.prod(image_shape))} values "
            f"but rows have {X.shape[1]} features."
        )
    channel_axis = -1 if len(image_shape) == 3 else None
    scores = [
        structural_similarity(a.reshape(image_shape), b.reshape(image_shape),
                              data_range=data_range, channel_axis=channel_axis)
        for a, b in zip(X, X_adv)
    ]
    return float(np.mean(scores)) if scores else 0.0
