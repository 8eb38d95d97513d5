r"""``ema``: an exponential moving average of the updates, optionally debiased (Adam's
first moment on its own)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import safe_increment
from gradtx._leafwise import counter, leafwise
from gradtx._rms_math import inverse_one_minus_power


class EmaState(NamedTuple):
    r"""The state of :func:`ema` (optax's ``EmaState`` layout).

    Attributes:
      count: an ``int32`` scalar, the updates made so far.
      ema: the average :math:`m`, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.ema(0.9).init({"w": jnp.zeros(2)})
      EmaState(count=Array(0, dtype=int32), ema={'w': Array([0., 0.], dtype=float32)})
    """

    count: jax.Array  # int32 scalar, updates made so far
    ema: Any  # the average, mirrors params


def ema(decay: float, debias: bool = True, accumulator_dtype: Any | None = None):
    r"""Exponential moving average of the updates, optionally debiased.

    Formula::

        m_t = (1 - decay) * g_t + decay * m_(t-1)          m_0 = 0
        u_t = m_t / (1 - decay**t)   if debias,   else m_t

    .. math::
        m_t = (1-\beta)\,g_t + \beta\,m_{t-1}, \qquad
        u_t = m_t / (1 - \beta^t) \text{ if debias else } m_t,

    with :math:`\beta` = ``decay``. Same arguments, defaults, state layout
    (:class:`EmaState`) and numbers as ``optax.ema``, except that :math:`1-\beta^t` is
    computed as in :func:`gradtx.scale_by_rms` (the same number eagerly and under ``jit``,
    and closer to exact than optax's ``1 - decay**t``, by up to 2e-5 relative at
    :math:`\beta` = 0.999: docs/numerics.md). :math:`\beta = 0` is valid (:math:`m_t = g_t`).
    ``accumulator_dtype`` is a real floating dtype (complex leaves keep their average as
    pairs of reals in it); integer and bool dtypes are refused. Compare
    :func:`gradtx.trace`: :math:`b_t = g_t + \mu b_{t-1}`, without the :math:`1-\beta`.

    Args:
      decay: :math:`\beta`, in ``[0, 1]``.
      debias: divide by :math:`1-\beta^t`.
      accumulator_dtype: the dtype of :math:`m` (``None``: the param's).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is an :class:`EmaState`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.ema(0.5)
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for g in (1.0, 3.0):
      ...     updates, state = tx.update({"w": jnp.array([g])}, state)
      ...     print(round(float(updates["w"][0]), 4))  # (0.5 * 3 + 0.25 * 1) / 0.75
      1.0
      2.3333
    """
    check.in_range("decay", decay, 0.0, 1.0)
    check.flag("debias", debias)
    acc_dtype = check.accumulator_dtype("accumulator_dtype", accumulator_dtype)

    def init_leaf(p):
        return (jnp.zeros(p.shape, acc_dtype or p.dtype),)

    def update_leaf(g, m, correction):
        m = (1 - decay) * g + decay * m
        return (m * correction.astype(m.dtype) if debias else m), (m,)

    def per_count(count):
        return {"correction": inverse_one_minus_power(decay, safe_increment(count))}

    return leafwise(update_leaf, state=EmaState, init_leaf=init_leaf, scalars=counter(per_count))
