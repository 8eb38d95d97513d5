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


def check_inexact_updates(updates: Any, index: int | None = None, leaf: Any = None) -> None:
    """Refuse integer or bool gradients (leaf ``index``, or every leaf), naming the path:
    a rule would run in integer arithmetic (RMSprop's average truncated to 0, Rprop's step
    sizes overflowing), as integer params would."""
    leaves = enumerate(jax.tree.leaves(updates)) if index is None else [(index, leaf)]
    for i, g in leaves:
        dtype = jax.numpy.result_type(g)
        if not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
            raise TypeError(
                f"updates at path {leaf_paths(updates)[i]} have dtype {dtype}: gradtx's "
                "transforms need floating or complex gradients (jax.grad gives them for "
                "floating params). Cast the gradients (g.astype(jnp.float32)), or leave "
                "integer leaves out of the tree given to update()."
            )


def check_update_shape(updates: Any, index: int, what: str, got: tuple, want: tuple) -> None:
    """Raise ``ValueError`` if ``what`` (the params, or a state field) at leaf ``index`` has
    shape ``got`` where the updates have ``want``. The params and the state are what
    ``init`` saw: a difference there makes the gradients the odd one out, and the message
    says so."""
    if tuple(got) == tuple(want):
        return
    path = leaf_paths(updates)[index]
    if what == "params":
        raise ValueError(
            f"updates at path {path} have shape {tuple(want)}, but the params there have "
            f"shape {tuple(got)}: gradients must have their params' shapes. Check the "
            "gradients (e.g. jax.grad of the loss with respect to these params)."
        )
    raise ValueError(
        f"updates at path {path} have shape {tuple(want)} (real view of a complex leaf "
        f"included), but {what} there has shape {tuple(got)}: the state was made by init "
        "for params of other shapes. Check the gradients, or call init with these params."
    )


_SHOWN = 4  # entries of a container that describe() shows


def _first(shown: list[str], total: int) -> str:
    more = f", ... ({total - len(shown)} more)" if total > len(shown) else ""
    return ", ".join(shown) + more


def describe(value: Any, depth: int = 2) -> str:
    """A short picture of a state (or any pytree) for error messages: the container types
    and field names, and each array's dtype and shape, never its values."""
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{value.dtype}{list(value.shape)}"
    if depth == 0:
        return type(value).__name__ + "(...)"
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        inner = ", ".join(f"{f}={describe(getattr(value, f), depth - 1)}" for f in value._fields)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, (tuple, list)):
        inner = _first([describe(x, depth - 1) for x in value[:_SHOWN]], len(value))
        return f"{type(value).__name__} of {len(value)}: ({inner})"
    if isinstance(value, dict):
        items = list(value.items())[:_SHOWN]
        inner = _first([f"{k!r}: {describe(v, depth - 1)}" for k, v in items], len(value))
        return f"{type(value).__name__} {{{inner}}}"
    return type(value).__name__


class StateMismatchError(TypeError, ValueError):
    """A state that does not belong to the transform it is passed to (or ``None``): a
    ``TypeError`` (the wrong object) and, as gradtx's older messages raised for a chain's
    state of the wrong length, a ``ValueError``."""


def _matches(state: Any, expected: type) -> bool:
    """Whether ``state`` is a ``NamedTuple`` of ``expected``'s name and fields (the class
    itself, or one rebuilt from a checkpoint or another library with the same layout)."""
    return (
        isinstance(state, tuple)
        and type(state).__name__ == expected.__name__
        and getattr(state, "_fields", None) == expected._fields
    )


def check_stateless(state: Any, owner: str) -> None:
    """A transform that keeps no state takes ``None`` or an empty tuple (its own
    ``EmptyState``, optax's); a state with contents belongs to another transform, and
    continuing it here would drop what it holds."""
    if state is None or (isinstance(state, tuple) and len(state) == 0):
        return
    raise StateMismatchError(
        f"{owner}: the state passed does not belong to this transform. It keeps no state "
        f"(its init(params) makes EmptyState()); it got {describe(state)}. Pass the state "
        "this transform's init made."
    )


def check_names(values: Any, names: set, owner: str) -> None:
    """Refuse a state's ``{name: value}`` field whose names are not ``names`` (a state of
    the same type made by another transform: ``inject_hyperparams`` of another factory)."""
    if not isinstance(values, dict) or set(values) != set(names):
        got = sorted(map(str, values)) if isinstance(values, dict) else describe(values)
        raise StateMismatchError(
            f"{owner}: the state passed does not belong to this transform. It expects the "
            f"names {sorted(map(str, names))}, as its init(params) makes; it got {got}. Pass "
            "the state this transform's init made."
        )


def check_state(state: Any, expected: type, owner: str) -> None:
    """Raise :class:`StateMismatchError` (a ``TypeError``) unless ``state`` is a state of
    type ``expected`` (a ``NamedTuple``), the type the transform's ``init`` makes: ``None``
    (``init`` not called), or another transform's state, is refused before any field of it
    is read. ``owner`` names the call in the message (``"update()"``, ``"chain"``)."""
    if state is None:
        raise StateMismatchError(
            f"{owner} got state None: call init(params) first and pass the state "
            "it returns: state = tx.init(params); updates, state = tx.update(grads, state, "
            "params)."
        )
    if not _matches(state, expected):
        fields = ", ".join(expected._fields)
        raise StateMismatchError(
            f"{owner}: the state passed does not belong to this transform. It "
            f"expects a {expected.__name__}({fields}), as its init(params) makes; it got "
            f"{describe(state)}. Pass the state this transform's init made (a state made by "
            "another transform, or by other options of this one, does not fit)."
        )
