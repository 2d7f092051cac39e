"""Square Attack: a score-based black-box attack that needs only class scores."""

from contextlib import nullcontext

import numpy as np
import torch
from sklearn.base import clone
from tqdm.auto import tqdm

from ..models._skorch import is_skorch_net
from ..models._trained_net import TrainedNetClassifierMixin
from ..models._victim import needs_fit
from ..utils._differentiable import TorchModel, has_torch_hook, unfrozen, victim_input
from ..utils._docstrings import fill_doc
from ..utils._torch import copy_into, eval_mode, to_device, to_numpy
from ._base import (CONSTRAINED_ATTACK_PARAMS, BaseAttack, _torch_dtype, finite, resolve_norm,
                    share)
from ._runs import row_keys
from .functional import project_exact, square, two_class_scores


def resolve_image_shape(image_shape, n_features, *, constrained=False):
    """``(C, H, W)`` for the Square Attack's windows, or None (tabular search).

    ``"auto"`` reads ``n_features`` as a square single-channel image (784 -> (1, 28, 28))
    when it is a perfect square of side >= 4 and no feature constraints are set, and
    as tabular data otherwise.
    """
    if image_shape is None:
        return None
    if isinstance(image_shape, str):
        if image_shape != "auto":
            raise ValueError(f"image_shape={image_shape!r} is not supported; use \"auto\", "
                             "None (tabular data) or a tuple (H, W) or (C, H, W).")
        side = int(round(np.sqrt(n_features)))
        if constrained or side < 4 or side * side != n_features:
            return None
        return (1, side, side)
    try:
        shape = tuple(int(v) for v in image_shape)
        valid = all(int(v) == v for v in image_shape)
    except (TypeError, ValueError):
        shape, valid = (), False
    if not valid or len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape={image_shape!r} must be a tuple of positive ints "
                         "(H, W) or (C, H, W) (channels first), \"auto\" or None.")
    if len(shape) == 2:
        shape = (1, *shape)
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape={image_shape!r} holds {int(np.prod(shape))} values but X has "
            f"{n_features} features; give the (C, H, W) whose product is n_features, the "
            "order in which X's columns were flattened."
        )
    return shape


