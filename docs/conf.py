"""Sphinx configuration of the gradtx documentation site.

Build (from the repository root): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # the gradtx of this checkout
sys.path.insert(0, str(HERE))

import _apigen  # noqa: E402

import gradtx  # noqa: E402

project = "gradtx"
author = "the gradtx authors"
copyright = "the gradtx authors, Apache-2.0"
release = version = gradtx.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site itself, no CDN
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

# Markdown pages: $...$ / $$...$$ math, ::: fences, heading anchors for #links.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Docstrings: Google style (Args / Returns / Example), reStructuredText math.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = True
nitpicky = False
autodoc_mock_imports = _apigen.MOCKED  # torch, where the docs build lacks it

html_theme = "furo"
html_title = f"gradtx {version}"
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["gradtx.css"]

_apigen.generate(HERE / "api")


def _drop_plain_formulas(app, what, name, obj, options, lines):
    """Docstrings give each formula twice: a ``Formula::`` block in plain text, for
    ``help()``, then a ``.. math::`` block. The site shows only the rendered one. (At
    import gradtx turns ``__doc__`` into plain text for ``help()``; the site builds from
    the reStructuredText original, which ``gradtx._plaindoc.original`` returns.)"""
    from sphinx.util.docstrings import prepare_docstring

    from gradtx._plaindoc import original

    rst = original(obj)
    if rst is not None:
        lines[:] = prepare_docstring(rst)
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "Formula::":
            indent = len(lines[i]) - len(lines[i].lstrip())
            j = i + 1
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                j += 1
            if j < len(lines) and lines[j].strip().startswith(".. math::"):
                i = j
                continue
        out.append(lines[i])
        i += 1
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", _drop_plain_formulas, priority=400)
