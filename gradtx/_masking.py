"""Restricting a transform to some of the params: the one mechanism behind ``masked``,
``add_decayed_weights(mask=...)`` and ``partition`` (torch's param groups).

It sits below the blocks, beside the engine: a block that offers ``mask=`` (as optax's
``add_decayed_weights`` does) builds on it without reaching up to the combinators.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradtx._base import (
    GradientTransformation,
    Params,
    Updates,
    abstract_aware,
    update_with_extra_args,
)


class MaskedNode(NamedTuple):
    """Stands in for a leaf a transform does not own: an empty pytree node, so the
    transform's state holds nothing for it (optax's ``MaskedNode``)."""


class MaskedState(NamedTuple):
    inner_state: Any


def resolve(tree_or_fn: Any, params: Any) -> Any:
    """A mask (or labels) given as a tree or as a function of the params, told apart as
    optax does: a function when every leaf of it is callable (a plain function is its own
    one leaf). A pytree that is also callable (an equinox module holding bools) is a tree."""
    leaves = jax.tree.leaves(jax.tree.map(callable, tree_or_fn))
    is_fn = bool(leaves) and all(leaves)
    return tree_or_fn(params) if is_fn else tree_or_fn


def mask_tree(tree: Any, mask: Any) -> Any:
    """``tree`` with the subtrees where ``mask`` is False replaced by ``MaskedNode()``.
    ``mask`` has the tree's structure or is a prefix of it (one bool per subtree)."""
    try:
        return jax.tree.map(lambda m, x: x if m else MaskedNode(), mask, tree)
    except ValueError as e:
        raise ValueError(
            f"the mask's structure {jax.tree.structure(mask)} is not a prefix of the "
            f"updates' structure {jax.tree.structure(tree)}: {e}"
        ) from None


def masked(inner: Any, mask: Any) -> GradientTransformation:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the others unchanged.

    ``mask`` is a pytree of bools with the params' structure (or a prefix of it, one
    bool per subtree), or a function ``params -> mask``. ``inner`` sees only the leaves
    it owns: the others are replaced by an empty :class:`MaskedNode`, so they have no
    state (a masked-out leaf costs no memory and cannot be touched by ``inner``). The
    mask must be static (Python bools), as in ``optax.masked``, whose name, arguments,
    state layout (:class:`MaskedState`) and behaviour these are.

    Typical use, torch's "weight decay on weights but not biases"::

        chain(masked(add_decayed_weights(1e-4), lambda p: {k: k != "b" for k in p}), ...)

    (or ``add_decayed_weights(1e-4, mask=...)``, which does the same).
    """
    inner_update = update_with_extra_args(inner)

    @abstract_aware
    def init(params: Params) -> MaskedState:
        if not jax.tree.leaves(params):  # nothing to mask: optax.tree.map_params's probe
            return MaskedState(inner.init(params))
        return MaskedState(inner.init(mask_tree(params, resolve(mask, params))))

    def update(updates: Updates, state: MaskedState, params: Params | None = None, **extra):
        m = resolve(mask, updates)
        sub_updates = mask_tree(updates, m)
        sub_params = None if params is None else mask_tree(params, m)
        new_sub, inner_state = inner_update(sub_updates, state.inner_state, sub_params, **extra)
        new_updates = jax.tree.map(lambda k, new, old: new if k else old, m, new_sub, updates)
        return new_updates, MaskedState(inner_state)

    return GradientTransformation(init, update)
