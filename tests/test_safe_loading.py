"""No code of the project loads a file in a way that can run code from it.

``pickle.load``/``pickle.loads`` and ``torch.load`` without ``weights_only=True`` (the
default before torch 2.6, which the package allows) unpickle arbitrary objects; the
package, its examples and its benchmarks use npz, JSON and state_dicts instead.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("skrobust", "examples", "benchmarks")


def _unsafe_calls(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        if owner == "pickle" and node.func.attr in ("load", "loads"):
            yield node.lineno, "pickle." + node.func.attr
        if owner == "torch" and node.func.attr == "load":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                       and k.value.value is True for k in node.keywords)
            if not safe:
                yield node.lineno, "torch.load without weights_only=True"
        if owner == "np" and node.func.attr == "load":
            unsafe = any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                          and k.value.value is False)
                         for k in node.keywords)
            if unsafe:
                yield node.lineno, "np.load with allow_pickle"


def test_no_unsafe_deserialisation():
    found = [f"{path.relative_to(ROOT)}:{line}: {what}"
             for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
             for line, what in _unsafe_calls(path)]
    assert not found, found


def test_the_scan_finds_an_unsafe_load(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle, torch\npickle.load(f)\ntorch.load('w.pt')\n"
                   "torch.load('w.pt', weights_only=True)\n")
    assert [line for line, _ in _unsafe_calls(bad)] == [2, 3]