@fill_doc
class SquareAttackTransformer(BaseAttack):
    """Square Attack (Linf and L2) as a scikit-learn transformer: black-box, score-based.

    Random search that needs only the victim's class scores (``predict_proba``, else
    ``decision_function``, or a torch module's logits), so non-differentiable
    victims (input quantisation, random forests, gradient boosting, pipelines with
    one-hot encoders) can be attacked, and masked gradients do not stop it. It
    minimises the margin ``score(y) - max_{k != y} score(k)`` and keeps a change
    only when it lowers the margin (Andriushchenko et al., 2020):

    - ``norm="inf"``: the start is ``x + eps * s`` with one random sign per channel
      and image column (vertical stripes); each query sets a random square window
      to ``x +- eps``, one random sign per channel. The window covers a share ``p``
      of the pixels, from ``p_init`` down on the paper's schedule.
    - ``norm=2``: the start is a 5x5 grid of the paper's centred patterns scaled to
      ``||delta||_2 = eps``; each query moves the perturbation's mass from a second
      window into a new pattern in the first one.

    Images are the rows of X reshaped to ``image_shape`` (channels first). For
    tabular data (``image_shape=None``, or feature constraints), where neighbouring
    columns are unrelated, the "window" is a random subset of a share ``p`` of the
    features (Linf only). The clean inputs are queried once; then only samples not
    fooled yet are queried, at most ``n_queries`` times per restart, and each
    restart runs on the samples still standing.

    Windows and signs are drawn per row from ``random_state`` and the row's values
    (a counter-based generator, never the global RNG), so a row's result does not
    depend on the other rows, their order or the chunking. With a torch victim the
    float rounding of a forward pass can depend on the batch size, which can change
    a near-tie decision and so a row's path. Supports the feature constraints of
    :class:`PGDTransformer` with ``norm="inf"`` (per-feature ``eps``, ``eps_scale``,
    ``immutable``, ``integer_features``, ``clip_min="data"``).

    Parameters
    ----------
    estimator : classifier, FrozenEstimator or torch.nn.Module, default=None
        Victim: any classifier with ``predict_proba`` or ``decision_function``
        (scikit-learn, skorch, skrobust) or a torch module returning logits. A
        ``FrozenEstimator`` or a module is used as is; anything else is cloned and
        fitted in ``fit``. If None, a small MLP from :mod:`skrobust.models`. The
        scores searched are the logits of a module, a skorch net or a net trained
        by skrobust (``AdversarialTrainer``, ``SuppressPrivacyClassifier``), else
        ``log(predict_proba)`` or ``decision_function``.
    eps : float or array-like of shape (n_features,), default=0.3
        Radius of the ``norm`` ball; per feature when an array (``norm="inf"``, see
        :class:`PGDTransformer`).
    norm : {"inf", 2}, default="inf"
        Norm of the ball. ``2`` needs an image (``image_shape``) and no feature
        constraints.
    n_queries : int, default=1000
        Queries of the victim per sample and restart, the random start included
        (AutoAttack uses 5000).
    p_init : float, default=0.8
        Initial share of the pixels (features) a query changes, in (0, 1]; 0.8 is
        AutoAttack's value.
    n_restarts : int, default=1
        Runs from new random starts, each on the samples still standing.
    image_shape : "auto", tuple of int or None, default="auto"
        ``(H, W)`` or ``(C, H, W)`` of the images X's rows flatten (channels first).
        ``"auto"``: a square single-channel image when ``n_features`` is a perfect
        square of side >= 4 (784 -> ``(1, 28, 28)``) and no feature constraint is
        set, else tabular. None: tabular data.
    {targeted}
    {feature_constraints}
    batch_size : int, default=1024
        Samples attacked together (one victim call per query and batch).
    device : str or torch.device, default="cpu"
        Device on which a default victim fitted here is trained.
    random_state : int, RandomState instance or None, default=None
        Seeds the random search (and the training of a victim fitted here).
    {verbose}

    {attributes}
    image_shape_ : tuple (C, H, W) or None
        The image layout in use; None for the tabular search.
    {fitted_constraints_}
    {seed_}

    See Also
    --------
    PGDTransformer : The white-box gradient attack, for differentiable victims.

    References
    ----------
    M. Andriushchenko, F. Croce, N. Flammarion and M. Hein, "Square Attack: a
    query-efficient black-box adversarial attack via random search", ECCV 2020.

    Examples
    --------
    {example_data}
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skrobust.attacks import SquareAttackTransformer
    >>> forest = RandomForestClassifier(n_estimators=10, random_state=0)
    >>> attack = SquareAttackTransformer(forest, eps=0.1, n_queries=50, random_state=0)
    >>> X_adv = attack.fit(X, y).generate(X, y)
    >>> bool(abs(X_adv - X).max() <= 0.1 + 1e-9)  # up to float rounding
    True
    """

    _supports_constraints = True
    _parameter_constraints = {
        **CONSTRAINED_ATTACK_PARAMS,
        "norm": "no_validation",  # resolve_norm
        "n_queries": [finite(1, integer=True)],
        "p_init": [share(closed="right")],
        "n_restarts": [finite(1, integer=True)],
        "image_shape": "no_validation",  # resolve_image_shape
    }

    def __init__(self, estimator=None, *, eps=0.3, norm="inf", n_queries=1000, p_init=0.8,
                 n_restarts=1, image_shape="auto", targeted=False, clip_min=0.0,
                 clip_max=1.0, eps_scale=None, immutable=None, integer_features=None,
                 batch_size=1024, device="cpu", random_state=None, verbose=0):
        self.estimator = estimator
        self.eps = eps
        self.norm = norm
        self.n_queries = n_queries
        self.p_init = p_init
        self.n_restarts = n_restarts
        self.image_shape = image_shape
        self.targeted = targeted
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.eps_scale = eps_scale
        self.immutable = immutable
        self.integer_features = integer_features
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _fit_constraints(self, X):
        """The data-dependent settings: bounds, per-feature scale and image layout."""
        super()._fit_constraints(X)
        self.image_shape_ = self._image_shape()

    def _image_shape(self):
        return resolve_image_shape(self.image_shape, self.n_features_in_,
                                   constrained=bool(self._constraint_params()))

    def _check_attack_params(self):
        image_shape = self._image_shape()
        if resolve_norm(self.norm) == 2:
            if self._constraint_params():
                raise ValueError(
                    f"norm=2 does not take the feature constraints "
                    f"{self._constraint_params()}; use norm=\"inf\" for constrained "
                    "(tabular) attacks, or a scalar eps and numeric clip bounds.")
            if image_shape is None:
                raise ValueError(
                    f"norm=2 needs images but image_shape={self.image_shape!r} does not "
                    f"give one for {self.n_features_in_} features; pass image_shape=(C, H, "
                    "W), the layout X's rows flatten, or use norm=\"inf\" on tabular data.")

    def _fit_victim(self, X, y, y_index):
        estimator = self.estimator
        if (needs_fit(estimator) and estimator is not None and not is_skorch_net(estimator)
                and not has_torch_hook(estimator)):
            return clone(estimator).fit(X, y)
        return super()._fit_victim(X, y, y_index)

    def _victim(self):
        return unfrozen(self.estimator_)

    def _uses_torch(self):
        # a net trained by skrobust predicts the softmax of its torch model's logits:
        # query those (no float round trip through probabilities)
        victim = self._victim()
        return (isinstance(victim, (torch.nn.Module, TrainedNetClassifierMixin))
                or is_skorch_net(victim))

    def _torch_model(self):
        """The victim's torch model, or only the label encoding of a score-only one."""
        if self._uses_torch():
            return super()._torch_model()
        victim = self._victim()
        if not (hasattr(victim, "predict_proba") or hasattr(victim, "decision_function")):
            raise TypeError(
                f"estimator={type(victim).__name__} has neither predict_proba nor "
                "decision_function: the Square attack needs class scores."
            )
        return TorchModel(None, torch.device("cpu"), np.asarray(victim.classes_))

    def _scores(self, X):
        """Class scores (log-probabilities, or decision values) of a score-only victim."""
        victim = self._victim()
        X = victim_input(victim, X)
        if hasattr(victim, "predict_proba"):
            # floored at the smallest normal float64 only, not at a round number: a
            # floor of 1e-12 made every margin above 27.6 equal, and the search blind
            return np.log(np.maximum(np.asarray(victim.predict_proba(X), dtype=np.float64),
                                     np.finfo(np.float64).tiny))
        scores = np.asarray(victim.decision_function(X), dtype=np.float64)
        return np.column_stack([np.zeros(len(X)), scores]) if scores.ndim == 1 else scores

    def _margin(self, scores, y):
        """``own - best other`` (untargeted) or ``best other - target`` (targeted)."""
        own = scores.gather(1, y[:, None])[:, 0]
        other = scores.scatter(1, y[:, None], -torch.inf).amax(dim=1)
        return other - own if self.targeted else own - other

    def _attack(self, X, y_index):
        """Attack ``X`` batch by batch; each batch is projected exactly in X's dtype
        (ball, box or feature constraints) before its copy into the output."""
        norm = resolve_norm(self.norm)
        constraints = self._constraints()
        if self._uses_torch():
            model = self._torch_model()
            module, device, dtype = model.module, model.device, torch.float32

            def score(x):
                return two_class_scores(module(x)).to(torch.float64)
        else:  # scores from numpy: search in float64 on the CPU
            module, device, dtype = None, torch.device("cpu"), torch.float64

            def score(x):
                return torch.as_tensor(self._scores(to_numpy(x, np.float64)))
        if constraints is None:
            eps, budget = float(self.eps), None
            lo, hi = self._bounds(X.shape[1])
            bounds = {t: tuple(None if b is None else torch.as_tensor(b, dtype=t, device=device)
                               for b in (lo, hi))
                      for t in {dtype, _torch_dtype(X.dtype)}}
        else:
            eps = constraints.radius
            budget = torch.as_tensor(constraints.budget, dtype=dtype, device=device)
            bounds = {dtype: (None, None)}  # project_fn applies the constraints
        # scalar bounds as floats: the kernel clips them in one pass
        kernel_bounds = (None, None) if constraints is not None else tuple(
            None if b is None else float(b) if np.ndim(b) == 0 else t
            for b, t in zip((lo, hi), bounds[dtype]))
        keys = torch.as_tensor(row_keys(self.seed_, X), device=device)
        X_adv = np.empty(X.shape, dtype=X.dtype)
        starts = range(0, len(X), self.batch_size)
        # inference mode: no autograd bookkeeping at all (7 % of a query at 4 images)
        with eval_mode(module) if module is not None else nullcontext(), \
                torch.inference_mode():
            for start in tqdm(starts, desc=type(self).__name__, unit="batch",
                              disable=not self.verbose, leave=True):
                stop = start + self.batch_size
                x0 = to_device(X[start:stop], device)
                x = x0.to(dtype, copy=True)
                if y_index is None:
                    y = score(x).argmax(1)
                else:
                    y = torch.as_tensor(y_index[start:stop], device=device)

                def margin_fn(x_rows, rows, y=y):
                    return self._margin(score(x_rows), y[rows])

                project_fn = None
                if constraints is not None:
                    x0_np = X[start:stop]

                    def project_fn(x_new, rows, x0_np=x0_np):
                        rows = rows.cpu().numpy()
                        out = constraints.project(x0_np[rows], to_numpy(x_new), "inf")
                        return torch.as_tensor(out, device=device).to(dtype)

                x_adv, _ = square(
                    margin_fn, x, eps=eps, n_queries=self.n_queries, keys=keys[start:stop],
                    norm=norm, p_init=self.p_init, image_shape=self.image_shape_,
                    n_restarts=self.n_restarts, clip_min=kernel_bounds[0],
                    clip_max=kernel_bounds[1], budget=budget, project_fn=project_fn)
                if constraints is None:
                    x_adv = project_exact(x_adv, x0, eps, norm, *bounds[x0.dtype])
                else:
                    x_adv = torch.from_numpy(constraints.project(X[start:stop],
                                                                 to_numpy(x_adv), "inf"))
                copy_into(X_adv[start:stop], x_adv)
        return X_adv
