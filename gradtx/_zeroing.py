"""Blocks that zero updates: all of them (freezing params), or only their NaNs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import GradientTransformation, Params, Updates, abstract_aware
from gradtx._leafwise import leafwise


def set_to_zero() -> GradientTransformation:
    r""":math:`u_t = 0`: the params do not move. Keeps no state.

    With :func:`gradtx.partition` or :func:`gradtx.masked`, this freezes part of the
    params (torch's ``requires_grad=False``). Same as ``optax.set_to_zero``.
    """
    return leafwise(lambda g: (jnp.zeros_like(g), ()), complex_as_real=False)


class ZeroNansState(NamedTuple):
    """optax's ``ZeroNansState``: per leaf, a bool scalar, whether the last update had a
    NaN there (for monitoring; the block does not read it)."""

    found_nan: Any


def zero_nans() -> GradientTransformation:
    r""":math:`u = 0` where :math:`g` is NaN, :math:`g` elsewhere; the state records, per
    leaf, whether any NaN was seen at the last update.

    Same as ``optax.zero_nans`` (state layout :class:`ZeroNansState`). Its state is one
    scalar per leaf, not an array mirroring the leaf, so it is mapped here directly
    rather than through the per-leaf engine.
    """

    @abstract_aware
    def init(params: Params) -> ZeroNansState:
        return ZeroNansState(jax.tree.map(lambda p: jnp.array(False), params))

    def update(updates: Updates, state: Any, params: Params | None = None, **extra_args):
        del state, params, extra_args
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        zeroed = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return zeroed, ZeroNansState(found)

    return GradientTransformation(init, update)
