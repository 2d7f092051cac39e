"""Every Python code block of the README and the user guide runs, as written.

The blocks of one page run in order in one namespace, as a reader pasting them into
one session would, in an empty working folder. A page must therefore define
everything it uses (data, the victim); a block that fails names its page and line.
Pages whose text promises a victim accuracy are held to it.
"""

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "user_guide").glob("*.rst"))]

# pages whose prose quotes the victim's clean accuracy: net.score(X_test, y_test) >= this
VICTIM_ACCURACY = {
    "README.md": 0.97,
    "attacks.rst": 0.97,
    "metrics.rst": 0.97,
    "robustness_evaluation.rst": 0.97,
}

# pages that take more than a few seconds on one thread
SLOW = set()

_FENCE = re.compile(r"^```python\s*\n(.*?)^```\s*$", re.M | re.S)
_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block:: python\s*$")


def markdown_blocks(text):
    """``(line, code)`` of every fenced ```python block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _FENCE.finditer(text)]


def rst_blocks(text):
    """``(line, code)`` of every ``.. code-block:: python`` directive, dedented."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        indent = len(match.group(1))
        while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):  # options
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        first = next(k for k, line in enumerate(body) if line.strip())
        body = body[first:]
        dedent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
        blocks.append((i - len(body) + 1, "\n".join(line[dedent:] for line in body) + "\n"))
    return blocks


def page_blocks(path):
    text = path.read_text(encoding="utf-8")
    return markdown_blocks(text) if path.suffix == ".md" else rst_blocks(text)


def _pages_with_code():
    for path in PAGES:
        if page_blocks(path):
            marks = [pytest.mark.slow] if path.name in SLOW else []
            yield pytest.param(path, id=path.name, marks=marks)


def test_the_collector_finds_every_block():
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        expected = (text.count("```python") if path.suffix == ".md"
                    else len(re.findall(r"^\s*\.\. code-block:: python\s*$", text, re.M)))
        blocks = page_blocks(path)
        assert len(blocks) == expected, path.name
        for _, code in blocks:
            compile(code, path.name, "exec")  # whole statements, nothing cut off
    assert sum(len(page_blocks(p)) for p in PAGES) >= 35


@pytest.mark.parametrize("path", list(_pages_with_code()))
def test_page_runs_as_written(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    output = io.StringIO()
    for line, code in page_blocks(path):
        compiled = compile(code, f"{path.relative_to(ROOT)}:{line}", "exec")
        with contextlib.redirect_stdout(output), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the pages' own warnings are not the point
            exec(compiled, namespace)
    assert output.getvalue().strip(), f"{path.name} prints nothing: show what it computes"
    accuracy = VICTIM_ACCURACY.get(path.name)
    if accuracy is not None:
        net, X_test, y_test = namespace["net"], namespace["X_test"], namespace["y_test"]
        assert net.score(X_test, y_test) >= accuracy
    import matplotlib.pyplot as plt

    plt.close("all")


def test_user_guide_reads_in_order():
    """Attacks come before the defenses built on them (the glob would sort them after)."""
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    entries = re.findall(r"^   (user_guide/\S+)$", index, re.M)
    order = [entries.index(f"user_guide/{page}") for page in
             ("getting_started", "attacks", "robustness_evaluation", "adversarial_training")]
    assert order == sorted(order) and entries[-1] == "user_guide/*"
