"""Image inversion attack (Mahendran & Vedaldi, 2015) and its report."""

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import Bunch, check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
from tqdm.auto import tqdm

from ..metrics import avg_lp_distance, avg_ssim
from ..metrics._adversarial import proba_and_index
from ..models._victim import fit_victim, needs_fit, victim_torch_model
from ..utils._features import LayerCapture, extract_features
from ..utils._torch import eval_mode, make_generator, resolve_device, to_numpy, to_tensor
from ..utils._validation import check_bound
from ._common import predict_proba_with_classes

FLOAT_DTYPES = [np.float64, np.float32]
INIT_SCALE = 0.05  # MindArmour starts from uniform noise scaled by 0.05


def total_variation(images):
    """MindArmour's smoothness term per image: squared differences of adjacent rows
    and of adjacent columns, each averaged over a row (a column) and summed.

    ``images`` has shape ``(n, channels, height, width)``; returns shape ``(n,)``.
    """
    _, channels, height, width = images.shape
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).pow(2).sum((1, 2, 3))
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).pow(2).sum((1, 2, 3))
    return dy / (channels * width) + dx / (channels * height)


def inversion_loss(features, target, images, weights):
    """Per-sample inversion loss ``w0 * ||f(x) - f0||^2 / ||f0||^2 + w1 * TV(x) + w2 * mean(x^2)``.

    Parameters
    ----------
    features : Tensor of shape (n, d)
        Current features ``f(x)``.
    target : Tensor of shape (n, d)
        Features to match ``f0``.
    images : Tensor of shape (n, channels, height, width)
        Current reconstructions ``x``.
    weights : sequence of 3 floats
        Weights of the feature, total-variation and L2 terms.

    Returns
    -------
    Tensor of shape (n,)
    """
    scale = target.pow(2).sum(1).clamp_min(torch.finfo(target.dtype).tiny)
    feature_term = (features - target).pow(2).sum(1) / scale
    l2_term = images.pow(2).flatten(1).mean(1)
    return (weights[0] * feature_term + weights[1] * total_variation(images)
            + weights[2] * l2_term)


