"""Blocks that zero updates: all of them (freezing params), or only their NaNs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import GradientTransformation, Params, Updates, abstract_aware
from gradtx._leafwise import leafwise
from gradtx._trees import check_state


def set_to_zero() -> GradientTransformation:
    r"""Replace the updates by zeros, so the params do not move. Keeps no state.

    With :func:`gradtx.partition` or :func:`gradtx.masked`, this freezes part of the params
    (torch's ``requires_grad=False``). Same as ``optax.set_to_zero``.

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.partition({"train": gradtx.rmsprop(1e-2), "frozen": gradtx.set_to_zero()},
      ...                       {"w": "train", "b": "frozen"})
      >>> params = {"w": jnp.ones(1), "b": jnp.ones(1)}
      >>> updates, _ = tx.update({"w": jnp.ones(1), "b": jnp.ones(1)}, tx.init(params), params)
      >>> print(round(float(updates["w"][0]), 4), float(updates["b"][0]))
      -0.1 0.0
    """
    return leafwise(lambda g: (jnp.zeros_like(g), ()), complex_as_real=False, integers=True)


class ZeroNansState(NamedTuple):
    r"""The state of :func:`zero_nans` (optax's ``ZeroNansState``).

    Attributes:
      found_nan: per leaf, a bool scalar: whether the last update had a NaN there (for
        monitoring; the block does not read it).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.zero_nans().init({"w": jnp.zeros(2)})
      ZeroNansState(found_nan={'w': Array(False, dtype=bool)})
    """

    found_nan: Any


def zero_nans() -> GradientTransformation:
    r"""Replace NaN updates by zeros, recording per leaf whether there was any.

    Formula::

        u = 0 where g is NaN, g elsewhere

    .. math:: u = \begin{cases} 0 & g = \mathrm{NaN} \\ g & \text{otherwise} \end{cases}

    Same as ``optax.zero_nans`` (state layout :class:`ZeroNansState`). Its state is one
    scalar per leaf, not an array mirroring the leaf.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a :class:`ZeroNansState`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.zero_nans()
      >>> updates, state = tx.update({"w": jnp.array([1.0, jnp.nan])}, tx.init({"w": jnp.zeros(2)}))
      >>> print(updates["w"], state.found_nan["w"])
      [1. 0.] True
    """

    @abstract_aware
    def init(params: Params) -> ZeroNansState:
        return ZeroNansState(jax.tree.map(lambda p: jnp.array(False), params))

    def update(updates: Updates, state: Any, params: Params | None = None, **extra_args):
        if state is not None:  # None: optax's zero_nans takes it too (it only writes it)
            check_state(state, ZeroNansState, "zero_nans")
        del state, params, extra_args
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        zeroed = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return zeroed, ZeroNansState(found)

    return GradientTransformation(init, update)
