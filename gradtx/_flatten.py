"""``flatten``: run a transform on one vector holding every leaf (optax's ``flatten``)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradtx._base import GradientTransformation, Params, Updates, update_with_extra_args
from gradtx._trees import check_inexact_updates, check_same_structure, check_update_shape


def _ravel(tree: Any) -> jax.Array:
    """Every leaf of ``tree``, flattened and concatenated in ``jax.tree`` order (dtypes
    promoted to a common one, as ``jnp.concatenate`` does)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((0,))
    return jnp.concatenate([jnp.reshape(x, (-1,)) for x in leaves])


def _unravel(like: Updates, flat: jax.Array) -> Updates:
    """Cut ``flat`` into leaves shaped (and typed) like those of ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    out, start = [], 0
    for x in leaves:
        size = math.prod(jnp.shape(x))
        piece = jax.lax.slice_in_dim(flat, start, start + size)
        out.append(piece.reshape(jnp.shape(x)).astype(jnp.result_type(x)))
        start += size
    return treedef.unflatten(out)


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Run ``inner`` on one vector: all leaves of the updates and params, concatenated.

    The state is that of the vector (``optax.flatten``, same semantics).

    ``init(params) = inner.init(ravel(params))``; ``update`` ravels the updates and
    params, calls ``inner.update`` (extra arguments such as ``value=`` are passed on) and
    cuts the result back into the updates' shapes. One difference from optax: each
    update leaf leaves with its own dtype (optax returns the concatenation's common
    dtype when the leaves' dtypes differ). Elementwise transforms (Rprop, RMSprop, ...)
    give the same numbers flattened or not.

    When to use it: with many small leaves. In a full jitted train step (forward,
    backward, update) XLA fuses the concatenation into the gradient computation, and on
    CPU a residual MLP with 1,000 small leaves steps faster with ``flatten(rprop())``
    than with per-leaf Rprop, at a longer compile (the measured ratios, kept current, are
    in the performance page's many-leaf table, from ``benchmarks/many_leaves.py``).
    Holding the params as one flat buffer that the model slices its layers from
    (``jax.flatten_util.ravel_pytree``'s ``unravel`` inside the loss) goes further: ``ravel`` is
    then a reshape, and ``flatten`` costs nothing. In a step that only updates
    (gradients given as separate arrays) the concatenation is a copy, and costs more
    than it saves.

    Args:
      inner: the transform to run on the flat vector.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is ``inner``'s over one vector.

    Example:

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.flatten(gradtx.rprop(learning_rate=0.1))
    >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    >>> updates, state = tx.update({"w": jnp.ones((2, 2)), "b": -jnp.ones(2)},
    ...                            tx.init(params), params)
    >>> updates["b"]
    Array([0.1, 0.1], dtype=float32)
    """
    inner_update = update_with_extra_args(inner)

    def init(params: Params) -> Any:
        return inner.init(_ravel(params))

    def update(updates: Updates, state: Any, params: Params | None = None, **extra_args):
        check_inexact_updates(updates)  # the concatenation would promote them silently
        if params is not None:  # the same checks as the engine's, before raveling
            check_same_structure(updates, params, "updates", "params")
            p_leaves = jax.tree.structure(updates).flatten_up_to(params)
            for i, (g, p) in enumerate(zip(jax.tree.leaves(updates), p_leaves)):
                check_update_shape(updates, i, "params", jnp.shape(p), jnp.shape(g))
        flat_params = None if params is None else _ravel(params)
        flat, state = inner_update(_ravel(updates), state, flat_params, **extra_args)
        return _unravel(updates, flat), state

    return GradientTransformation(init, update)
