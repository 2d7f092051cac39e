"""Sphinx configuration for skrobust."""

import re
from pathlib import Path

import skrobust

project = "skrobust"
author = "the skrobust developers"
copyright = "2026, the skrobust developers"
release = skrobust.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = True
# Inherited members are documented (fit_transform, get_params, set_params, ...),
# except those of torch's nn.Module/Sequential (dozens, documented by PyTorch) and
# scikit-learn's private mixins whose docstrings cross-reference labels that only
# exist in scikit-learn's own documentation.
autodoc_default_options = {
    "members": True,
    "inherited-members": "Module,Sequential,_SetOutputMixin,_MetadataRequester",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# no network at build time: intersphinx inventories are not fetched
intersphinx_mapping = {}
templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/**/*.examples"]
html_theme = "alabaster"
html_static_path = ["_static"]
nitpicky = False

# Every public name (each subpackage's __all__) must appear in an API page.
DOCUMENTED_SUBPACKAGES = ("attacks", "datasets", "defenses", "detection", "evaluation",
                          "metrics", "models", "plotting", "privacy", "utils")


def _check_api_pages(app):
    """Warn (an error under -W) when a public name is missing from the API pages."""
    import importlib

    from sphinx.util import logging

    logger = logging.getLogger("skrobust.docs")
    pages = [p.read_text() for p in sorted((Path(app.srcdir) / "api").glob("*.rst"))]
    for sub in DOCUMENTED_SUBPACKAGES:
        module = f"skrobust.{sub}"
        # autosummary entries of the pages about this subpackage
        text = "".join(page for page in pages if f"currentmodule:: {module}\n" in page)
        for name in importlib.import_module(module).__all__:
            if name == "functional":  # the module: its functions are listed instead
                continue
            if f"\n   {name}\n" not in text:
                logger.warning("%s.%s is public (in __all__) but in no autosummary of "
                               "docs/api/ (add it under '.. currentmodule:: %s').",
                               module, name, module)


_XREF = re.compile(r":(?:ref|term):`([^`<]*?)\s*(?:<([^>]*)>)?`")


def _plain_foreign_xrefs(app, what, name, obj, options, lines):
    """Inherited scikit-learn docstrings cite labels and glossary terms of
    scikit-learn's own documentation, which do not exist here: show them as text."""
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn"):
        lines[:] = [_XREF.sub(lambda m: (m.group(1) or m.group(2)).strip(), line)
                    for line in lines]


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """scikit-learn generates ``set_{method}_request`` on every estimator: noise here."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    app.connect("builder-inited", _check_api_pages)
    app.connect("autodoc-process-docstring", _plain_foreign_xrefs)
    app.connect("autodoc-skip-member", _skip_metadata_requests)
