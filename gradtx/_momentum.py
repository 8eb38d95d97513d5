"""Momentum: a decaying trace of past updates (heavy ball, or Nesterov's form)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import leafwise
from gradtx._numerics import widened


class TraceState(NamedTuple):
    r"""The state of :func:`trace`: the momentum buffer.

    Attributes:
      trace: the buffer :math:`b`, a pytree like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.trace(0.9).init({"w": jnp.zeros(2)})
      TraceState(trace={'w': Array([0., 0.], dtype=float32)})
    """

    trace: Any  # the momentum buffer b, mirrors params


def trace(
    decay: float,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Heavy-ball momentum, or Nesterov's.

    Formula::

        b_t = g_t + decay * b_(t-1)              b_0 = 0
        u_t = b_t                                (heavy ball)
        u_t = g_t + decay * b_t                  (nesterov=True)

    .. math::
        b_t = g_t + \mu\, b_{t-1}, \qquad
        u_t = b_t \text{ (heavy ball)} \quad\text{or}\quad u_t = g_t + \mu\, b_t
        \text{ (nesterov)},

    with :math:`\mu` = ``decay`` and :math:`b_0 = 0`. This is ``torch.optim``'s momentum
    buffer with ``dampening=0``, and the same arguments, defaults and numbers as
    ``optax.trace``.

    Args:
      decay: :math:`\mu`, the momentum (``>= 0``).
      nesterov: use Nesterov's form.
      accumulator_dtype: the dtype of :math:`b` (default: the param's).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a :class:`TraceState`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.trace(0.5)
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for _ in range(3):
      ...     updates, state = tx.update({"w": jnp.ones(1)}, state)
      ...     print(updates["w"])
      [1.]
      [1.5]
      [1.75]
    """
    check.non_negative("decay", decay)
    check.flag("nesterov", nesterov)
    acc_dtype = check.accumulator_dtype("accumulator_dtype", accumulator_dtype)

    def init_leaf(p):
        return (jnp.zeros(p.shape, acc_dtype or p.dtype),)

    def update_leaf(g, b):
        g = widened(g, b.dtype)
        b = g + decay * b
        return (g + decay * b if nesterov else b), (b,)

    return leafwise(update_leaf, state=TraceState, init_leaf=init_leaf)
