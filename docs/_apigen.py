"""Generate the API reference pages from ``gradtx.__all__``.

Every public name gets its own page, ``api/gradtx.<name>.rst``, and is listed on the
page of its group. The group comes from the private module that defines the name
(:data:`MODULE_GROUPS`), so a new public name in an existing module appears by itself;
a new module needs one line in :data:`MODULE_GROUPS` (the build stops and says so).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

# group slug -> (title, introduction)
GROUPS = {
    "aliases": (
        "Aliases",
        "The optimizers asked for by name: documented chains of blocks with "
        "``torch.optim``'s arguments, defaults and numbers.",
    ),
    "blocks": (
        "Blocks",
        "Single transforms to chain: normalisers, Rprop's rule, momentum, weight decay, "
        "scaling and clipping. A block that shares its name with optax means what optax "
        "means.",
    ),
    "combinators": (
        "Combinators",
        "Transforms made of transforms: chains, parameter groups and hyperparameters "
        "that change during training.",
    ),
    "wrappers": (
        "Wrappers",
        "Wrappers around a whole transform: skipping non-finite steps and gradient accumulation.",
    ),
    "schedules": (
        "Schedules",
        "Functions of the step count, for any hyperparameter that accepts a schedule.",
    ),
    "checkpoints": ("Checkpoints", "Saving and restoring any pytree, bit for bit."),
    "protocol": (
        "Protocol and types",
        "What a transform is, and the types the signatures use.",
    ),
    "interop": (
        "Interop",
        "Moving a run between gradtx and other libraries. ``gradtx.interop.torch`` "
        "imports ``torch``; nothing else in gradtx does.",
    ),
}

# defining module -> group slug: a new module needs one line here.
MODULE_GROUPS = {
    "gradtx._aliases": "aliases",
    "gradtx._rms": "blocks",
    "gradtx._rms_states": "blocks",
    "gradtx._rprop": "blocks",
    "gradtx._momentum": "blocks",
    "gradtx._weight_decay": "blocks",
    "gradtx._scaling": "blocks",
    "gradtx._clipping": "blocks",
    "gradtx._combine": "combinators",
    "gradtx._inject": "combinators",
    "gradtx._join": "combinators",
    "gradtx._masking": "combinators",
    "gradtx._ema": "blocks",
    "gradtx._zeroing": "blocks",
    "gradtx._rprop._state": "blocks",
    "gradtx._rprop._rules": "blocks",
    "gradtx._wrappers": "wrappers",
    "gradtx._accumulation": "wrappers",
    "gradtx._apply_every": "wrappers",
    "gradtx._flatten": "wrappers",
    "gradtx._schedules_cyclic": "schedules",
    "gradtx._schedules": "schedules",
    "gradtx._schedules_joined": "schedules",
    "gradtx._checkpoint": "checkpoints",
    "gradtx._base": "protocol",
    "gradtx._leafwise": "protocol",
    "gradtx._values": "protocol",
}

# public modules besides ``gradtx`` whose ``__all__`` is documented, and their group.
EXTRA_MODULES = {"gradtx.interop.torch": "interop"}


# Imports the docs build may lack (the docs extra does not install torch): mocked then.
MOCKED = [m for m in ("torch",) if importlib.util.find_spec(m) is None]


def _import(name: str):
    from sphinx.ext.autodoc.mock import mock

    with mock(MOCKED):
        return importlib.import_module(name)


def _defining_module(package: str, name: str) -> str:
    """The module whose source defines ``name`` at top level (import-time aliases such
    as ``Params = Any`` carry no ``__module__``, so the sources are read)."""
    obj = getattr(_import(package), name)
    module = getattr(obj, "__module__", None)
    if (inspect.isfunction(obj) or inspect.isclass(obj)) and module in MODULE_GROUPS:
        return module
    for candidate in MODULE_GROUPS:
        if importlib.util.find_spec(candidate) is None:
            continue
        source = inspect.getsource(_import(candidate))
        for node in ast.parse(source).body:
            targets = []
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                targets = [node.name]
            if name in targets:
                return candidate
    return module or "?"


def public_names() -> dict[str, list[str]]:
    """Group slug -> fully qualified public names, in ``__all__`` order."""
    groups: dict[str, list[str]] = {slug: [] for slug in GROUPS}
    import gradtx

    for name in gradtx.__all__:
        module = _defining_module("gradtx", name)
        if module not in MODULE_GROUPS:
            raise RuntimeError(
                f"gradtx.{name} is defined in {module}, which docs/_apigen.py does not "
                f"know: add one line for it to MODULE_GROUPS."
            )
        groups[MODULE_GROUPS[module]].append(f"gradtx.{name}")
    for module_name, slug in EXTRA_MODULES.items():
        module = _import(module_name)
        groups[slug] += [f"{module_name}.{name}" for name in module.__all__]
    return groups


def _data_doc(qualname: str) -> tuple[str, str]:
    """(docstring, source of the value) of a module-level constant or type alias."""
    from sphinx.pycode import ModuleAnalyzer

    package, name = qualname.rsplit(".", 1)
    module = _defining_module(package, name)
    docs = ModuleAnalyzer.for_module(module).find_attr_docs()
    doc = "\n".join(docs.get(("", name), []))
    source = inspect.getsource(_import(module))
    value = ""
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                value = ast.get_source_segment(source, node.value) or ""
    return doc, value


def _kind(qualname: str) -> str:
    """ "function", "class" or "data" (constants and type aliases such as ``Any``)."""
    package, name = qualname.rsplit(".", 1)
    obj = getattr(_import(package), name)
    if not getattr(obj, "__module__", "").startswith("gradtx"):
        return "data"
    return "function" if inspect.isfunction(obj) else "class" if inspect.isclass(obj) else "data"


def _sort_key(qualname: str) -> tuple:
    """Functions, then classes, then data; each in the order of the sources."""
    package, name = qualname.rsplit(".", 1)
    module = _defining_module(package, name)
    source = inspect.getsource(_import(module))
    line = next(
        (
            i
            for i, text in enumerate(source.splitlines())
            if text.startswith(
                (f"def {name}(", f"class {name}(", f"class {name}:", f"{name} =", f"{name}:")
            )
        ),
        0,
    )
    order = list(MODULE_GROUPS) + list(EXTRA_MODULES)
    rank = order.index(module) if module in order else len(order)
    return (["function", "class", "data"].index(_kind(qualname)), rank, line)


def _page(qualname: str) -> str:
    package, name = qualname.rsplit(".", 1)
    obj = getattr(_import(package), name)
    title = qualname + "\n" + "=" * len(qualname) + "\n\n"
    kind = _kind(qualname)
    if kind == "function":
        return title + f".. autofunction:: {qualname}\n"
    if kind == "class":
        is_tuple = issubclass(obj, tuple)
        options = "" if is_tuple else "   :members:\n"
        return title + f".. autoclass:: {qualname}\n{options}"
    doc, value = _data_doc(qualname)
    body = "".join(f"   {line}\n" if line else "\n" for line in doc.splitlines())
    value_line = f"   :value: {' '.join(value.split())}\n" if value else ""
    return title + f".. py:data:: {qualname}\n{value_line}\n{body}"


def _summary(qualname: str) -> str:
    package, name = qualname.rsplit(".", 1)
    obj = getattr(_import(package), name)
    if _kind(qualname) != "data":
        doc = inspect.getdoc(obj) or ""
    else:
        doc = _data_doc(qualname)[0]
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def _write(path: Path, text: str) -> None:
    """Write only on change, so that an unchanged page is not rebuilt."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = public_names()
    wanted = {"index.rst"}
    index = [
        "API reference",
        "=============",
        "",
        "Every public name, grouped as the package is. "
        "``import gradtx`` gives all of them but the interop ones.",
        "",
    ]
    toctree = ["", ".. toctree::", "   :hidden:", ""]
    for slug, names in groups.items():
        if not names:
            continue
        title, intro = GROUPS[slug]
        toctree.append(f"   {slug}")
        index += [f":doc:`{title} <{slug}>`", f"   {intro}", ""]
        index += [
            "   "
            + ", ".join(
                f":doc:`{q.rsplit('.', 1)[1]} <{q}>`" for q in sorted(names, key=_sort_key)
            ),
            "",
        ]
        lines = [title, "=" * len(title), "", intro, "", ".. list-table::", "   :widths: 35 65", ""]
        for qualname in sorted(names, key=_sort_key):
            lines += [f"   * - :doc:`{qualname} <{qualname}>`", f"     - {_summary(qualname)}"]
            _write(out_dir / f"{qualname}.rst", _page(qualname))
            wanted.add(f"{qualname}.rst")
        lines += ["", ".. toctree::", "   :hidden:", ""]
        lines += [f"   {q}" for q in sorted(names, key=_sort_key)]
        _write(out_dir / f"{slug}.rst", "\n".join(lines) + "\n")
        wanted.add(f"{slug}.rst")
    _write(out_dir / "index.rst", "\n".join(index + toctree) + "\n")
    for stale in out_dir.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
