"""help() reads plain text: for every public name (gradtx and gradtx.interop.torch),
``pydoc``'s text has no reStructuredText directive or role and cites no test file (the
wheel ships none); the site still builds from the reStructuredText original."""

from __future__ import annotations

import inspect
import pydoc
import re

import pytest

import gradtx
from gradtx._plaindoc import latex, original, plain
from gradtx.interop import torch as interop_torch

PUBLIC = {f"gradtx.{n}": getattr(gradtx, n) for n in gradtx.__all__} | {
    f"gradtx.interop.torch.{n}": getattr(interop_torch, n) for n in interop_torch.__all__
}
_MARKUP = re.compile(r"\.\. math::|:(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|math):`")


@pytest.mark.parametrize("name", [*sorted(PUBLIC), "gradtx", "gradtx.interop.torch"])
def test_help_text_has_no_markup_and_no_test_paths(name):
    obj = PUBLIC.get(name) or {"gradtx": gradtx, "gradtx.interop.torch": interop_torch}[name]
    text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
    assert not _MARKUP.search(text), _MARKUP.search(text).group(0)
    assert "tests/" not in text


def test_the_site_builds_from_the_original_and_examples_are_kept():
    """The reStructuredText original is kept for Sphinx (docs/conf.py), and the plain
    form keeps every doctest line as written."""
    rst = original(gradtx.rmsprop)
    assert ".. math::" in rst and ".. math::" not in gradtx.rmsprop.__doc__
    for obj in PUBLIC.values():
        original_doc = original(obj)
        if original_doc is None:
            continue

        def doctest_lines(doc):
            return [ln.strip() for ln in doc.splitlines() if ln.strip().startswith((">>>", "..."))]

        assert doctest_lines(original_doc) == doctest_lines(inspect.getdoc(obj) and obj.__doc__)


def test_plain_form_of_each_construct():
    doc = """Summary with :func:`gradtx.rprop`, :class:`~gradtx.ScaleByRmsState` and
    :func:`the alias <gradtx.rmsprop>` (tests: ``tests/test_x.py``).

    Formula::

        v = a * v + g**2

    .. math::
        v_t = \\alpha v_{t-1} + g_t^2

    Lone:

    .. math:: u = \\frac{g}{\\sqrt{\\nu} + \\epsilon}

    See ``tests/parity/test_y.py`` and :math:`\\beta_2`.

    >>> print(":func:`kept`")
    :func:`kept`
    """
    out = plain(doc)
    assert "``gradtx.rprop``" in out and "``ScaleByRmsState``" in out
    assert "``the alias``" in out and "tests/" not in out and "(tests:" not in out
    assert "v = a * v + g**2" in out and "alpha" not in out
    assert "u = (g)/(√(ν) + ε)" in out and "gradtx's test suite" in out and "β_2" in out
    assert '>>> print(":func:`kept`")' in out
    assert out.count("Formula::") == 2


@pytest.mark.parametrize(
    "tex,text",
    [
        (r"\hat\nu_t", "hat ν_t"),
        (r"1 - \beta^{t}", "1 - β^t"),
        (r"g'_{t-1}", "g'_(t-1)"),
        (r"\text{if } x \le 0", "if  x ≤ 0"),
    ],
)
def test_latex_in_plain_text(tex, text):
    assert latex(tex) == text
