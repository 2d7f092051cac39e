import importlib
import inspect
import re
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString
from numpydoc.validate import validate
from sklearn.base import BaseEstimator

import skrobust
from skrobust.utils._docstrings import (DOCS, GROUPS, PLACEHOLDER, Substitution, fill_doc,
                                        substitute)

SUBPACKAGES = ("attacks", "datasets", "defenses", "detection", "evaluation", "metrics",
               "models", "plotting", "privacy", "utils")


def _public():
    """``(qualified name, object)`` of every public class and function and of the
    public methods of the public classes."""
    found = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"skrobust.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                found += [(f"skrobust.{sub}.{name}.{f}", getattr(obj, f))
                          for f in getattr(obj, "__all__", ())]
                continue
            found.append((f"skrobust.{sub}.{name}", obj))
            if inspect.isclass(obj):
                found += [(f"skrobust.{sub}.{name}.{m}", getattr(obj, m)) for m in dir(obj)
                          if not m.startswith("_") and callable(getattr(obj, m, None))]
    return found


PUBLIC = _public()
ESTIMATORS = [(name, obj) for name, obj in PUBLIC
              if inspect.isclass(obj) and issubclass(obj, BaseEstimator)]


def test_fills_a_block_with_the_placeholders_indentation():
    doc = """Summary.

    Parameters
    ----------
    {seed}
    n : int
        Count.
    """
    out = substitute(doc, {"seed": "seed : int\n    Seed.\n    Second line."})
    assert out == """Summary.

    Parameters
    ----------
    seed : int
        Seed.
        Second line.
    n : int
        Count.
    """
    # deeper placeholders (method docstrings) indent the whole block deeper
    method = substitute("Fit.\n\n        {seed}\n        ", {"seed": "seed : int\n    Seed."})
    assert method == "Fit.\n\n        seed : int\n            Seed.\n        "


def test_a_line_under_a_placeholder_continues_the_description():
    doc = substitute("X.\n\n    Parameters\n    ----------\n    {targeted}\n        More.\n",
                     DOCS)
    (param,) = NumpyDocString(doc)["Parameters"]
    assert param.name == "targeted"
    assert param.desc[-1] == "More."
    assert "moves X towards the classes" in " ".join(param.desc)


def test_braces_that_are_not_whole_line_placeholders_stay():
    doc = '''X.

    norm : {"inf", 2}
        See {eps} and {2}.
    {2}
    '''
    assert substitute(doc, {"eps": "never used"}) == doc


def test_unknown_placeholder_fails_at_decoration():
    with pytest.raises(KeyError, match="epz"):
        @fill_doc
        def f():
            """X.

            {epz}
            """


def test_no_docstring_is_left_alone():
    def f():
        pass

    assert Substitution(a="b")(f) is f and f.__doc__ is None  # python -OO


def test_later_mappings_take_precedence():
    sub = Substitution({"a": "one"}, {"a": "two"}, b="three")
    assert sub.fragments == {"a": "two", "b": "three"}


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_no_placeholder_left_in_a_public_docstring(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert not PLACEHOLDER.search(doc), PLACEHOLDER.search(doc).group(0)
    # nor a fragment's name inside a line, where it is not filled
    inline = [name for name in DOCS if f"{{{name}}}" in doc]
    assert not inline, inline


@pytest.mark.parametrize("name, cls", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_documented_parameters_are_the_estimators_parameters(name, cls):
    documented = [part.strip() for param in NumpyDocString(cls.__doc__)["Parameters"]
                  for part in param.name.split(",")]
    assert sorted(documented) == sorted(cls().get_params(deep=False))
    assert documented == list(inspect.signature(cls).parameters), "order of the signature"
    # and numpydoc's own checks: parameters missing, unknown or out of order, sections
    # unknown or out of order
    errors = [e for e in validate(name)["errors"]
              if e[0] in ("PR01", "PR02", "PR03", "GL06", "GL07")]
    assert not errors


def test_every_fragment_is_used():
    sources = "".join(p.read_text(encoding="utf-8")
                      for p in Path(skrobust.__file__).parent.rglob("*.py"))
    used = {m.group("name") for m in PLACEHOLDER.finditer(sources)}
    used |= {name for group in used & set(GROUPS) for name in GROUPS[group]}
    assert set(DOCS) <= used, sorted(set(DOCS) - used)


def test_a_group_is_its_blocks_in_order():
    for group, names in GROUPS.items():
        doc = substitute(f"X.\n\n    {{{group}}}\n", DOCS)
        assert doc == substitute("X.\n\n" + "".join(f"    {{{n}}}\n" for n in names), DOCS)


def test_the_attacks_share_the_blocks():
    from skrobust.attacks import (AdaptiveRejectionTransformer, APGDTransformer,
                                  FGSMTransformer, PGDExpTransformer, PGDTransformer,
                                  SquareAttackTransformer)

    attacks = [AdaptiveRejectionTransformer, APGDTransformer, FGSMTransformer,
               PGDExpTransformer, PGDTransformer, SquareAttackTransformer]
    for name in ("verbose", "classes_", "n_features_in_", "seed_", "targeted"):
        block = re.sub(r"\s+", " ", DOCS[name]).strip()
        having = [cls for cls in attacks
                  if block in re.sub(r"\s+", " ", cls.__doc__)]
        expected = [c for c in attacks if c is not AdaptiveRejectionTransformer] \
            if name == "targeted" else attacks
        assert having == expected, name
