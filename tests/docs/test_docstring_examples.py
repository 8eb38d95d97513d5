"""Every docstring example in gradtx runs as written (doctest), and every public name
documents itself: a one-line summary, its arguments, what it returns, and an example.

Examples run with JAX's defaults (float32: the suite's float64 switch is turned off
around them), so what they print is what a reader sees.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil

import jax
import pytest

import gradtx

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    names = ["gradtx"] + [m.name for m in pkgutil.walk_packages(gradtx.__path__, "gradtx.")]
    needs_torch = {"gradtx.interop.torch", "gradtx.interop._torch_state"}
    if importlib.util.find_spec("torch") is None:
        names = [n for n in names if n not in needs_torch]
    return [importlib.import_module(n) for n in names]


def _examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for module in _modules():
        for test in finder.find(module):
            if test.examples and test.name not in found:
                found[test.name] = test
    return sorted(found.values(), key=lambda t: t.name)


EXAMPLES = _examples()


@pytest.mark.parametrize("test", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example(test):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    test.globs = dict(test.globs)
    report: list[str] = []
    with jax.enable_x64(False):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def _public():
    from gradtx.interop import torch as interop_torch

    objects = {f"gradtx.{n}": getattr(gradtx, n) for n in gradtx.__all__}
    objects |= {
        f"gradtx.interop.torch.{n}": getattr(interop_torch, n) for n in interop_torch.__all__
    }
    return {
        name: obj
        for name, obj in objects.items()
        if inspect.isfunction(obj)
        or (inspect.isclass(obj) and getattr(obj, "__module__", "").startswith("gradtx"))
    }


# Public functions and classes whose docstrings do not yet have every section; this list
# only shrinks (a test below fails if a listed name is complete, so that it is removed).
NOT_YET: set[str] = set()


def _missing_sections(obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    missing = []
    summary = doc.strip().split("\n\n")[0]
    if not summary or "\n" in summary.strip():
        missing.append("one-line summary")
    is_state = inspect.isclass(obj) and issubclass(obj, tuple)
    if not is_state:
        params = [
            p
            for p in inspect.signature(obj).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        if params and "\nArgs:" not in "\n" + doc:
            missing.append("Args")
        if inspect.isfunction(obj) and "\nReturns:" not in "\n" + doc:
            missing.append("Returns")
    if ">>>" not in doc:
        missing.append("Example")
    return missing


def test_public_docstrings_are_complete():
    incomplete = {}
    for name, obj in _public().items():
        missing = _missing_sections(obj)
        if missing and name not in NOT_YET:
            incomplete[name] = missing
    assert not incomplete, f"docstrings lacking sections: {incomplete}"


def test_not_yet_list_only_shrinks():
    done = sorted(n for n in NOT_YET if n in _public() and not _missing_sections(_public()[n]))
    assert not done, f"complete now, remove from NOT_YET: {done}"
