"""Tree-structure checks that name the path where two trees differ.

Every gradtx error about a tree names leaves the same way: ``jax.tree_util.keystr`` of
the leaf's path (``['dense'][0]['w']``), or ``<root>`` for a tree that is one leaf. The
checks run in Python at trace time: they cost nothing inside a compiled step.
"""

from __future__ import annotations

from typing import Any

import jax


def _is_none(x: Any) -> bool:
    return x is None


def leaf_paths(tree: Any, *, keep_none: bool = False) -> list[str]:
    """The path of every leaf of ``tree``, as gradtx's errors name it; with ``keep_none``
    ``None`` entries count as leaves (for comparing trees where one has ``None``)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none if keep_none else None)
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in flat]


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` naming the first path where two trees' structures differ."""
    if jax.tree.structure(a) == jax.tree.structure(b):
        return
    keys_a, keys_b = leaf_paths(a, keep_none=True), leaf_paths(b, keep_none=True)
    for keys, other, name, other_name in [
        (keys_a, keys_b, name_a, name_b),
        (keys_b, keys_a, name_b, name_a),
    ]:
        missing = next((k for k in keys if k not in set(other)), None)
        if missing is not None:
            raise ValueError(f"{name} has an entry at path {missing} that {other_name} lacks.")
    leaves_a = jax.tree.leaves(a, is_leaf=_is_none)
    leaves_b = jax.tree.leaves(b, is_leaf=_is_none)
    for k, la, lb in zip(keys_a, leaves_a, leaves_b):
        if (la is None) != (lb is None):
            which, other = (name_a, name_b) if la is None else (name_b, name_a)
            raise ValueError(f"{which} is None at path {k} where {other} has an array.")
    raise ValueError(
        f"{name_a} and {name_b} have the same paths but different container types: "
        f"{jax.tree.structure(a)} vs {jax.tree.structure(b)}."
    )


def check_shape(tree: Any, index: int, what: str, got: tuple, expected: tuple) -> None:
    """Raise ``ValueError`` if leaf ``index`` of ``tree`` has ``got`` where ``expected`` is
    wanted, naming the leaf's path (looked up only on failure)."""
    if tuple(got) != tuple(expected):
        path = leaf_paths(tree)[index]
        raise ValueError(
            f"{what} at path {path} has shape {tuple(got)}, expected {tuple(expected)}."
        )
