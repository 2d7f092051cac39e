"""Docstring fragments written once and filled into many docstrings.

imbalanced-learn's ``Substitution`` pattern: a docstring holds a placeholder such
as ``{eps}`` on a line of its own, and the :func:`fill_doc` decorator replaces it
with the numpydoc block of that name from :data:`DOCS`, indented like the
placeholder. Only whole-line placeholders are filled, so braces elsewhere in a
docstring (``norm : {"inf", 2}``) need no escaping; a placeholder that names no
fragment fails at import, so none can reach the rendered documentation.

A line indented under a placeholder continues the fragment's description::

    {targeted}
        Incompatible with ``n_target_classes``.

renders as the ``targeted`` block whose description ends with that sentence.
"""

import re
from textwrap import dedent

# a placeholder alone on its line: "{name}" (name: a Python identifier)
PLACEHOLDER = re.compile(r"^(?P<indent>[ ]*)\{(?P<name>[A-Za-z_]\w*)\}[ ]*$", re.MULTILINE)


def _fragment(text):
    """A fragment as written below: dedented, without surrounding blank lines."""
    return dedent(text).strip("\n")


def substitute(doc, fragments):
    """Fill every whole-line ``{name}`` placeholder of ``doc`` from ``fragments``.

    Parameters
    ----------
    doc : str
        The docstring.
    fragments : dict of str to str
        Blocks by name, written dedented (the first line at column 0); each line
        of a block gets the indentation of its placeholder.

    Returns
    -------
    doc : str
        The docstring with every placeholder replaced.

    Raises
    ------
    KeyError
        When a placeholder names no fragment.
    """

    def fill(match):
        name, indent = match.group("name"), match.group("indent")
        if name not in fragments:
            raise KeyError(f"docstring placeholder {{{name}}} names no fragment; known: "
                           f"{sorted(fragments)}.")
        return "\n".join(indent + line if line else line
                         for line in _fragment(fragments[name]).splitlines())

    return PLACEHOLDER.sub(fill, doc)


class Substitution:
    """Decorator that fills the docstring placeholders of a function or class.

    Parameters
    ----------
    *mappings : dict of str to str
        Fragments by name; later mappings and ``fragments`` take precedence.
    **fragments : str
        More fragments by name.

    Examples
    --------
    >>> from skrobust.utils._docstrings import Substitution
    >>> @Substitution(seed="seed : int\\n    The seed.")
    ... def draw(seed):
    ...     '''Draw.
    ...
    ...     Parameters
    ...     ----------
    ...     {seed}
    ...     '''
    >>> print(draw.__doc__.splitlines()[4:])
    ['    seed : int', '        The seed.', '    ']
    """

    def __init__(self, *mappings, **fragments):
        self.fragments = {}
        for mapping in (*mappings, fragments):
            self.fragments.update(mapping)

    def __call__(self, obj):
        if obj.__doc__:  # None under python -OO
            obj.__doc__ = substitute(obj.__doc__, self.fragments)
        return obj


