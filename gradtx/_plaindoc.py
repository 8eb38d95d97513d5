r"""Docstrings that read well in ``help()``, from docstrings written for Sphinx.

The source's docstrings are reStructuredText for the documentation site: each formula
twice (a plain ``Formula::`` block, then its ``.. math::`` LaTeX), cross-references as
roles (``:func:`gradtx.rprop```), and citations of the test files that prove a claim.
The wheel ships no tests, and ``help()`` shows text as it is; so at import, for every
public object, the docstring becomes its plain-text form:

* a ``.. math::`` block after a ``Formula::`` block is dropped (the same formula);
  one with no plain twin becomes a ``Formula::`` block of its LaTeX, lightly readable
  (Greek letters and common operators as Unicode, ``\frac{a}{b}`` as ``(a)/(b)``);
* ``:math:`x``` becomes ``x`` in the same light form; ``:func:`x```, ``:class:`x```
  and the other roles become ````x```` (````y```` for ``~a.y`` or ``title <target>``);
* a citation of a test file (``(tests: ``tests/...``)``) is dropped, and a bare
  ````tests/...```` path becomes "gradtx's test suite".

Doctest lines are kept as written. The reStructuredText original is kept here
(:func:`original`), out of ``help()``'s sight; the site's Sphinx hook (``docs/conf.py``)
builds from it.
"""

from __future__ import annotations

import inspect
import re
import sys
import weakref
from typing import Any

_ORIGINALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_GREEK = (
    "alpha beta gamma delta epsilon eta theta lambda mu nu rho sigma tau phi omega "
    "Delta Gamma Theta Lambda Sigma Phi Omega"
).split()
_UNICODE = dict(zip(_GREEK, "αβγδεηθλμνρστφωΔΓΘΛΣΦΩ"))
_SYMBOLS = {
    r"\cdot": "·",
    r"\times": "×",
    r"\leq": "≤",
    r"\geq": "≥",
    r"\le": "≤",
    r"\ge": "≥",
    r"\neq": "≠",
    r"\approx": "≈",
    r"\infty": "∞",
    r"\odot": "⊙",
    r"\sum": "Σ",
    r"\in": "∈",
    r"\to": "→",
    r"\quad": "  ",
    r"\qquad": "    ",
    r"\,": " ",
    r"\;": " ",
    r"\!": "",
    r"\left": "",
    r"\right": "",
    r"\\": "; ",
    r"\ ": " ",
}
_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|obj|exc|const):`([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_CITATION = re.compile(r"\s*\((?:tests?:\s*)?``tests/[^`]+``(?:\s*(?:,|and)\s*``tests/[^`]+``)*\)")
_TEST_PATH = re.compile(r"``tests/[^`]+``")


def latex(text: str) -> str:
    """LaTeX as plain text a reader can follow (not a renderer: the common symbols)."""
    text = re.sub(r"\\[Bb]ig[lr]?\b", "", text)
    text = re.sub(r"&\s*\\text\{otherwise\}", " otherwise", text)
    text = text.replace(r"\begin{cases}", "{ ").replace(r"\end{cases}", " }")
    text = text.replace("&", " if ")
    text = re.sub(r"\\(?:text|mathrm|operatorname|mathbf|mathit)\{([^{}]*)\}", r"\1", text)
    text = re.sub(
        r"\\hat\{?\\?([A-Za-z]+)\}?", lambda m: "hat " + _UNICODE.get(m.group(1), m.group(1)), text
    )
    for _ in range(3):  # innermost first: \sqrt inside \frac
        text = re.sub(r"\\sqrt\{([^{}]*)\}", r"√(\1)", text)
        text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    for src, dst in sorted(_SYMBOLS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(src, dst)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _UNICODE.get(m.group(1), m.group(1)), text)
    text = re.sub(
        r"([_^])\{([^{}]*)\}",
        lambda m: m.group(1) + (m.group(2) if len(m.group(2)) == 1 else f"({m.group(2)})"),
        text,
    )
    return text.replace("{", "").replace("}", "")


def _role(match: re.Match) -> str:
    target = match.group(2)
    titled = re.match(r"(.*?)\s*<[^>]+>$", target)
    if titled:
        target = titled.group(1)
    elif target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    return f"``{target}``"


def _inline(line: str) -> str:
    line = _MATH_ROLE.sub(lambda m: latex(m.group(1)), line)
    line = _ROLE.sub(_role, line)
    line = _CITATION.sub("", line)
    return _TEST_PATH.sub("gradtx's test suite", line)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """The index after the indented block that follows line ``start``."""
    j = start + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
        j += 1
    while j > start + 1 and not lines[j - 1].strip():
        j -= 1
    return j


def _is_doctest(line: str) -> bool:
    return line.strip().startswith((">>>", "..."))


def _roles(lines: list[str]) -> list[str]:
    """Roles replaced in each run of non-doctest lines (a role may span lines)."""
    out, run = [], []
    for line in [*lines, ">>>"]:
        if _is_doctest(line) or (out and _is_doctest(out[-1]) and line.strip()):
            if run:
                text = _MATH_ROLE.sub(lambda m: latex(m.group(1)), "\n".join(run))
                out.extend(_ROLE.sub(_role, text).split("\n"))
                run = []
            out.append(line)
        else:
            run.append(line)
    return out[:-1]


def plain(doc: str) -> str:
    """The plain-text form of a reStructuredText docstring (see the module docstring)."""
    lines, out, i, twin = _roles(doc.splitlines()), [], 0, False
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        if stripped.startswith((">>>", "...")):
            out.append(line)
        elif stripped.startswith(".. math::"):
            end = _block_end(lines, i, _indent(line))
            if not twin:
                first = stripped[len(".. math::") :].strip()
                body = ([" " * (_indent(line) + 4) + first] if first else []) + lines[i + 1 : end]
                out.append(" " * _indent(line) + "Formula::")
                out.extend(latex(b) if b.strip() else b for b in body)
            elif out and not out[-1].strip():
                out.pop()
            i, twin = end, False
            continue
        elif stripped == "Formula::":
            end = _block_end(lines, i, _indent(line))
            out.extend(lines[i:end])
            i, twin = end, True
            continue
        else:
            out.append(_inline(line))
            twin = twin and not stripped  # a blank line keeps the twin, text ends it
        i += 1
    return "\n".join(out)


def _rewrite(obj: Any) -> None:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return
    new = plain(doc)
    if new == doc:
        return
    try:
        obj.__doc__ = new
        _ORIGINALS[obj] = doc
    except (AttributeError, TypeError):  # an object whose docstring cannot change
        pass


def original(obj: Any) -> str | None:
    """The reStructuredText docstring of an object whose ``__doc__`` was made plain."""
    try:
        return _ORIGINALS.get(obj)
    except TypeError:  # not weakly referenceable: never rewritten
        return None


def plain_docstrings(namespace: dict, names: list[str]) -> None:
    """Rewrite, in place, the docstrings of ``names`` in ``namespace`` (and of the
    methods their classes define, and of the module itself) to their plain-text form."""
    module = sys.modules.get(namespace.get("__name__", ""))
    if module is not None:
        _rewrite(module)
    for name in names:
        obj = namespace[name]
        module = getattr(obj, "__module__", "") or ""
        if not module.startswith("gradtx"):
            continue
        _rewrite(obj)
        if inspect.isclass(obj):
            for member in vars(obj).values():
                member = getattr(member, "__func__", member)
                if inspect.isfunction(member) and member.__module__.startswith("gradtx"):
                    _rewrite(member)
