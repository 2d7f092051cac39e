"""SecurityCurveDisplay, kept next to :func:`security_curve` as scikit-learn keeps a
Display next to the function it plots."""

import numpy as np
from sklearn.utils.validation import column_or_1d

from ..models._victim import model_name
from ..utils._docstrings import fill_doc
from ._curve import security_curve


def _norm_label(norm):
    return "L∞" if str(norm) in ("inf", "linf") else f"L{norm}"


class SecurityCurveDisplay:
    """Security-evaluation curve: robust accuracy against the perturbation budget.

    In scikit-learn's display style (like :class:`~sklearn.metrics.RocCurveDisplay`):
    build it with :meth:`from_estimator` or :meth:`from_predictions`, or from
    precomputed values and call :meth:`plot`. Several models go on one axis by
    passing ``ax=display.ax_``.

    Parameters
    ----------
    eps : array-like of shape (n_points,)
        Budgets.
    accuracy : array-like of shape (n_points,)
        Robust accuracy at each budget.
    name : str, default=None
        Label of the curve in the legend.
    norm : {"inf", 2}, default="inf"
        Norm of the budget, for the axis label.
    attacks : list of str, default=None
        Names of the attacks, for the title.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The curve.
    ax_ : matplotlib Axes
        Axes with the curve.
    figure_ : matplotlib Figure
        Figure containing the curve.
    curve_ : Bunch or None
        The :func:`~skrobust.evaluation.security_curve` result when built by
        :meth:`from_estimator`, else None.

    See Also
    --------
    skrobust.evaluation.security_curve : Compute the curve.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skrobust.evaluation import SecurityCurveDisplay
    >>> display = SecurityCurveDisplay(eps=[0, 0.1, 0.3], accuracy=[0.99, 0.6, 0.05],
    ...                                name="LeNet5").plot()
    >>> display.line_.get_ydata().tolist()
    [0.99, 0.6, 0.05]
    """

    def __init__(self, *, eps, accuracy, name=None, norm="inf", attacks=None):
        self.eps = eps
        self.accuracy = accuracy
        self.name = name
        self.norm = norm
        self.attacks = attacks
        self.curve_ = None

    @fill_doc
    def plot(self, ax=None, *, name=None, **kwargs):
        """Plot the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        name : str, default=None
            Legend label; overrides ``self.name``.
        {plot_kwargs}

        Returns
        -------
        display : SecurityCurveDisplay
            Self, with ``line_``, ``ax_`` and ``figure_``.
        """
        import matplotlib.pyplot as plt

        eps = np.asarray(self.eps, dtype=float)
        accuracy = np.asarray(self.accuracy, dtype=float)
        if eps.shape != accuracy.shape:
            raise ValueError(f"eps has shape {eps.shape} but accuracy has shape "
                             f"{accuracy.shape}; give one accuracy per budget.")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6))
        name = self.name if name is None else name
        line_kwargs = {"marker": "o"}
        if name is not None:
            line_kwargs["label"] = name
        line_kwargs.update(kwargs)
        (self.line_,) = ax.plot(eps, accuracy, **line_kwargs)
        ax.set_xlabel(f"perturbation budget eps ({_norm_label(self.norm)})")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        if self.attacks and not ax.get_title():
            ax.set_title("attacks: " + ", ".join(self.attacks), fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="best")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @classmethod
    @fill_doc
    def from_estimator(cls, estimator, X, y, eps_values, *, attack=None, norm="inf",
                       clip_min=0.0, clip_max=1.0, reject_label=None, sanity_checks=True,
                       random_state=None, escalate=True, surrogate=None,
                       non_differentiable=None, name=None, ax=None, **kwargs):
        """Compute a model's curve with :func:`~skrobust.evaluation.security_curve`, plot it.

        Parameters
        ----------
        {victim}
        {X_clean}
        {y_true_labels}
        eps_values : array-like of float
            Budgets.
        attack : attack, list of attacks or None, default=None
            The attack or ensemble; None for the default ensemble.
        {norm_budget}
        {domain}
        reject_label : int, str or None, default=None
            Label of a rejection (rejection-aware accuracy); with ``attack=None``
            the adaptive :class:`~skrobust.attacks.AdaptiveRejectionTransformer`
            joins the ensemble.
        sanity_checks : bool, default=True
            Run the sanity checks.
        random_state : int or None, default=None
            Seeds the attacks.
        escalate : bool, default=True
            Escalate where gradient masking is detected (see
            :func:`~skrobust.evaluation.evaluate_robustness`).
        {surrogate}
        {non_differentiable}
        name : str, default=None
            Legend label; the estimator's class name when None.
        {ax}
        {plot_kwargs}

        Returns
        -------
        display : SecurityCurveDisplay
        """
        curve = security_curve(estimator, X, y, eps_values, attack=attack, norm=norm,
                               clip_min=clip_min, clip_max=clip_max,
                               reject_label=reject_label, sanity_checks=sanity_checks,
                               random_state=random_state, escalate=escalate,
                               surrogate=surrogate, non_differentiable=non_differentiable)
        if name is None:
            name = model_name(estimator)
        display = cls(eps=curve.eps, accuracy=curve.accuracy, name=name, norm=curve.norm,
                      attacks=curve.attacks)
        display.curve_ = curve
        return display.plot(ax=ax, **kwargs)

    @classmethod
    @fill_doc
    def from_predictions(cls, y_true, y_preds, eps_values, *, reject_label=None,
                         norm="inf", name=None, ax=None, **kwargs):
        """Plot the curve from predictions on adversarial examples at each budget.

        Parameters
        ----------
        {y_true}
        y_preds : sequence of array-like of shape (n_samples,)
            One array of predictions per budget: on the clean inputs at ``eps=0``,
            on the adversarial examples otherwise.
        eps_values : array-like of shape (n_points,)
            The budgets, in the order of ``y_preds``.
        reject_label : int, str or None, default=None
            Label of a rejection: counted as correct at ``eps > 0``, as an error at
            ``eps = 0``.
        {norm_budget}
        name : str, default=None
            Legend label.
        {ax}
        {plot_kwargs}

        Returns
        -------
        display : SecurityCurveDisplay

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from skrobust.evaluation import SecurityCurveDisplay
        >>> y = [0, 1, 1, 0]
        >>> display = SecurityCurveDisplay.from_predictions(
        ...     y, [[0, 1, 1, 0], [0, 1, -1, 1]], [0.0, 0.2], reject_label=-1)
        >>> display.accuracy.tolist()
        [1.0, 0.75]
        """
        y_true = column_or_1d(y_true)
        eps = np.asarray(eps_values, dtype=float)
        if eps.ndim != 1 or len(eps) == 0:
            raise ValueError("eps_values must be a non-empty list of budgets.")
        if len(y_preds) != len(eps):
            raise ValueError(f"y_preds holds {len(y_preds)} arrays but eps_values has "
                             f"{len(eps)} budgets; give one array of predictions per budget.")
        accuracy = []
        for e, y_pred in zip(eps, y_preds):
            y_pred = column_or_1d(y_pred)
            if len(y_pred) != len(y_true):
                raise ValueError(f"an array of y_preds has {len(y_pred)} predictions but "
                                 f"y_true has {len(y_true)} labels.")
            ok = y_pred == y_true
            if reject_label is not None and e > 0:
                ok |= np.asarray(y_pred.astype(object) == reject_label, dtype=bool)
            accuracy.append(float(np.mean(ok)) if len(ok) else 0.0)
        display = cls(eps=eps, accuracy=np.asarray(accuracy), name=name, norm=norm)
        return display.plot(ax=ax, **kwargs)