class ImageInversionAttack(TransformerMixin, BaseEstimator):
    """Reconstruct inputs from a layer's features (image inversion attack).

    Starting from faint uniform noise, Adam minimises per image the weighted sum
    of the normalised feature-matching loss ``||f(x) - f0||^2 / ||f0||^2``, the total
    variation of ``x`` (smoothness, as in MindArmour) and the mean squared pixel
    (an L2 prior), keeping ``x`` in ``[clip_min, clip_max]`` after every step.
    ``transform(X)`` computes X's features at ``layer`` and inverts them (the
    scenario where features leak); :meth:`invert` inverts given feature vectors.
    Images are reconstructed independently of each other.

    Parameters
    ----------
    estimator : FrozenEstimator, torch.nn.Module or skorch classifier, default=None
        The model whose features leak. A ``FrozenEstimator`` or a
        ``torch.nn.Module`` is used as is (the usual case: a trained model);
        anything else (None: a small MLP from :mod:`skrobust.models`) is cloned
        and fitted on ``(X, y)`` in ``fit``, which then needs ``y``.
    layer : str, default=None
        Name of the inverted layer as in ``module.named_modules()`` (``"fc1"`` of
        :class:`~skrobust.models.LeNet5`). Required.
    n_iter : int, default=100
        Adam iterations per image.
    loss_weights : tuple of 3 floats, default=(1.0, 0.1, 5.0)
        Weights of the feature, total-variation and L2 terms.
    lr : float, default=0.01
        Adam's learning rate (roughly the pixel change per iteration).
    clip_min, clip_max : float or None, default=0.0, 1.0
        Bounds of the reconstructed pixels; None disables a bound.
    image_shape : tuple of int or None, default=(28, 28)
        ``(height, width)`` or ``(channels, height, width)`` of one flattened input
        row, for the total variation. None treats a row as a 1-pixel-high image.
    batch_size : int, default=256
        Images optimised together (memory only; results do not depend on it).
    device : str or torch.device, default="cpu"
        Device of a victim fitted here; a given victim runs on its own device.
    random_state : int, RandomState instance or None, default=None
        Seeds the starting noise (one noise image shared by all rows) and a
        victim fitted here.
    verbose : int, default=0
        Show a progress bar over iterations when > 0.

    Attributes
    ----------
    estimator_ : FrozenEstimator, torch.nn.Module or skorch classifier
        The victim.
    n_features_in_ : int
        Number of input features (pixels) seen in ``fit``.
    n_layer_features_ : int
        Width of the flattened output of ``layer``.
    seed_ : int
        Seed drawn from ``random_state`` in ``fit``.

    See Also
    --------
    inversion_report : L2 distance, SSIM and judge confidence of the inversions.
    SuppressPrivacyClassifier : Training that makes inversions less faithful.

    References
    ----------
    A. Mahendran and A. Vedaldi, "Understanding deep image representations by
    inverting them", CVPR 2015.

    MindArmour, ``mindarmour.privacy.evaluation.ImageInversionAttack``, Huawei, 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.models import LeNet5
    >>> from skrobust.privacy import ImageInversionAttack
    >>> X = np.random.RandomState(0).rand(2, 784).astype(np.float32)
    >>> attack = ImageInversionAttack(LeNet5(), layer="fc1", n_iter=5, random_state=0)
    >>> X_inv = attack.fit(X).transform(X)
    >>> X_inv.shape, bool(X_inv.min() >= 0 and X_inv.max() <= 1)
    ((2, 784), True)
    """

    def __init__(self, estimator=None, *, layer=None, n_iter=100, loss_weights=(1.0, 0.1, 5.0),
                 lr=0.01, clip_min=0.0, clip_max=1.0, image_shape=(28, 28), batch_size=256,
                 device="cpu", random_state=None, verbose=0):
        self.estimator = estimator
        self.layer = layer
        self.n_iter = n_iter
        self.loss_weights = loss_weights
        self.lr = lr
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        if not isinstance(self.n_iter, numbers.Integral) or isinstance(self.n_iter, bool) \
                or self.n_iter < 0:
            raise ValueError(f"n_iter={self.n_iter!r} must be an integer >= 0.")
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be a positive integer.")
        if not isinstance(self.lr, numbers.Real) or not np.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a positive float.")
        try:
            weights = [float(w) for w in self.loss_weights]
        except (TypeError, ValueError):
            weights = []
        if len(weights) != 3 or not all(np.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(
                f"loss_weights={self.loss_weights!r} must be 3 floats >= 0: the weights of "
                "the feature, total-variation and L2 terms."
            )
        if np.ndim(self.clip_min) or np.ndim(self.clip_max):
            raise ValueError("clip_min and clip_max must be floats or None.")
        lo = check_bound(self.clip_min, "clip_min", 1)
        hi = check_bound(self.clip_max, "clip_max", 1)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(
                f"clip_min={self.clip_min} > clip_max={self.clip_max}; the lower bound must "
                "not exceed the upper bound."
            )
        resolve_device(self.device)
        return weights, lo, hi

    def _torch_model(self):
        # classes_ exists only when fit trained the victim (then it maps net columns)
        return victim_torch_model(self.estimator, self.estimator_,
                                  getattr(self, "classes_", None))

    def _image_shape(self, n_features):
        if self.image_shape is None:
            return (1, 1, n_features)
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) not in (2, 3) or int(np.prod(shape)) != n_features:
            raise ValueError(
                f"image_shape={self.image_shape!r} does not describe rows of {n_features} "
                "features; give (height, width) or (channels, height, width) with that "
                "many values, or None."
            )
        return shape if len(shape) == 3 else (1, *shape)

    def fit(self, X, y=None):
        """Record the victim, the input width and the inverted layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs of the victim (only their width is used unless the victim is
            fitted here).
        y : array-like of shape (n_samples,), default=None
            Labels; needed only when the victim is fitted here.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        if y is None:
            X = validate_data(self, X, dtype=FLOAT_DTYPES)
        else:
            X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        self._check_params()
        self._image_shape(X.shape[1])
        if self.layer is None:
            raise ValueError("layer is required: the name of the layer whose features leak.")
        self.seed_ = check_random_state(self.random_state).randint(2**31 - 1)
        if needs_fit(self.estimator):
            if y is None:
                raise ValueError(
                    "y is None but the victim must be fitted here; pass y, or a trained "
                    "model wrapped in sklearn.frozen.FrozenEstimator (or a torch module)."
                )
            self.classes_, y_index = np.unique(y, return_inverse=True)
            self.estimator_ = fit_victim(self.estimator, X, y, y_index,
                                         n_classes=len(self.classes_), device=self.device,
                                         seed=self.seed_)
        else:
            self.estimator_ = self.estimator
        model = self._torch_model()
        probe = torch.zeros(1, X.shape[1], device=model.device)
        # the layers after the inverted one are never needed: stop the pass there
        with LayerCapture(model.module, self.layer, stop=True) as capture, \
                eval_mode(model.module), torch.no_grad():
            self.n_layer_features_ = int(capture(probe)[self.layer].shape[1])
        return self

    def transform(self, X):
        """Reconstruct X from its features at ``layer``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Original inputs; only their features are used.

        Returns
        -------
        X_inv : ndarray of shape (n_samples, n_features)
            Reconstructions, of X's float dtype, within ``[clip_min, clip_max]``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        features = extract_features(self.estimator_, X, self.layer, batch_size=self.batch_size)
        return self._invert(features, X.dtype)[0]

    def invert(self, features, *, return_loss=False):
        """Reconstruct inputs from given feature vectors of ``layer``.

        Parameters
        ----------
        features : array-like of shape (n_samples, n_layer_features)
            Flattened outputs of ``layer``, ``n_layer_features_`` per row (e.g. from
            :func:`skrobust.utils.extract_features`).
        return_loss : bool, default=False
            Also return the loss of every image at every iteration.

        Returns
        -------
        X_inv : ndarray of shape (n_samples, n_features)
            Reconstructions, of the features' float dtype.
        loss_history : ndarray of shape (n_samples, n_iter + 1)
            Only with ``return_loss=True``: the loss of each image before each
            iteration and, last, of the returned reconstruction.
        """
        check_is_fitted(self)
        features = check_array(features, dtype=FLOAT_DTYPES)
        if features.shape[1] != self.n_layer_features_:
            raise ValueError(
                f"features has {features.shape[1]} columns but layer {self.layer!r} "
                f"outputs {self.n_layer_features_} values per sample."
            )
        X_inv, history = self._invert(features, features.dtype)
        return (X_inv, history) if return_loss else X_inv

    def _invert(self, features, dtype):
        weights, lo, hi = self._check_params()
        model = self._torch_model()
        module, device = model.module, model.device
        capture = LayerCapture(module, self.layer, stop=True)
        shape = self._image_shape(self.n_features_in_)
        generator = make_generator(self.seed_, device)
        low = 0.0 if lo is None else lo
        span = 1.0 if lo is None or hi is None else hi - lo
        start_image = low + INIT_SCALE * span * torch.rand(
            self.n_features_in_, generator=generator, device=device)
        X_inv = np.empty((len(features), self.n_features_in_), dtype=dtype)
        history = np.empty((len(features), self.n_iter + 1))
        bar = tqdm(total=self.n_iter * -(-len(features) // self.batch_size),
                   desc=type(self).__name__, unit="it", disable=not self.verbose, leave=False)

        def loss_of(x, target):
            feats = capture(x)[self.layer]
            return inversion_loss(feats, target, x.reshape(len(x), *shape), weights)

        with capture, eval_mode(module), bar:
            for start in range(0, len(features), self.batch_size):
                stop = start + self.batch_size
                target = to_tensor(features[start:stop], device)
                x = start_image.expand(len(target), -1).clone().requires_grad_(True)
                optimizer = torch.optim.Adam([x], lr=self.lr)
                for it in range(self.n_iter):
                    loss = loss_of(x, target)
                    history[start:stop, it] = to_numpy(loss, np.float64)
                    (x.grad,) = torch.autograd.grad(loss.sum(), x)
                    optimizer.step()
                    with torch.no_grad():
                        x.clamp_(lo, hi)
                    bar.update()
                with torch.no_grad():
                    history[start:stop, -1] = to_numpy(loss_of(x, target), np.float64)
                X_inv[start:stop] = to_numpy(x, dtype)
        if lo is not None or hi is not None:
            X_inv = np.clip(X_inv, lo, hi).astype(dtype, copy=False)
        return X_inv, history

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def inversion_report(X_orig, X_inv, y, judge=None, *, image_shape=(28, 28), data_range=1.0):
    """How faithful image inversions are: L2 distance, SSIM and a judge's confidence.

    Parameters
    ----------
    X_orig : array-like of shape (n_samples, n_features)
        Original images, flattened.
    X_inv : array-like of shape (n_samples, n_features)
        Their reconstructions.
    y : array-like of shape (n_samples,)
        True labels of the originals.
    judge : fitted classifier or torch.nn.Module, default=None
        A model trained independently of the attacked one; its average
        probability of the true label on the reconstructions says how
        recognisable they are. A classifier with ``predict_proba`` (and
        ``classes_``) or a torch module returning logits. If None, no
        confidence is reported.
    image_shape : tuple of int, default=(28, 28)
        Shape of one image for SSIM (see :func:`skrobust.metrics.avg_ssim`).
    data_range : float, default=1.0
        Dynamic range of the pixels for SSIM.

    Returns
    -------
    report : Bunch
        ``l2``: average relative L2 distance ``||x_inv - x|| / ||x||`` (MindArmour's;
        lower = closer); ``ssim``: average SSIM (higher = closer); ``confidence``:
        the judge's average true-label probability on ``X_inv`` (None without a
        judge); ``n_samples``.

    Examples
    --------
    >>> import numpy as np
    >>> from skrobust.privacy import inversion_report
    >>> X = np.random.RandomState(0).rand(3, 784)
    >>> report = inversion_report(X, X, [0, 1, 2])
    >>> report.l2, report.ssim, report.confidence
    (0.0, 1.0, None)
    """
    X_orig = check_array(X_orig, dtype=np.float64)
    X_inv = check_array(X_inv, dtype=np.float64)
    y = column_or_1d(y)
    if len(y) != len(X_orig):
        raise ValueError(f"X_orig has {len(X_orig)} samples but y has {len(y)}.")
    confidence = None
    if judge is not None:
        proba, classes = predict_proba_with_classes(judge, X_inv)
        proba, index = proba_and_index(y, proba, classes, name="y")
        confidence = float(proba[np.arange(len(index)), index].mean())
    return Bunch(
        l2=avg_lp_distance(X_orig, X_inv, p=2, relative=True),
        ssim=avg_ssim(X_orig, X_inv, image_shape=image_shape, data_range=data_range),
        confidence=confidence,
        n_samples=len(X_orig),
    )
