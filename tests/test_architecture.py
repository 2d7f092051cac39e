"""The package's layers only point down, and no private name crosses a subpackage.

The layer picture lives in docs/developers/architecture.rst. This test parses every
module's imports (function-level imports included) and fails on an import from a
lower layer to a higher one, on an import circle between subpackages, and on a private
name (leading underscore) imported from another subpackage. ``KNOWN`` lists the
violations that exist today; it may only shrink: a violation that is gone must be
removed from it (the test says so), a new one fails.
"""

import ast
import pathlib

import skrobust

PACKAGE = pathlib.Path(skrobust.__file__).parent

# Lower numbers are lower layers; a module may import from its own layer or below.
LAYERS = {
    "_version": 0,
    "utils": 0,
    "datasets": 0,
    "plotting": 0,
    "models": 1,
    "attacks": 2,
    "metrics": 3,
    "defenses": 3,
    "detection": 3,
    "privacy": 4,
    "evaluation": 5,
    "_demo": 6,
    "cli": 7,
    "__main__": 7,
    "<root>": 7,
}

# Violations on record (kind, importing module, imported module, name). Shrink only.
KNOWN = set()


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports():
    """(importing module, imported module, imported name) for every skrobust import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] == "skrobust":
                    found += [(module, target, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, None) for alias in node.names
                          if alias.name.split(".")[0] == "skrobust"]
    return found


def _subpackage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _violations():
    violations = set()
    for source, target, name in _imports():
        src, dst = _subpackage(source), _subpackage(target)
        if src == dst or source == "skrobust" or source.endswith(".__init__"):
            continue
        if dst == "<root>" or LAYERS[dst] > LAYERS[src]:
            violations.add(("upward", source, target, name))
        if (name or "").startswith("_") and not (name or "").startswith("__"):
            violations.add(("private", source, target, name))
    return violations


def test_every_subpackage_has_a_layer():
    subpackages = {_subpackage(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert subpackages <= set(LAYERS), sorted(subpackages - set(LAYERS))


def test_no_new_upward_or_private_import():
    new = _violations() - KNOWN
    assert not new, (
        "imports that point up a layer or take a private name from another subpackage "
        f"(see docs/developers/architecture.rst): {sorted(new, key=str)}"
    )


def test_known_violations_are_still_there():
    gone = KNOWN - _violations()
    assert not gone, f"fixed, remove from KNOWN in tests/test_architecture.py: {sorted(gone)}"


def test_no_import_circle_between_subpackages():
    graph = {}
    for source, target, name in _imports():
        src, dst = _subpackage(source), _subpackage(target)
        if src != dst and src != "<root>":
            graph.setdefault(src, set()).add(dst)
    known_circles = set()
    circles = {frozenset({a, b}) for a in graph for b in graph[a]
               if a in graph.get(b, ()) and a != "<root>" and b != "<root>"}
    assert circles <= known_circles, sorted(map(sorted, circles - known_circles))
    assert circles == known_circles, (
        f"circle removed, drop it from known_circles: {sorted(map(sorted, known_circles - circles))}"
    )
