"""The robustness report: :func:`write_report` (HTML + JSON). ``skrobust report`` is in
``skrobust/cli/_report.py``."""

import base64
import datetime
import html
import io
import json
import time
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._version import __version__
from ..models._victim import model_name as name_of
from ..plotting import plot_adversarial_grid
from ..utils._docstrings import fill_doc
from ._curve import security_curve
from ._curve_display import SecurityCurveDisplay

_STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.8em; text-align: left; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #176417; font-weight: bold; }
.fail { color: #b00020; font-weight: bold; }
.skip { color: #777; }
img { max-width: 100%; border: 1px solid #ddd; }
"""

# marks the page once loaded, so a headless browser can tell that it rendered
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-rendered", ok.length);
  document.body.setAttribute("data-tables", document.getElementsByTagName("table").length);
});
"""


def _png(fig):
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(header, rows, numeric=()):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i in numeric else ""
            text = cell if isinstance(cell, _Raw) else html.escape(str(cell))
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Trusted HTML of our own making, inserted unescaped."""


def _pct(value):
    return f"{100 * value:.2f} %"


def _verdict_cell(check):
    if check.passed is None:
        return _Raw('<span class="skip">not run</span>')
    return _Raw('<span class="pass">pass</span>' if check.passed
                else '<span class="fail">FAIL</span>')


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _timing(curve, plot_seconds):
    """Seconds by step: the attacks, the rest of the evaluation (clean predictions and
    sanity checks, some of which run attacks of their own) and the figures."""
    attacks = float(sum(r.seconds for r in curve.results))
    return {"attacks": attacks, "sanity_checks_and_predictions": curve.seconds - attacks,
            "plots": plot_seconds}


@fill_doc
def write_report(estimator, X, y, output_dir, *, eps=0.3, norm="inf", attacks=None,
                 eps_values=None, clip_min=0.0, clip_max=1.0, reject_label=None,
                 image_shape="auto", n_images=10, model_name=None, random_state=0,
                 escalate=True, surrogate=None, non_differentiable=None):
    """Evaluate a model and write a self-contained HTML report and a JSON file.

    Runs :func:`security_curve` (whose largest budget is ``eps``), whose
    :func:`evaluate_robustness` result at ``eps`` gives the per-attack table. The
    HTML page embeds its figures as PNG (the security curve, clean and adversarial
    examples with predictions) and holds the summary, the per-attack table, the
    curve and the sanity-check verdicts; ``report.json`` holds the same numbers.

    Parameters
    ----------
    {victim}
    {X_clean}
    {y_true_labels}
    output_dir : str or path-like
        Folder for ``report.html`` and ``report.json`` (created if needed).
    eps : float, default=0.3
        The budget of the per-attack table.
    {norm_budget}
    attacks : list of attacks or None, default=None
        The ensemble; None for :func:`default_attacks`.
    eps_values : array-like of float or None, default=None
        Budgets of the curve; ``eps`` is added. None: 6 budgets from 0 to ``eps``.
    {domain}
    reject_label : int, str or None, default=None
        Label of a rejection (rejection-aware accuracy).
    image_shape : "auto", tuple of int or None, default="auto"
        Shape of one image for the example grid; "auto" for a square image when the
        number of features is a perfect square; None for no grid.
    n_images : int, default=10
        Examples in the grid.
    model_name : str, default=None
        Name shown in the report; the estimator's class name when None.
    random_state : int or None, default=0
        Seeds the attacks.
    escalate : bool, default=True
        Escalate where gradient masking is detected (see :func:`evaluate_robustness`);
        the report lists what was escalated and why.
    {surrogate}
    {non_differentiable}

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch`
        ``html`` and ``json`` (paths), ``data`` (the JSON content), ``curve`` (the
        :func:`security_curve` result) and ``result`` (the evaluation at ``eps``).
        ``data["sanity_checks_failed"]`` names the failed checks (shown at the top
        of the page when there are any) and ``data["timing"]`` gives the seconds
        spent on the attacks, on clean predictions and sanity checks, and on the
        figures.

    Examples
    --------
    {example_victim}
    >>> import tempfile
    >>> from skrobust.evaluation import write_report
    >>> report = write_report(victim, X, y, tempfile.mkdtemp(), eps=0.1,
    ...                       attacks=[FGSMTransformer()], eps_values=[0, 0.1])
    >>> report.data["robust_accuracy"] <= report.data["clean_accuracy"]
    True
    """
    X = np.asarray(X)
    y = np.asarray(y)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if eps_values is None:
        eps_values = np.linspace(0.0, float(eps), 6)
    eps_values = np.union1d(np.asarray(eps_values, dtype=float), [float(eps)])
    curve = security_curve(estimator, X, y, eps_values, attack=attacks, norm=norm,
                           clip_min=clip_min, clip_max=clip_max, reject_label=reject_label,
                           random_state=random_state, escalate=escalate, surrogate=surrogate,
                           non_differentiable=non_differentiable)
    result = next((r for r in curve.results if r.eps == float(eps)), None)
    if model_name is None:
        model_name = name_of(estimator)

    plot_start = time.perf_counter()
    display = SecurityCurveDisplay(eps=curve.eps, accuracy=curve.accuracy, name=model_name,
                                   norm=curve.norm, attacks=curve.attacks).plot()
    figures = {"security curve": _png(display.figure_)}
    if image_shape == "auto":
        side = int(round(np.sqrt(X.shape[1])))
        image_shape = (side, side) if side * side == X.shape[1] else None
    if image_shape is not None and result is not None and len(X):
        shown = np.flatnonzero(result.correct)[:n_images]
        if len(shown) == 0:
            shown = np.arange(min(n_images, len(X)))
        fig = plot_adversarial_grid(X[shown], result.X_adv[shown], y[shown],
                                    result.y_pred[shown], result.y_pred_adv[shown],
                                    image_shape=tuple(image_shape), n_images=len(shown))
        figures[f"clean (top) and worst-case adversarial (bottom) examples, eps={eps:g}"] = (
            _png(fig))
    timing = _timing(curve, time.perf_counter() - plot_start)
    failed = [c.name for c in curve.sanity_checks if c.passed is False]

    data = {
        "model": model_name,
        "n_samples": int(len(X)),
        "eps": float(eps),
        "norm": curve.norm,
        "clean_accuracy": curve.clean_accuracy,
        "robust_accuracy": None if result is None else result.robust_accuracy,
        "attacks": [] if result is None else [
            {"name": name, "accuracy": result.accuracy[name],
             "n_attacked": result.n_attacked[name], "n_fooled": result.n_fooled[name],
             "seconds": result.seconds_per_attack[name]}
            for name in result.attacks],
        "escalations": [] if result is None else result.get("escalations", []),
        "plain_robust_accuracy": None if result is None else result.get(
            "plain_robust_accuracy"),
        "curve": {"eps": curve.eps, "accuracy": curve.accuracy},
        "sanity_checks": [c.to_dict() for c in curve.sanity_checks],
        "sanity_checks_failed": failed,
        "seconds": curve.seconds,
        "timing": timing,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    data["skrobust_version"] = __version__
    data = _json_ready(data)
    json_path = output_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=2))

    summary = _table(["quantity", "value"], [
        ("model", model_name), ("samples", len(X)),
        ("threat model", f"{'Linf' if curve.norm == 'inf' else 'L2'} eps = {eps:g}"),
        ("clean accuracy", _pct(curve.clean_accuracy)),
        ("robust accuracy (worst case)", "n/a" if result is None else _pct(result.robust_accuracy)),
        ("sanity checks", _Raw(f'<span class="fail">FAILED: {html.escape(", ".join(failed))}'
                               '</span>') if failed else "all passed"),
        ("evaluation time", f"{curve.seconds:.1f} s"),
    ] + [(f"time: {step.replace('_', ' ')}", f"{seconds:.1f} s")
         for step, seconds in timing.items()])
    attack_rows = [(a["name"], _pct(a["accuracy"]), a["n_attacked"], a["n_fooled"],
                    f"{a['seconds']:.2f}") for a in data["attacks"]]
    attack_table = _table(["attack (in order)", "robust accuracy after it", "samples attacked",
                           "samples fooled", "seconds"], attack_rows, numeric=(1, 2, 3, 4))
    curve_table = _table(["eps", "robust accuracy"],
                         [(f"{e:g}", _pct(a)) for e, a in zip(curve.eps, curve.accuracy)],
                         numeric=(0, 1))
    checks = curve.sanity_checks
    check_table = _table(["check", "verdict", "details"],
                         [(c.name, _verdict_cell(c), c.message) for c in checks])
    verdict = (f'<p class="fail">{len(failed)} sanity check(s) failed '
               f'({html.escape(", ".join(failed))}): the robust accuracy is probably too '
               'optimistic; see the sanity checks below.</p>' if failed else
               '<p class="pass">All sanity checks passed.</p>')
    escalated = "".join(
        f"<p>Escalated: {html.escape(e['attack'])}: {html.escape(e['reason'])}.</p>"
        for e in data["escalations"])
    if escalated and data["plain_robust_accuracy"] is not None:
        escalated = (f"<p>Gradient masking was detected; the ensemble alone gave "
                     f"{_pct(data['plain_robust_accuracy'])}.</p>" + escalated)
    images = "".join(
        f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{png}">' for title, png in figures.items())
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Robustness report: {html.escape(model_name)}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head>
<body>
<h1>Robustness report: {html.escape(model_name)}</h1>
{verdict if failed else ""}
<p>Written by skrobust {html.escape(str(__version__))} on {html.escape(data['created'])}.
A sample counts as robust only if it survives every attack (worst case); each attack
runs on the samples still standing.</p>
<h2>Summary</h2>{summary}
<h2>Sanity checks</h2>{verdict}{check_table}
<h2>Attacks at eps = {eps:g}</h2>{attack_table}{escalated}
<h2>Security curve</h2>{curve_table}
<h2>Figures</h2>{images}
</body>
</html>
"""
    html_path = output_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return Bunch(html=html_path, json=json_path, data=data, curve=curve, result=result)

