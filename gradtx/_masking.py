"""Restricting a transform to some of the params: the one mechanism behind ``masked``,
``add_decayed_weights(mask=...)`` and ``partition`` (torch's param groups).

It sits below the blocks, beside the engine: a block that offers ``mask=`` (as optax's
``add_decayed_weights`` does) builds on it without reaching up to the combinators.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from gradtx._base import (
    GradientTransformation,
    Params,
    Updates,
    abstract_aware,
    update_with_extra_args,
)
from gradtx._trees import check_state


class MaskedNode(NamedTuple):
    r"""An empty pytree node standing in for a leaf a transform does not own.

    A transform restricted by :func:`masked` or :func:`partition` sees ``MaskedNode()`` in
    place of the leaves outside its group, so its state holds nothing for them (optax's
    ``MaskedNode``).

    Example:
      >>> import jax
      >>> import gradtx
      >>> jax.tree.leaves({"w": 1.0, "b": gradtx.MaskedNode()})
      [1.0]
    """


class MaskedState(NamedTuple):
    r"""The state of :func:`masked`: the inner transform's state over the leaves it owns.

    Attributes:
      inner_state: the inner state; masked-out leaves are :class:`MaskedNode`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.masked(gradtx.trace(0.9), {"w": True, "b": False})
      >>> tx.init({"w": jnp.zeros(2), "b": jnp.zeros(1)})
      MaskedState(inner_state=TraceState(trace={'b': MaskedNode(),
                                                'w': Array([0., 0.], dtype=float32)}))
    """

    inner_state: Any


def resolve(tree_or_fn: Any, params: Any) -> Any:
    """A mask (or labels) given as a tree or as a function of the params, told apart as
    optax does: a function when every leaf of it is callable (a plain function is its own
    one leaf). A pytree that is also callable (an equinox module holding bools) is a tree."""
    leaves = jax.tree.leaves(jax.tree.map(callable, tree_or_fn))
    is_fn = bool(leaves) and all(leaves)
    return tree_or_fn(params) if is_fn else tree_or_fn


def _as_flag(path: Any, m: Any) -> bool:
    """A mask entry as a Python bool: ``True``/``False``, a NumPy bool, or a concrete
    boolean scalar array. Anything else (``"False"``, ``0``, a traced value) is refused
    by path: a truthy string would silently select the leaf."""
    if isinstance(m, bool | np.bool_):
        return bool(m)
    dtype, shape = getattr(m, "dtype", None), getattr(m, "shape", None)
    if dtype == np.bool_ and shape == () and not isinstance(m, jax.core.Tracer):
        return bool(m)
    raise TypeError(
        f"Invalid mask: the entry at path {jax.tree_util.keystr(path) or '<root>'} is "
        f"{m!r} ({type(m).__name__}); a mask holds Python bools, fixed before tracing "
        "(True: the transform applies to that leaf or subtree). For labels, use partition."
    )


def mask_tree(tree: Any, mask: Any) -> Any:
    """``tree`` with the subtrees where ``mask`` is False replaced by ``MaskedNode()``.
    ``mask`` has the tree's structure or is a prefix of it (one bool per subtree)."""
    flags = jax.tree_util.tree_map_with_path(_as_flag, mask)
    try:
        return jax.tree.map(lambda m, x: x if m else MaskedNode(), flags, tree)
    except ValueError as e:
        raise ValueError(
            f"the mask's structure {jax.tree.structure(mask)} is not a prefix of the "
            f"updates' structure {jax.tree.structure(tree)}: {e}"
        ) from None


def masked(inner: Any, mask: Any) -> GradientTransformation:
    r"""Apply a transform to the leaves where a mask is True; pass the others unchanged.

    ``inner`` sees only the leaves it owns: the others are replaced by an empty
    :class:`MaskedNode`, so they have no state (a masked-out leaf costs no memory and cannot
    be touched by ``inner``). The mask must be static: Python or NumPy bools (or concrete
    boolean scalars); any other entry (``"False"``, ``0``) is refused naming its path,
    where optax would take its truthiness. Otherwise ``optax.masked``'s name, arguments,
    state layout (:class:`MaskedState`) and behaviour.

    Args:
      inner: the transform to apply (gradtx or optax).
      mask: a pytree of bools with the params' structure (or a prefix of it, one bool per
        subtree), or a function ``params -> mask``.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a :class:`MaskedState`.

    Example:
      Weight decay on the weights but not the biases (torch's usual param groups; the same
      as ``add_decayed_weights(1e-1, mask=...)``):

      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.masked(gradtx.add_decayed_weights(1e-1), lambda p: {k: k != "b" for k in p})
      >>> params = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
      >>> updates, _ = tx.update({"w": jnp.zeros(1), "b": jnp.zeros(1)}, tx.init(params), params)
      >>> print(updates["w"], updates["b"])
      [0.1] [0.]
    """
    inner_update = update_with_extra_args(inner)

    @abstract_aware
    def init(params: Params) -> MaskedState:
        if not jax.tree.leaves(params):  # nothing to mask: optax.tree.map_params's probe
            return MaskedState(inner.init(params))
        return MaskedState(inner.init(mask_tree(params, resolve(mask, params))))

    def update(updates: Updates, state: MaskedState, params: Params | None = None, **extra):
        check_state(state, MaskedState, "masked")
        m = jax.tree_util.tree_map_with_path(_as_flag, resolve(mask, updates))
        sub_updates = mask_tree(updates, m)
        sub_params = None if params is None else mask_tree(params, m)
        new_sub, inner_state = inner_update(sub_updates, state.inner_state, sub_params, **extra)
        new_updates = jax.tree.map(lambda k, new, old: new if k else old, m, new_sub, updates)
        return new_updates, MaskedState(inner_state)

    return GradientTransformation(init, update)