# The shared numpydoc blocks: first those of the attack transformers
# (skrobust.attacks), then those of the functions that evaluate, measure and plot.
DOCS = {
    # -- parameters --
    "estimator": """
        estimator : skorch classifier, FrozenEstimator or torch.nn.Module, default=None
            Victim model. A ``FrozenEstimator`` or a ``torch.nn.Module`` (returning
            logits) is used as is; anything else is cloned and fitted in ``fit``. If
            None, a small MLP from :mod:`skrobust.models` is fitted.
        """,
    "eps": """
        eps : float, default=0.3
            Maximum perturbation in the ``norm`` ball.
        """,
    "eps_per_feature": """
        eps : float or array-like of shape (n_features,), default=0.3
            Maximum perturbation in the ``norm`` ball; an array gives each feature its
            own budget. With per-feature budgets ``b = eps * feature_scale_`` (0 for
            ``immutable`` features) the constraint is the weighted ball
            ``||(x - x0) / w||_norm <= r`` with ``r = max(eps)`` and ``w = b / r``:
            ``|x_j - x0_j| <= b_j`` for ``norm="inf"``, an ellipsoid with semi-axes
            ``b_j`` for ``norm=2``; ``step_size`` is measured like ``r``.
        """,
    "norm": """
        norm : {"inf", 2}, default="inf"
            The Lp norm of the perturbation budget.
        """,
    "targeted": """
        targeted : bool, default=False
            If True, ``generate(X, y)`` moves X towards the classes ``y``.
        """,
    "clip": """
        clip_min, clip_max : float, array-like of shape (n_features,) or None, default=0.0, 1.0
            Bounds of the input domain; None disables a bound.
        """,
    "clip_data": """
        clip_min, clip_max : float, array-like of shape (n_features,), "data" or None, \
                default=0.0, 1.0
            Bounds of the input domain; None disables a bound. ``"data"`` learns
            per-feature bounds from the minimum/maximum of the ``X`` given to ``fit``
            (fitted ``clip_min_``/``clip_max_``); an input already outside them is never
            pushed further out. Inputs outside numeric bounds are rejected with a
            ValueError.
        """,
    "eps_scale": """
        eps_scale : {None, "std", "range"}, default=None
            Measure ``eps`` in units of each feature's standard deviation or range
            learned at ``fit`` (fitted ``feature_scale_``), for features on different
            scales. A feature constant at ``fit`` then never changes.
        """,
    "immutable": """
        immutable : array-like of bool of shape (n_features,) or of int, default=None
            Mask or indices of features that are never changed.
        """,
    "integer_features": """
        integer_features : array-like of bool of shape (n_features,) or of int, \
                default=None
            Mask or indices of integer-valued features: their change is rounded
            towards 0 after every step, so they stay integral (inputs must be integral
            there).
        """,
    "batch_size": """
        batch_size : int, default=256
            Samples per forward/backward pass; bounds the memory used.
        """,
    "device": """
        device : str or torch.device, default="cpu"
            Device on which a victim fitted by this transformer is trained and attacked.
            A frozen victim is attacked on its own device.
        """,
    "random_state": """
        random_state : int, RandomState instance or None, default=None
            Seeds the training of a victim fitted here.
        """,
    "random_state_starts": """
        random_state : int, RandomState instance or None, default=None
            Seeds the random starts and the training of a victim fitted here.
        """,
    "verbose": """
        verbose : int, default=0
            Show a progress bar over batches when > 0.
        """,
    # -- fitted attributes --
    "attributes_header": """
        Attributes
        ----------
        """,
    "estimator_": """
        estimator_ : object
            The victim: the given one when frozen or a torch module, else the fitted
            clone of ``estimator`` (a skorch net is trained on indices into
            ``classes_``).
        """,
    "classes_": """
        classes_ : ndarray of shape (n_classes,)
            Class labels seen in ``fit``.
        """,
    "n_features_in_": """
        n_features_in_ : int
            Number of features seen in ``fit``.
        """,
    "clip_": """
        clip_min_, clip_max_ : float, ndarray of shape (n_features,) or None
            The bounds in use (learned from the data with ``"data"``).
        """,
    "feature_scale_": """
        feature_scale_ : ndarray of shape (n_features,)
            Per-feature unit of ``eps`` (ones when ``eps_scale=None``).
        """,
    "seed_": """
        seed_ : int
            Seed drawn from ``random_state`` in ``fit``.
        """,
    # -- methods --
    "X_attack": """
        X : array-like or Dask array of shape (n_samples, n_features)
            Inputs within ``[clip_min, clip_max]``. A Dask array is attacked lazily,
            one row-chunk at a time, and a Dask array is returned.
        """,
    "X_adv": """
        X_adv : ndarray, DataFrame or Dask array of shape (n_samples, n_features)
            Adversarial inputs, of X's float dtype; a DataFrame with X's columns
            and index under ``set_output(transform="pandas")``.
        """,
    "y_fit": """
        y : array-like of shape (n_samples,)
            Class labels.
        """,
    "returns_self": """
        Returns
        -------
        self : object
            The fitted transformer.
        """,
    # -- predict, predict_proba, decision_function of the classifiers --
    "parameters_X": """
        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.
        """,
    "returns_y_pred": """
        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """,
    "returns_classifier": """
        Returns
        -------
        self : object
            The fitted classifier.
        """,
    # -- examples: 100 samples of 5 features scaled into [0, 1] --
    "example_data": """
        >>> from sklearn.datasets import make_classification
        >>> from sklearn.preprocessing import minmax_scale
        >>> X, y = make_classification(n_samples=100, n_features=5, random_state=0)
        >>> X = minmax_scale(X)
        """,
    # -- evaluation: the victim and its data --
    "example_fitted_victim": """
        >>> from skrobust.attacks import FGSMTransformer
        >>> victim = FGSMTransformer(random_state=0).fit(X, y).estimator_
        """,
    "victim": """
        estimator : fitted classifier or torch.nn.Module
            The victim.
        """,
    "X_clean": """
        X : array-like of shape (n_samples, n_features)
            Clean inputs.
        """,
    "y_true_labels": """
        y : array-like of shape (n_samples,)
            True labels.
        """,
    "X_head": """
        X : array-like of shape (n_samples, n_features)
            Inputs; the first ``n_samples`` are used.
        """,
    "y_head": """
        y : array-like of shape (n_samples,)
            True labels (column indices for a bare torch module).
        """,
    "norm_budget": """
        norm : {"inf", 2}, default="inf"
            Norm of the budget.
        """,
    "domain": """
        clip_min, clip_max : float, array-like or None, default=0.0, 1.0
            Input domain.
        """,
    "surrogate": """
        surrogate : fitted classifier or torch.nn.Module or None, default=None
            A differentiable model to transfer from (needs ``escalate=True``).
        """,
    "non_differentiable": """
        non_differentiable : list of str or None, default=None
            The victim's non-differentiable parts (straight-through gradients).
        """,
    # -- evaluation: the sanity checks --
    "gradient_share": """
        threshold : float, default=0.1
            Largest tolerated share of samples with a zero or non-finite gradient.
        n_samples : int, default=256
            Samples to test.
        """,
    # the last parameter and the result of every sanity check
    "warn_check": """
        warn : bool, default=True
            Warn with a :class:`RobustnessWarning` on failure.

        Returns
        -------
        check : SanityCheck
        """,
    # -- metrics of labels and probabilities --
    "y_true": """
        y_true : array-like of shape (n_samples,)
            True labels.
        """,
    "y_pred_adv": """
        y_pred_adv : array-like of shape (n_samples,)
            Predictions on the adversarial examples.
        """,
    # the parameters, result and source of ACAC and ACTC
    "deepsec": """
        y_true : array-like of shape (n_samples,)
            True labels.
        proba_adv : array-like of shape (n_samples, n_classes)
            Predicted probabilities on the adversarial examples.
        labels : array-like of shape (n_classes,), default=None
            Label of each column of ``proba_adv`` (the estimator's ``classes_``);
            ``0..n_classes-1`` if None.

        Returns
        -------
        float
            0.0 when no adversarial example succeeds.

        References
        ----------
        X. Ling et al., "DEEPSEC: A uniform platform for security analysis of deep
        learning model", IEEE S&P 2019.
        """,
    # -- detection: the batch a drift detector tests --
    "batch_parameters": """
        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch (at least 2 samples).
        """,
    # -- privacy: a model fitted on its 100 members, 100 non-members beside them --
    "scorer_returns": """
        Returns
        -------
        scorer : callable
            ``scorer(estimator, X, y) -> float``.
        """,
    "example_members": """
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> rng = np.random.RandomState(0)
        >>> X, y = rng.randn(200, 5), rng.randint(0, 2, 200)
        >>> model = LogisticRegression().fit(X[:100], y[:100])
        """,
    # -- models: the CNNs over flat rows of images --
    "image_input": """
        n_classes : int, default=10
            Number of output logits.
        in_channels : int, default=1
            Image channels.
        image_size : int, default=28
            Height and width of the (square) input image; rows of X hold
            ``in_channels * image_size**2`` values.
        """,
    # -- plots --
    "ax": """
        ax : matplotlib Axes, default=None
            Axes to draw on.
        """,
    "plot_kwargs": """
        **kwargs : dict
            Passed to :meth:`matplotlib.axes.Axes.plot`.
        """,
    "figure_returns": """
        Returns
        -------
        fig : matplotlib.figure.Figure
        """,
    "image_grid": """
        image_shape : tuple of int, default=(28, 28)
            Shape of one image.
        n_images : int, default=10
            Number of columns (the first ``n_images`` samples).
        cmap : str, default="gray"
            Matplotlib colour map.
        """,
}

# blocks that always travel together, one placeholder each
GROUPS = {
    # the feature constraints of the constrained attacks (FGSM, PGD, Square)
    "feature_constraints": ("clip_data", "eps_scale", "immutable", "integer_features"),
    # the last parameters of the gradient attacks
    "runtime": ("batch_size", "device", "random_state", "verbose"),
    "runtime_starts": ("batch_size", "device", "random_state_starts", "verbose"),
    # the examples of the evaluation functions: example_data and a victim fitted on it
    "example_victim": ("example_data", "example_fitted_victim"),
    # the Attributes section of every attack opens with what it learns in fit
    "attributes": ("attributes_header", "estimator_", "classes_", "n_features_in_"),
    # the constrained attacks' learned bounds and scales
    "fitted_constraints_": ("clip_", "feature_scale_"),
}
DOCS.update({group: "\n".join(_fragment(DOCS[name]) for name in names)
             for group, names in GROUPS.items()})

fill_doc = Substitution(DOCS)
