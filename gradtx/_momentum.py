"""Momentum: a decaying trace of past updates (heavy ball, or Nesterov's form)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import leafwise


class TraceState(NamedTuple):
    trace: Any  # the momentum buffer b, mirrors params


def trace(
    decay: float,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Heavy-ball momentum, or Nesterov's.

    .. math::
        b_t = g_t + \mu\, b_{t-1}, \qquad
        u_t = b_t \text{ (heavy ball)} \quad\text{or}\quad u_t = g_t + \mu\, b_t
        \text{ (nesterov)},

    with :math:`\mu` = ``decay`` and :math:`b_0 = 0`. This is ``torch.optim``'s momentum
    buffer with ``dampening=0`` and the same arguments, defaults and numbers as
    ``optax.trace``. ``accumulator_dtype`` sets the dtype of :math:`b` (default: the
    param's).
    """
    check.non_negative("decay", decay)
    check.flag("nesterov", nesterov)
    acc_dtype = check.float_dtype("accumulator_dtype", accumulator_dtype)

    def init_leaf(p):
        return (jnp.zeros(p.shape, acc_dtype or p.dtype),)

    def update_leaf(g, b):
        b = g + decay * b
        return (g + decay * b if nesterov else b), (b,)

    return leafwise(update_leaf, state=TraceState, init_leaf=init_leaf)
