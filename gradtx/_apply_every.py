r"""``apply_every``: sum the updates of :math:`k` calls and emit the sum every
:math:`k`-th call, inside a chain whose other blocks step every call (optax's). To step
a whole optimizer once per :math:`k` micro-batches use :class:`gradtx.MultiSteps`."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, Updates, safe_increment
from gradtx._leafwise import Scalars, leafwise


class ApplyEvery(NamedTuple):
    r"""The state of :func:`apply_every` (optax's ``ApplyEvery`` layout).

    Attributes:
      count: ``int32``, the calls since the last emission, modulo :math:`k`.
      grad_acc: the running sum, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.apply_every(3).init({"w": jnp.zeros(2)})
      ApplyEvery(count=Array(0, dtype=int32), grad_acc={'w': Array([0., 0.], dtype=float32)})
    """

    count: jax.Array  # int32: calls since the last emission, modulo k
    grad_acc: Updates  # the running sum, mirrors params


def apply_every(k: int = 1) -> GradientTransformation:
    r"""Sum the updates of ``k`` calls; emit the sum on every ``k``-th call, zeros on the others.

    Formula::

        a_t = g_t + (a_(t-1) if c_t != 0 else 0)
        u_t = a_t if c_t == k - 1 else 0
        c_(t+1) = (c_t + 1) mod k

    .. math::
        a_t = g_t + [c_t \ne 0]\,a_{t-1}, \qquad u_t = [c_t = k-1]\,a_t, \qquad
        c_{t+1} = (c_t + 1) \bmod k.

    Same argument, state layout (:class:`ApplyEvery`) and numbers as
    ``optax.apply_every``. The blocks around it still step every call; to step a whole
    optimizer once per :math:`k` micro-batches use :class:`MultiSteps`.

    Args:
      k: the number of calls summed (an integer ``>= 1``; an integer-valued float or array too).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is an :class:`ApplyEvery`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.apply_every(2)
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for g in (1.0, 2.0, 3.0, 4.0):
      ...     updates, state = tx.update({"w": jnp.array([g])}, state)
      ...     print(updates["w"])
      [0.]
      [3.]
      [0.]
      [7.]
    """
    k = check.steps("k", k, low=1)  # an integer-valued number, as a schedule's step counts

    def step(values):
        c = values["count"] % k
        count = safe_increment(values["count"]) % k
        return {"acc": c != 0, "emit": c == (k - 1)}, {"count": count.astype(jnp.int32)}

    def update_leaf(g, grad_acc, *, acc, emit):
        grad_acc = acc * grad_acc + g
        return emit * grad_acc, (grad_acc,)

    counter = Scalars(("count",), lambda: {"count": jnp.zeros([], jnp.int32)}, step)
    return leafwise(
        update_leaf,
        state=ApplyEvery,
        init_leaf=lambda p: (jnp.zeros_like(p),),
        scalars=counter,
        complex_as_real=False,
    )
